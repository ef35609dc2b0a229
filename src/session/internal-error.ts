// A fault in Ferry's own code while serving a session — a bug, not bad input, which is refused
// where it is read — ends that session alone. Every place the data plane is entered from outside
// (a socket read or event, a timer, a promise continuation) catches what its work throws and hands
// it here, so one session's fault can neither take the process down nor leave the session hanging.

import { ER_UNKNOWN_ERROR } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { InFlight } from "./backend-loss.js";
import type { Session } from "./session.js";
import { stackOf } from "../lib/error-stack.js";

/**
 * Logs the fault with its stack and closes the session; every other session goes on. The client
 * gets 1105 first when it waits for a response and an ERR can take its place: the fault came while
 * Ferry read its command (`reading`, the session still between commands), or between packets of
 * the response.
 */
export function internalError(s: Session, e: unknown, reading = false): void {
  const why = e instanceof Error ? e.message : String(e);
  s.log.error({ err: stackOf(e) }, "internal error while serving the session; closing it");
  if (s.isClosed) return;
  try {
    const seq = s.loop.inFlight === InFlight.AtBoundary ? s.loop.nextResponseSeq : reading && s.loop.atCommandBoundary ? 1 : -1;
    s.fatal(new FerryError(ER_UNKNOWN_ERROR, "HY000", `internal error (${why}); the session is closed`), seq);
  } catch (e2) {
    s.log.error({ err: stackOf(e2) }, "internal error while closing the session");
    s.client.destroy();
    s.backend?.socket.destroy();
  }
}

/** Runs work for the session from a timer or a promise continuation, the fault contained to the session. */
export function guarded(s: Session, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    internalError(s, e);
  }
}
