// Wires the planes together: configuration, the client listener, sessions, the router.
// Imported only by cli/.

import type { Logger } from "pino";
import { probeServerVersion } from "./backend/backend-connection.js";
import { loadConfigFile } from "./config/load.js";
import { buildRuntimeConfig, type RuntimeConfig } from "./config/runtime-config.js";
import type { ConfigFile } from "./config/schema.js";
import { ClientListener } from "./frontend/listener.js";
import { loadTlsMaterial } from "./frontend/tls-material.js";
import { createLogger } from "./observe/logger.js";
import { Router } from "./router/router.js";
import { SessionRegistry } from "./session/registry.js";
import { Session } from "./session/session.js";

const DEFAULT_VERSION = "5.5.5-10.11.0-MariaDB-ferry";

export interface FerryServer {
  readonly port: number;
  readonly host: string;
  readonly log: Logger;
  config(): RuntimeConfig;
  sessions(): number;
  reload(file: ConfigFile): void;
  close(): Promise<void>;
}

export interface StartOptions {
  logLevel?: string;
  logDestination?: NodeJS.WritableStream;
}

export async function startFerry(file: ConfigFile, opts: StartOptions = {}): Promise<FerryServer> {
  let runtime = buildRuntimeConfig(file);
  const log = createLogger(opts.logLevel ?? runtime.logLevel, opts.logDestination);
  const tls = await loadTlsMaterial(runtime.tls);
  const router = new Router(() => runtime);
  const registry = new SessionRegistry<Session>();
  const sha2Cache = new Set<string>();
  let serverVersion = runtime.proxy.server_version ?? DEFAULT_VERSION;
  if (!runtime.proxy.server_version) {
    // Advertise the backends' own version, so clients enable the same features they would directly.
    for (const s of runtime.servers) {
      try {
        serverVersion = await probeServerVersion(s.host, s.port, 2000);
        break;
      } catch (e) {
        log.warn({ server: s.address, err: (e as Error).message }, "could not read server version");
      }
    }
  }
  const deps = { config: () => runtime, router, registry, log, tls, sha2Cache };
  const listener = new ClientListener({
    config: () => runtime, tls, log, sha2Cache,
    serverVersion: () => serverVersion,
    allocateId: () => registry.allocateId(),
    onAuthenticated: (id, client, release) => {
      const s = new Session(id, client, deps, release);
      s.start().catch((e: Error) => {
        log.error({ session: id, err: e.message }, "session failed to start");
        s.close();
      });
    },
  });
  const [host, portText] = splitHostPort(runtime.proxy.listen);
  const addr = await listener.listen(host, Number(portText));
  log.info({ listen: `${addr.address}:${addr.port}`, servers: runtime.servers.length, users: runtime.users.size, version: serverVersion }, "ferry listening");
  return {
    port: addr.port,
    host: addr.address,
    log,
    config: () => runtime,
    sessions: () => registry.size,
    reload(next: ConfigFile) {
      runtime = buildRuntimeConfig(next);
      log.info({ version: runtime.version, checksum: runtime.checksum }, "configuration applied");
    },
    async close() {
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
