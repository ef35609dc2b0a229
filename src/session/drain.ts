// Reacting to a new configuration: sessions on servers that are no longer ONLINE in their
// hostgroup (drained, shunned, hard-offline or removed) are asked to move. Each moves at its first
// movable command boundary; the MoveSlots bound how many move at once. Sessions still pinned to a
// hard-offline or removed server after drain_grace_ms are closed.

import type { Logger } from "pino";
import type { RuntimeConfig } from "../config/runtime-config.js";
import { FerryError } from "../protocol/errors.js";
import type { SessionRegistry } from "./registry.js";
import type { Session } from "./session.js";

export function applyServerChanges(registry: SessionRegistry<Session>, runtime: RuntimeConfig, log: Logger): void {
  const servers = new Map(runtime.servers.map((s) => [`${s.hostgroup}/${s.address}`, s]));
  const leaving = new Map<string, string>(); // address → reason
  for (const s of registry.all()) {
    const address = s.backendAddress;
    if (!address) continue;
    const server = servers.get(`${s.hostgroup}/${address}`);
    if (server && server.status === "ONLINE") continue;
    const reason = !server ? "server-removed" : server.status === "OFFLINE_HARD" ? "offline-hard" : server.status === "SHUNNED" ? "shunned" : "drain";
    leaving.set(address, reason);
    s.requestMove(reason);
  }
  for (const [address, reason] of leaving) log.info({ server: address, reason }, "moving sessions off server");
  const hard = [...leaving].filter(([, r]) => r === "server-removed" || r === "offline-hard").map(([a]) => a);
  if (hard.length === 0) return;
  const grace = runtime.proxy.drain_grace_ms;
  setTimeout(() => {
    for (const s of [...registry.all()]) {
      const a = s.backendAddress;
      if (a && hard.includes(a)) {
        log.warn({ session: s.id, server: a, pinned: s.tracker.pinReasons() }, "closing a session still pinned to a removed server after the grace period");
        s.fatal(new FerryError(2013, "HY000", `server ${a} was taken out of service and the session could not move`), -1);
      }
    }
  }, grace).unref();
}
