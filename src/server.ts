// Wires the planes together: configuration, the client listener, sessions, the router.
// Imported only by cli/.

import type net from "node:net";
import { availableParallelism } from "node:os";
import type { Logger } from "pino";
import { endpointOf, probeServer } from "./backend/backend-connection.js";
import { loadConfigFile } from "./config/load.js";
import { buildRuntimeConfig, type RuntimeConfig, type TopologyOverlay } from "./config/runtime-config.js";
import type { ConfigFile } from "./config/schema.js";
import { loadTlsMaterial, pemsOf, reloadTlsMaterial } from "./frontend/tls-material.js";
import { createLogger } from "./observe/logger.js";
import { Monitor, type ServerHealth } from "./monitor/monitor.js";
import { Discovery } from "./monitor/discovery.js";
import { stackOf } from "./lib/error-stack.js";
import { DataPlane, type PlaneStats } from "./workers/data-plane.js";
import { AnnouncingSet } from "./workers/messages.js";
import { WorkerPool } from "./workers/pool.js";

const DEFAULT_VERSION = "5.5.5-10.11.0-MariaDB-ferry";

export interface FerryServer {
  readonly port: number;
  readonly host: string;
  /** the Unix socket Ferry listens on as well, or null */
  readonly socketPath: string | null;
  readonly log: Logger;
  /** the worker processes' pids (proxy.workers > 1), else none */
  workerPids(): number[];
  config(): RuntimeConfig;
  sessions(): number;
  /** sessions per backend address (workers report theirs every 250 ms) */
  sessionsByServer(): Map<string, number>;
  /** moves done and failed since start */
  moveCounts(): { moved: number; failed: number };
  /** the monitor's last results per server */
  health(): ServerHealth[];
  /** applies a new configuration whole; sessions on servers that left ONLINE start moving */
  reload(file: ConfigFile): void;
  /** stops accepting, lets sessions finish their transactions for up to wait ms, then closes the rest */
  shutdown(waitMs?: number): Promise<void>;
  close(): Promise<void>;
}

export interface StartOptions {
  logLevel?: string;
  logDestination?: NodeJS.WritableStream;
}

