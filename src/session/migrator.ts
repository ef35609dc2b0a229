// Moving a session to another backend (DESIGN §5). The session decides when (at a command
// boundary, while movable); the router says where. A move opens the target connection, restores
// the tracked state pipelined in one round trip, and swaps; any failure leaves the session where
// it was and closes the half-made connection.

import type { ServerConfig } from "../config/runtime-config.js";
import { runOwnStatements, type OwnStatement, type StatementResult } from "../backend/own-statements.js";
import { quitBackend, type BackendConnection } from "../backend/backend-connection.js";
import { SERVER_STATUS_NO_BACKSLASH_ESCAPES } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { connectFirst } from "./backend-login.js";
import { restorePlan } from "./restore-plan.js";
import type { Session } from "./session.js";

export interface MoveOutcome {
  from: string | null;
  to: string;
  ms: number;
}

/** Bounds how many moves run at once across all sessions (a drain must not stampede the target). */
export class MoveSlots {
  private active = 0;
  private readonly waiters: (() => void)[] = [];
  moved = 0;
  failed = 0;

  constructor(readonly max: number) {}

  async acquire(): Promise<void> {
    if (this.active < this.max) {
      this.active++;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.active--;
  }
}

/**
 * Picks a target: the best ONLINE server of the session's hostgroup other than the current one. A
 * session whose backend was lost tries the server it lost last rather than never: a restarted
 * server takes its sessions back when no other can. A renewal (`renew`) takes the best server,
 * the current one included, scored as if the connection it replaces were gone (Router.beginLeaving).
 */
async function openTarget(s: Session, from: string | null, target: ServerConfig | null, renew: boolean): Promise<BackendConnection> {
  if (renew && !target) return connectFirst(s, s.deps.router.candidates(s.hostgroup, s.labels), s.tracker.schema);
  let candidates = target ? [target] : s.deps.router.candidates(s.hostgroup, s.labels);
  if (!target && from !== null) {
    const others = candidates.filter((c) => c.address !== from);
    candidates = s.backend === null ? [...others, ...candidates.filter((c) => c.address === from)] : others;
  }
  if (candidates.length === 0) throw new FerryError(9001, "08S01", `no backend available: hostgroup ${s.hostgroup} has no other ONLINE server`);
  return connectFirst(s, candidates, s.tracker.schema);
}

/** Runs statements Ferry needs on a connection; the first error fails the whole, naming the statement. */
export async function runChecked(conn: BackendConnection, statements: OwnStatement[]): Promise<StatementResult[]> {
  const results = statements.length ? await runOwnStatements(conn, statements) : [];
  results.forEach((r, i) => {
    if (r.error) {
      const what = statements[i].kind === "prepare" ? "re-preparing a statement" : statements[i].sql.slice(0, 60);
      throw new FerryError(r.error.errno, r.error.sqlState, `restoring session state on ${conn.server.address} failed at "${what}": ${r.error.message}`, "backend");
    }
  });
  return results;
}

export const noBackslashEscapes = (conn: BackendConnection): boolean => (conn.statusFlags & SERVER_STATUS_NO_BACKSLASH_ESCAPES) !== 0;

/** Recreates the session's state on a fresh connection; returns the status flags it ends with. */
export async function restoreOn(s: Session, conn: BackendConnection): Promise<number> {
  const results = await runChecked(conn, restorePlan(s.tracker, noBackslashEscapes(conn)));
  return lastStatus(results) ?? conn.statusFlags;
}

export function lastStatus(results: StatementResult[]): number | null {
  for (let i = results.length - 1; i >= 0; i--) {
    const ok = results[i].ok;
    if (ok) return ok.statusFlags;
  }
  return null;
}

/** Drops a connection that did not become the session's: it no longer counts for its server. */
export function abandonBackend(s: Session, conn: BackendConnection): void {
  s.deps.router.release(conn.server.address);
  conn.socket.on("error", () => undefined);
  conn.socket.destroy();
}

export async function moveSession(s: Session, target: ServerConfig | null = null, renew = false): Promise<MoveOutcome> {
  const t0 = performance.now();
  const from = s.backend ? s.backend.server.address : s.lostFrom;
  const leaving = renew && s.backend ? from : null;
  if (leaving !== null) s.deps.router.beginLeaving(leaving);
  let conn: BackendConnection;
  try {
    conn = await openTarget(s, from, target, renew);
    try {
      await restoreOn(s, conn);
    } catch (e) {
      abandonBackend(s, conn);
      throw e;
    }
  } finally {
    if (leaving !== null) s.deps.router.endLeaving(leaving);
  }
  // The client may have gone, or its reconnect deadline passed, while the move was under way.
  if (s.isClosed) {
    abandonBackend(s, conn);
    throw new FerryError(2013, "HY000", "the session closed while it was moving");
  }
  const old = s.detachBackend();
  s.attachBackend(conn);
  if (old) quitBackend(old);
  return { from, to: conn.server.address, ms: performance.now() - t0 };
}
