// Changing the connection a session's statements run on, when query rules send a statement to
// another hostgroup (read/write split). The session keeps the connection it leaves, parked, and
// takes back a parked one of the target hostgroup after replaying what changed since it was
// parked; without one, it opens a connection there and restores the whole state. Binary prepared
// statements are prepared on a connection when they first run there.

import { quitBackend, type BackendConnection } from "../backend/backend-connection.js";
import { runOwnStatements } from "../backend/own-statements.js";
import type { StatementResult } from "../backend/statement-results.js";
import { describeColumnShape } from "../protocol/column-definition.js";
import { ER_NEED_REPREPARE } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { encodeStmtClose } from "../protocol/packets.js";
import { openBackend } from "./backend-login.js";
import { abandonBackend, lastStatus, noBackslashEscapes, restoreOn, runChecked } from "./migrator.js";
import type { Session } from "./session.js";
import { capStatementsOn } from "./statement-cap.js";
import { snapshotState, syncStatements } from "./state-sync.js";
import type { PreparedStatement } from "./state-tracker.js";

/** Prepares a statement on the session's active connection, where the client's command will run. */
export async function prepareOnActive(s: Session, stmt: PreparedStatement): Promise<void> {
  if (stmt.sql === null) throw new FerryError(1243, "HY000", `statement ${stmt.clientId} cannot be prepared on another connection (its text was too large to keep)`);
  const b = s.suspendBackendReads();
  if (!b) throw new FerryError(2013, "HY000", "no backend connection");
  try {
    const [r] = await runOwnStatements(b, [{ kind: "prepare", sql: stmt.sql }]);
    if (r.error) throw new FerryError(r.error.errno, r.error.sqlState, `statement ${stmt.clientId} could not be prepared on ${b.server.address}, where it runs now: ${r.error.message}`, "backend");
    const drift = shapeDrift(stmt, r);
    if (drift !== null) {
      // The client encodes parameters, and may decode rows (metadata caching), by what its own
      // prepare returned: a statement of another shape here would be misread both ways.
      b.out.write(encodeStmtClose(r.stmtId));
      throw new FerryError(ER_NEED_REPREPARE, "HY000", `statement ${stmt.clientId} ${drift.here} on ${b.server.address}, where it runs now, not ${drift.there} as where the client prepared it: the servers' schemas differ; prepare it again`, "backend");
    }
    stmt.on.set(b, { id: r.stmtId, typesBound: false });
    s.tracker.touch(stmt);
    capStatementsOn(s, b);
  } finally {
    s.resumeBackendReads(b);
  }
}

/**
 * How the statement prepared here differs from the client's own prepare, in words for each side:
 * the number of parameters or result columns, or a result column's type (columnShape()). Null
 * when it has the same shape.
 */
function shapeDrift(stmt: PreparedStatement, r: StatementResult): { here: string; there: string } | null {
  if (r.numParams !== stmt.numParams || r.numColumns !== stmt.numColumns) {
    return { here: `has ${r.numParams} parameters and ${r.numColumns} result columns`, there: `${stmt.numParams} and ${stmt.numColumns}` };
  }
  // The client's prepare response gave one shape per result column (a statement made otherwise has none to compare).
  const known = stmt.columnShapes;
  for (let i = 0; i < known.length && i < r.columnShapes.length; i++) {
    if (known[i] !== r.columnShapes[i]) {
      return { here: `has result column ${i + 1} (\`${r.columns[i]}\`) of type ${describeColumnShape(r.columnShapes[i])}`, there: describeColumnShape(known[i]) };
    }
  }
  return null;
}

/** Makes a connection of `hostgroup` the active one; `dropCurrent`: close the one left instead of parking it. */
export async function switchHostgroup(s: Session, hostgroup: number, dropCurrent = false): Promise<void> {
  const t = s.tracker;
  let conn: BackendConnection | null = null;
  let flags = t.statusFlags;
  const parked = s.parked.take(hostgroup);
  if (parked) {
    try {
      const results = await runChecked(parked.conn, syncStatements(parked.snapshot, t, noBackslashEscapes(parked.conn)));
      flags = lastStatus(results) ?? parked.snapshot.statusFlags;
      conn = parked.conn;
    } catch {
      // A parked connection that cannot be brought up to date is closed; a fresh one replaces it.
      abandonBackend(s, parked.conn);
    }
  }
  if (conn === null) {
    conn = await openBackend(s, hostgroup, t.schema);
    try {
      flags = await restoreOn(s, conn);
    } catch (e) {
      abandonBackend(s, conn);
      throw e;
    }
  }
  if (s.isClosed) return abandonBackend(s, conn);
  const old = s.detachBackend(dropCurrent);
  if (old && dropCurrent) {
    quitBackend(old);
  } else if (old) {
    s.parked.park(old, snapshotState(t), s.deps.config().proxy.parked_idle_ms);
  }
  t.statusFlags = flags;
  s.attachBackend(conn);
}