export async function startFerry(initial: ConfigFile, opts: StartOptions = {}): Promise<FerryServer> {
  let file = initial;
  let runtime = buildRuntimeConfig(file);
  const logLevel = opts.logLevel ?? runtime.logLevel;
  const log = createLogger(logLevel, opts.logDestination);
  const tls = await loadTlsMaterial(runtime.tls);
  const sha2Cache = new AnnouncingSet();
  let serverVersion = runtime.proxy.server_version ?? DEFAULT_VERSION;
  let backendMariadbCaps = 0;
  if (!runtime.proxy.server_version) {
    // Advertise the backends' own version, so clients enable the same features they would directly.
    for (const s of runtime.servers) {
      try {
        ({ serverVersion, mariadbCapabilities: backendMariadbCaps } = await probeServer(endpointOf(s), 2000));
        break;
      } catch (e) {
        log.warn({ server: s.address, err: (e as Error).message }, "could not read server version");
      }
    }
  }
  const instances = workerCount(file.proxy.workers);
  // The control plane's findings (discovered servers, monitor verdicts) overlay the file.
  let monitor: Monitor;
  const discovery = new Discovery(() => publish(), log);
  // Galera writers keep their role from one snapshot to the next (config/galera-hostgroups.ts).
  let galeraWriters: ReadonlyMap<number, readonly string[]> = runtime.galeraWriters;
  const overlay = (): TopologyOverlay => ({ discovered: discovery.servers(), shunned: monitor.shunned(), readOnly: monitor.readOnly(), galeraWriters });
  const build = (): RuntimeConfig => {
    const next = buildRuntimeConfig(file, overlay());
    for (const [hostgroup, to] of next.galeraWriters) {
      const from = galeraWriters.get(hostgroup) ?? [];
      if (from.length !== to.length || from.some((a, i) => a !== to[i])) log.warn({ writer_hostgroup: hostgroup, from, to }, "galera: writers changed");
    }
    galeraWriters = next.galeraWriters;
    return next;
  };
  const pool = instances > 1
    ? new WorkerPool(instances, () => plane, () => ({
      file, overlay: overlay(), serverVersion, backendMariadbCapabilities: backendMariadbCaps, tls: pemsOf(tls), sha2: [...sha2Cache], logLevel,
      logToPrimary: opts.logDestination !== undefined,
    }), sha2Cache, log, opts.logDestination ?? null)
    : null;
  const plane: DataPlane = new DataPlane({
    index: 0, instances, runtime, log, tls, sha2Cache, serverVersion, backendMariadbCapabilities: backendMariadbCaps,
    remote: pool?.remoteFor(0),
    slots: pool?.slots,
    handOff: pool ? (socket, local, release) => pool.handOff(socket, local, release) : undefined,
  });
  /** Gives every process the configuration just built. */
  const apply = (): void => {
    plane.apply(runtime);
    pool?.config(file, overlay());
  };
  const publish = (): void => {
    // Called from the monitor's and discovery's callbacks: a fault here must not reach them.
    try {
      const before = runtime.checksum;
      runtime = build();
      if (runtime.checksum === before) return;
      log.info({ version: runtime.version, checksum: runtime.checksum, servers: runtime.servers.map((x) => `${x.hostgroup}/${x.address}/${x.status}`) }, "runtime servers changed");
      apply();
    } catch (e) {
      log.error({ err: stackOf(e) }, "internal error while applying the monitor's or discovery's findings");
    }
  };
  monitor = new Monitor(() => runtime, () => publish(), log);
  discovery.configure(file.discovery);
  monitor.start();
  plane.start();
  const stopBackground = (): void => {
    monitor.stop();
    discovery.stop();
  };
  const listener = plane.listener;
  const [host, portText] = splitHostPort(runtime.proxy.listen);
  const socketPath = runtime.proxy.socket ?? null;
  let addr: net.AddressInfo;
  try {
    if (pool) await pool.start();
    addr = await listener.listen(host, Number(portText));
    if (socketPath !== null) await listener.listenSocket(socketPath);
  } catch (e) {
    // Nothing may keep running for a Ferry that did not start.
    stopBackground();
    plane.close();
    await Promise.all([listener.close(), pool?.shutdown(0)]);
    throw e;
  }
  log.info({ listen: `${addr.address}:${addr.port}`, ...(socketPath ? { socket: socketPath } : {}), servers: runtime.servers.length, users: runtime.users.size, version: serverVersion, workers: instances }, "ferry listening");
  const allStats = (): PlaneStats[] => [plane.stats(), ...(pool?.stats() ?? [])];
  return {
    port: addr.port,
    host: addr.address,
    socketPath,
    log,
    workerPids: () => pool?.pids() ?? [],
    config: () => runtime,
    sessions: () => allStats().reduce((n, x) => n + x.sessions, 0),
    sessionsByServer() {
      const m = new Map<string, number>();
      for (const x of allStats()) for (const [a, n] of x.byServer) m.set(a, (m.get(a) ?? 0) + n);
      return m;
    },
    moveCounts: () => allStats().reduce((t, x) => ({ moved: t.moved + x.moved, failed: t.failed + x.failed }), { moved: 0, failed: 0 }),
    health: () => monitor.results(),
    reload(next: ConfigFile) {
      const monitorWas = JSON.stringify(file.monitor);
      const listening = { listen: initial.proxy.listen, socket: socketPath };
      if (next.proxy.listen !== listening.listen || (next.proxy.socket ?? null) !== listening.socket) {
        log.warn({ listening, configured: { listen: next.proxy.listen, socket: next.proxy.socket ?? null } }, "proxy.listen and proxy.socket take effect at restart; the listeners stay as they are");
      }
      if (workerCount(next.proxy.workers) !== instances) {
        log.warn({ running: instances, configured: next.proxy.workers }, "proxy.workers takes effect at restart; the processes stay as they are");
      }
      file = next;
      runtime = build();
      log.info({ version: runtime.version, checksum: runtime.checksum }, "configuration applied");
      apply();
      reloadTlsMaterial(tls, next.tls).then((changed) => {
        if (!changed) return;
        pool?.tls(pemsOf(tls));
        log.info({ cert: next.tls.cert ?? (next.tls.enabled ? "self-signed" : null) }, "TLS material reloaded: new connections use it");
      }, (e: Error) => log.error({ err: e.message }, "could not reload TLS material; new connections keep the previous certificate and keys"));
      discovery.configure(next.discovery);
      if (JSON.stringify(next.monitor) !== monitorWas) {
        monitor.stop();
        monitor = new Monitor(() => runtime, () => publish(), log);
        monitor.start();
      }
    },
    async shutdown(waitMs = runtime.proxy.shutdown_wait_ms) {
      stopBackground();
      const closing = listener.close();
      await Promise.all([plane.shutdown(waitMs), pool?.shutdown(waitMs)]);
      await closing;
    },
    async close() {
      stopBackground();
      const closing = listener.close();
      plane.close();
      await Promise.all([closing, pool?.shutdown(0)]);
    },
  };
}

/** proxy.workers as a count of processes. */
function workerCount(w: number | "auto"): number {
  return w === "auto" ? Math.max(1, availableParallelism()) : w;
}

export function splitHostPort(s: string): [string, string] {
  const i = s.lastIndexOf(":");
  return [s.slice(0, i).replace(/^\[|\]$/g, ""), s.slice(i + 1)];
}

export { loadConfigFile };
