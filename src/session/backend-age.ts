// Replaces backend connections older than proxy.backend_max_age_ms (DESIGN §5, "a configured
// maximum connection age"). A long-lived connection keeps what it was given at login: the server
// it reached (a session opened before a scale-out never sees the new servers unless the
// rebalancer picks it), the credentials it logged in with, and whatever the server accumulated
// for it. Renewing it moves the session, with its state, to a fresh connection on the server the
// router would choose for it now, the same one when that is still the best; the client sees
// nothing. Like any move, it waits for a movable boundary: a session in a transaction or holding
// a lock keeps its connection until that ends.
//
// A sweep once a second asks each session whose connection is past its limit to renew it. The
// limit is spread over its last tenth per session (by id), so sessions that logged in together
// do not all move in the same second; max_concurrent_moves bounds how many run at once. Parked
// connections (read/write split) past the limit are closed; one is opened again when needed.

import { SessionSweep } from "./session-sweep.js";

/** the golden ratio's fraction: ids 1, 2, 3 … spread evenly over [0, 1) */
const PHI = 0.6180339887498949;

/** The age at which a session's backend connection is renewed: within the last tenth of `maxAgeMs`. */
export function renewalAgeMs(sessionId: number, maxAgeMs: number): number {
  return maxAgeMs * (1 - 0.1 * ((sessionId * PHI) % 1));
}

export class BackendAgeSweep extends SessionSweep {
  /** One sweep; returns how many sessions it asked to renew their connection. */
  tick(now: number): number {
    const maxAge = this.config().proxy.backend_max_age_ms;
    if (maxAge === 0) return 0;
    let asked = 0;
    for (const s of this.registry.all()) {
      const limit = renewalAgeMs(s.id, maxAge);
      if (s.parked.size) s.parked.drop((conn) => now - conn.openedAt >= limit);
      const b = s.backend;
      // A session already asked to move (drain, rebalance, renewal) gets a fresh connection by that move.
      if (b === null || s.pendingMove !== null || now - b.openedAt < limit) continue;
      // No server can take a fresh connection now (each holds its max_connections): next sweep.
      if (s.deps.router.candidates(s.hostgroup, s.labels).length === 0) continue;
      s.requestRenewal("max-age");
      asked++;
    }
    if (asked) this.log.debug({ sessions: asked, maxAgeMs: maxAge }, "renewing backend connections past their age");
    return asked;
  }
}
