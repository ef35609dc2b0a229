// Wires the planes together: configuration, the client listener, sessions, the router.
// Imported only by cli/.

import type net from "node:net";
import type { Logger } from "pino";
import { probeServer } from "./backend/backend-connection.js";
import { loadConfigFile } from "./config/load.js";
import { buildRuntimeConfig, type RuntimeConfig } from "./config/runtime-config.js";
import type { ConfigFile } from "./config/schema.js";
import { ClientListener } from "./frontend/listener.js";
import { loadTlsMaterial, reloadTlsMaterial } from "./frontend/tls-material.js";
import { createLogger } from "./observe/logger.js";
import { Router } from "./router/router.js";
import { SessionRegistry } from "./session/registry.js";
import { Session } from "./session/session.js";
import { MoveSlots } from "./session/migrator.js";
import { applyServerChanges } from "./session/drain.js";
import { Rebalancer } from "./session/rebalancer.js";
import { IdleSweep } from "./session/idle-sweep.js";
import { Monitor, type ServerHealth } from "./monitor/monitor.js";
import { Discovery } from "./monitor/discovery.js";
import { LoopPriority } from "./lib/loop-priority.js";
import { stackOf } from "./lib/error-stack.js";

const DEFAULT_VERSION = "5.5.5-10.11.0-MariaDB-ferry";

export interface FerryServer {
  readonly port: number;
  readonly host: string;
  /** the Unix socket Ferry listens on as well, or null */
  readonly socketPath: string | null;
  readonly log: Logger;
  config(): RuntimeConfig;
  sessions(): number;
  /** sessions per backend address */
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
  const log = createLogger(opts.logLevel ?? runtime.logLevel, opts.logDestination);
  const tls = await loadTlsMaterial(runtime.tls);
  const router = new Router(() => runtime);
  const registry = new SessionRegistry<Session>();
  const sha2Cache = new Set<string>();
  let serverVersion = runtime.proxy.server_version ?? DEFAULT_VERSION;
  let backendMariadbCaps = 0;
  if (!runtime.proxy.server_version) {
    // Advertise the backends' own version, so clients enable the same features they would directly.
    for (const s of runtime.servers) {
      try {
        ({ serverVersion, mariadbCapabilities: backendMariadbCaps } = await probeServer(s.host, s.port, 2000));
        break;
      } catch (e) {
        log.warn({ server: s.address, err: (e as Error).message }, "could not read server version");
      }
    }
  }
  const priority = new LoopPriority();
  priority.apply(file.proxy.nice, log);
  const moves = new MoveSlots(runtime.proxy.max_concurrent_moves);
  const deps = { config: () => runtime, router, registry, log, tls, sha2Cache, moves };
  const listener = new ClientListener({
    config: () => runtime, tls, log, sha2Cache,
    serverVersion: () => serverVersion,
    backendMariadbCapabilities: () => backendMariadbCaps,
    allocateId: () => registry.allocateId(),
    onAuthenticated: (id, client, release) => {
      const s = new Session(id, client, deps, release);
      // start() answers the client itself for what can go wrong (no backend, a refused login):
      // what it throws is a fault in Ferry's own code, contained to this session.
      s.start().catch((e: Error) => {
        log.error({ session: id, err: stackOf(e) }, "internal error while starting the session; closing it");
        s.close();
      });
    },
  });
  const rebalancer = new Rebalancer(registry, () => runtime, log, router);
  rebalancer.start();
  const idleSweep = new IdleSweep(registry, () => runtime, log);
  idleSweep.start();
  // The control plane's findings (discovered servers, monitor verdicts) become a new snapshot.
  let monitor: Monitor;
  const discovery = new Discovery(() => publish(), log);
  const build = (): RuntimeConfig => buildRuntimeConfig(file, { discovered: discovery.servers(), shunned: monitor.shunned(), readOnly: monitor.readOnly() });
  const publish = (): void => {
    // Called from the monitor's and discovery's callbacks: a fault here must not reach them.
    try {
      const before = runtime.checksum;
      runtime = build();
      if (runtime.checksum === before) return;
      log.info({ version: runtime.version, checksum: runtime.checksum, servers: runtime.servers.map((x) => `${x.hostgroup}/${x.address}/${x.status}`) }, "runtime servers changed");
      applyServerChanges(registry, runtime, log, () => runtime);
    } catch (e) {
      log.error({ err: stackOf(e) }, "internal error while applying the monitor's or discovery's findings");
    }
  };
  monitor = new Monitor(() => runtime, () => publish(), log);
  discovery.configure(file.discovery);
  monitor.start();
  const stopBackground = (): void => {
    rebalancer.stop();
    idleSweep.stop();
    monitor.stop();
    discovery.stop();
  };
  const [host, portText] = splitHostPort(runtime.proxy.listen);
  const socketPath = runtime.proxy.socket ?? null;
  let addr: net.AddressInfo;
  try {
    addr = await listener.listen(host, Number(portText));
    if (socketPath !== null) await listener.listenSocket(socketPath);
  } catch (e) {
    // Nothing may keep running for a Ferry that did not start.
    stopBackground();
    await listener.close();
    throw e;
  }
  log.info({ listen: `${addr.address}:${addr.port}`, ...(socketPath ? { socket: socketPath } : {}), servers: runtime.servers.length, users: runtime.users.size, version: serverVersion }, "ferry listening");
  return {
    port: addr.port,
    host: addr.address,
    socketPath,
    log,
    config: () => runtime,
    sessions: () => registry.size,
    sessionsByServer() {
      const m = new Map<string, number>();
      for (const s of registry.all()) {
        const a = s.backendAddress;
        if (a) m.set(a, (m.get(a) ?? 0) + 1);
      }
      return m;
    },
    moveCounts: () => ({ moved: moves.moved, failed: moves.failed }),
    health: () => monitor.results(),
    reload(next: ConfigFile) {
      const monitorWas = JSON.stringify(file.monitor);
      const listening = { listen: initial.proxy.listen, socket: socketPath };
      if (next.proxy.listen !== listening.listen || (next.proxy.socket ?? null) !== listening.socket) {
        log.warn({ listening, configured: { listen: next.proxy.listen, socket: next.proxy.socket ?? null } }, "proxy.listen and proxy.socket take effect at restart; the listeners stay as they are");
      }
      file = next;
      runtime = build();
      priority.apply(next.proxy.nice, log);
      log.info({ version: runtime.version, checksum: runtime.checksum }, "configuration applied");
      applyServerChanges(registry, runtime, log, () => runtime);
      reloadTlsMaterial(tls, next.tls).then((changed) => {
        if (changed) log.info({ cert: next.tls.cert ?? (next.tls.enabled ? "self-signed" : null) }, "TLS material reloaded: new connections use it");
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
      for (const s of [...registry.all()]) s.closeWhenIdle();
      const deadline = Date.now() + waitMs;
      while (registry.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (registry.size > 0) log.warn({ sessions: registry.size }, "shutdown wait over: closing sessions still in a transaction");
      for (const s of [...registry.all()]) s.close();
      await closing;
    },
    async close() {
      stopBackground();
      const closing = listener.close();
      for (const s of [...registry.all()]) s.close();
      await closing;
    },
  };
}

export function splitHostPort(s: string): [string, string] {
  const i = s.lastIndexOf(":");
  return [s.slice(0, i).replace(/^\[|\]$/g, ""), s.slice(i + 1)];
}

export { loadConfigFile };
