// What a lost or misbehaving backend connection means to its session, decided as a direct
// connection's client would see it. A statement waiting for its response, lost between packets,
// gets 2013 in place of the rest; the session then carries on elsewhere when it is movable and ends
// when it is not (an open transaction cannot move). Lost in the middle of a packet or an upload,
// nothing can be injected cleanly: the client is closed. Lost between commands, the session
// reconnects elsewhere unless it is pinned, or idle to its wait_timeout (the server closed it for
// that, as it would have closed a direct connection).

import { performance } from "node:perf_hooks";
import { CR_SERVER_LOST } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { encodeErr } from "../protocol/packets.js";
import { idleLimitMs } from "./idle-sweep.js";
import { SWEEP_MS } from "./session-sweep.js";
import { retryRead } from "./read-retry.js";
import type { Session } from "./session.js";

/** Where the session's command stands, as far as losing its backend is concerned. */
export const enum InFlight {
  /** between commands (or Ferry busy on the connection) */
  None,
  /** waiting for the response, or inside it at a packet boundary: an ERR can take its place */
  AtBoundary,
  /** inside a packet of the response, or still sending the command or a LOAD DATA file */
  Midway,
}

/** The backend connection closed under the session (already detached from it). */
export function backendClosed(s: Session, where: string | null): void {
  const inFlight = s.loop.inFlight;
  if (inFlight === InFlight.AtBoundary && retryRead(s, where)) return;
  if (inFlight === InFlight.AtBoundary) return failStatement(s, where, s.loop.nextResponseSeq, `lost connection to backend ${where} during the statement`);
  if (inFlight === InFlight.Midway) {
    return s.fatal(new FerryError(CR_SERVER_LOST, "HY000", `lost connection to backend ${where} during the statement`, "backend"), -1);
  }
  if (!s.tracker.movable) {
    s.log.info({ server: where, pinned: s.tracker.pinReasons() }, "backend lost while the session was pinned; closing it");
    return s.close();
  }
  const limit = idleLimitMs(s, s.deps.config());
  const idleMs = performance.now() - s.idleSince;
  if (s.loop.idle && !s.activeSinceSweep && limit > 0 && idleMs >= limit - 2 * SWEEP_MS) {
    // The server closed it for its wait_timeout, which the sweep is about to apply anyway.
    s.log.info({ server: where, idleMs: Math.round(idleMs), limitMs: limit }, "backend closed a session idle to its wait_timeout; closing the client");
    return s.close();
  }
  s.lostFrom = where;
  s.log.info({ server: where }, "backend lost while idle; reconnecting");
  if (s.loop.atCommandBoundary) s.requestMove("backend-lost");
  else s.mover.reason = "backend-lost"; // a refresh or move in flight fails and retries
}

/**
 * The statement in flight lost its backend between packets: it gets 2013 with `seq`; a session
 * that is otherwise movable carries on elsewhere, one inside a transaction ends.
 */
export function failStatement(s: Session, where: string | null, seq: number, what: string): void {
  s.loop.abandonStatement();
  s.readRetries = 0;
  const canContinue = s.tracker.movable;
  const msg = `${what}${canContinue ? "; the session continues on another server" : ""}`;
  if (!canContinue) return s.fatal(new FerryError(CR_SERVER_LOST, "HY000", msg, "backend"), seq);
  s.client.write(encodeErr(seq, CR_SERVER_LOST, "HY000", `ferry: ${msg}`));
  s.lostFrom = where;
  s.log.warn({ server: where }, "backend lost during a statement; reconnecting");
  s.requestMove("backend-lost");
}
