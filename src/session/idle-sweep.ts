// Closes sessions idle past their wait_timeout, as the server would close a direct connection.
// Ferry otherwise hides a backend's idle disconnect (it reconnects the session elsewhere), so
// without this a client would never be timed out. The limit is the session's own wait_timeout
// (as the server reports it: interactive clients get interactive_timeout at login, SET changes
// it), capped by proxy.client_idle_timeout_ms when that is set.
//
// Nothing is timed per command: dispatch only marks a session active, and a sweep once a second
// restarts the idle clock of every session that was active or is running a command. Sessions are
// closed between limit and limit + 1 s after their last command, without an error packet, as
// MariaDB closes them.

import type { RuntimeConfig } from "../config/runtime-config.js";
import { SessionSweep } from "./session-sweep.js";
import type { Session } from "./session.js";

/** The session's idle limit in ms (0: none): its wait_timeout, capped by client_idle_timeout_ms. */
export function idleLimitMs(s: Session, cfg: RuntimeConfig): number {
  const wait = Number(s.tracker.systemVariables.get("wait_timeout") ?? s.loginWaitTimeout);
  const own = Number.isFinite(wait) && wait > 0 ? wait * 1000 : 0;
  const cap = cfg.proxy.client_idle_timeout_ms;
  if (own === 0) return cap;
  return cap === 0 ? own : Math.min(own, cap);
}

export class IdleSweep extends SessionSweep {
  /** One sweep; returns how many sessions it closed. */
  tick(now: number): number {
    const cfg = this.config();
    const expired: Session[] = [];
    for (const s of this.registry.all()) {
      if (s.activeSinceSweep || !s.loop.idle) {
        s.activeSinceSweep = false;
        s.idleSince = now;
        continue;
      }
      const limit = idleLimitMs(s, cfg);
      if (limit > 0 && now - s.idleSince >= limit) expired.push(s);
    }
    for (const s of expired) {
      s.log.info({ idleMs: Math.round(now - s.idleSince), limitMs: idleLimitMs(s, cfg) }, "closing a session idle past its wait_timeout");
      s.close();
    }
    if (expired.length) this.log.debug({ closed: expired.length }, "idle sessions closed");
    return expired.length;
  }
}
