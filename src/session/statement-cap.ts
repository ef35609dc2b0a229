// A cap on the prepared statements one backend connection holds (proxy.max_prepared_statements).
// A client that prepares statements and never closes them (a leak, or a cache without bound)
// would otherwise hold them all on the server, and the server refuses every prepare past its
// global max_prepared_stmt_count, for every client. Past the cap, Ferry closes the least
// recently used statements on that connection. The client keeps its ids: a statement closed this
// way is prepared again on its next use, the same way as after a move (prepared-commands.ts).
//
// Not closed: a statement with an open cursor or pending long data (the server holds state for
// it), and one whose text Ferry did not keep (it could not be prepared again).

import type { BackendConnection } from "../backend/backend-connection.js";
import { encodeStmtClose } from "../protocol/packets.js";
import type { Session } from "./session.js";
import type { PreparedStatement } from "./state-tracker.js";

/** After a statement was prepared on `b`: closes the least recently used ones there past the cap. */
export function capStatementsOn(s: Session, b: BackendConnection): void {
  const cap = s.deps.config().proxy.max_prepared_statements;
  const t = s.tracker;
  // A connection holds at most the session's statements.
  if (cap === 0 || t.prepared.size <= cap) return;
  const here: PreparedStatement[] = [];
  for (const stmt of t.prepared.values()) if (stmt.on.has(b)) here.push(stmt);
  let excess = here.length - cap;
  if (excess <= 0) return;
  const closable = here.filter((x) => x.sql !== null && !x.cursorOpen && !x.longDataPending).sort((x, y) => x.lastUsed - y.lastUsed);
  for (const stmt of closable) {
    if (excess-- <= 0) break;
    const rec = stmt.on.get(b)!;
    b.out.write(encodeStmtClose(rec.id));
    stmt.on.delete(b);
    if (stmt.lastConn === b) {
      stmt.lastConn = null;
      stmt.lastOn = null;
    }
    s.log.debug({ statement: stmt.clientId, server: b.server.address, cap }, "closed the least recently used prepared statement on this connection; it is prepared again on its next use");
  }
}
