// Reacting to a new configuration: sessions on servers that are no longer ONLINE in their
// hostgroup (drained, shunned, hard-offline or removed) are asked to move. Each moves at its first
// movable command boundary; the MoveSlots bound how many move at once. Sessions still pinned to a
// hard-offline or removed server after drain_grace_ms are closed.

import type { Logger } from "pino";
import type { RuntimeConfig } from "../config/runtime-config.js";
import { FerryError } from "../protocol/errors.js";
import type { SessionRegistry } from "./registry.js";
import type { Session } from "./session.js";

const LEAVING_REASONS = new Set(["drain", "shunned", "offline-hard", "server-removed"]);

export function applyServerChanges(registry: SessionRegistry<Session>, runtime: RuntimeConfig, log: Logger, current: () => RuntimeConfig = () => runtime): void {
  const servers = new Map(runtime.servers.map((s) => [`${s.hostgroup}/${s.address}`, s]));
  const leaving = new Map<string, string>(); // address → reason
  const online = (x: { hostgroup: number; address: string }): boolean => servers.get(`${x.hostgroup}/${x.address}`)?.status === "ONLINE";
  for (const s of registry.all()) {
    // Parked connections (other hostgroups) on servers that leave are simply closed.
    if (s.parked.size) s.parked.drop((conn) => !online(conn.server));
    const address = s.backendAddress;
    if (!address) continue;
    const server = servers.get(`${s.hostgroup}/${address}`);
    if (server && server.status === "ONLINE") {
      // The server is back: a move it caused is no longer needed.
      if (s.pendingMove !== null && LEAVING_REASONS.has(s.pendingMove)) s.cancelMove();
      continue;
    }
    const reason = !server ? "server-removed" : server.status === "OFFLINE_HARD" ? "offline-hard" : server.status === "SHUNNED" ? "shunned" : "drain";
    leaving.set(address, reason);
    s.requestMove(reason);
  }
  for (const [address, reason] of leaving) log.info({ server: address, reason }, "moving sessions off server");
  const hard = [...leaving].filter(([, r]) => r === "server-removed" || r === "offline-hard").map(([a]) => a);
  if (hard.length === 0) return;
  const grace = runtime.proxy.drain_grace_ms;
  setTimeout(() => {
    // A later configuration may have brought the server back: only what is still out counts.
    const now = new Map(current().servers.map((x) => [`${x.hostgroup}/${x.address}`, x]));
    for (const s of [...registry.all()]) {
      s.parked.drop(({ server: x }) => hard.includes(x.address) && now.get(`${x.hostgroup}/${x.address}`)?.status !== "ONLINE", true);
      const a = s.backendAddress;
      const server = a ? now.get(`${s.hostgroup}/${a}`) : undefined;
      if (server && server.status !== "OFFLINE_HARD") continue;
      if (a && hard.includes(a)) {
        log.warn({ session: s.id, server: a, pinned: s.tracker.pinReasons() }, "closing a session still pinned to a removed server after the grace period");
        s.fatal(new FerryError(2013, "HY000", `server ${a} was taken out of service and the session could not move`), -1);
      }
    }
  }, grace).unref();
}
