// Changing the connection a session's statements run on, when query rules send a statement to
// another hostgroup (read/write split). The session keeps the connection it leaves, parked, and
// takes back a parked one of the target hostgroup after replaying what changed since it was
// parked; without one, it opens a connection there and restores the whole state. Binary prepared
// statements stay on the home connection, where all COM_STMT_* commands go.

import type { BackendConnection } from "../backend/backend-connection.js";
import { COM_QUIT } from "../protocol/constants.js";
import { encodeCommand } from "../protocol/packets.js";
import { lastStatus, noBackslashEscapes, restoreOn, runChecked } from "./migrator.js";
import type { Session } from "./session.js";
import { syncStatements } from "./state-sync.js";

/** Makes a connection of `hostgroup` the active one; `dropCurrent`: close the one left instead of parking it. */
export async function switchHostgroup(s: Session, hostgroup: number, dropCurrent = false): Promise<void> {
  const t = s.tracker;
  let conn: BackendConnection | null = null;
  let flags = t.statusFlags;
  const parked = s.takeParked(hostgroup);
  if (parked) {
    try {
      const results = await runChecked(parked.conn, syncStatements(parked.snapshot, t, noBackslashEscapes(parked.conn)));
      flags = lastStatus(results) ?? parked.snapshot.statusFlags;
      conn = parked.conn;
    } catch {
      // A parked connection that cannot be brought up to date is closed; a fresh one replaces it.
      s.deps.router.release(parked.conn.server.address);
      parked.conn.socket.on("error", () => undefined);
      parked.conn.socket.destroy();
    }
  }
  if (conn === null) {
    conn = await s.openBackend(hostgroup, t.schema);
    try {
      flags = await restoreOn(s, conn, hostgroup === s.homeHostgroup);
    } catch (e) {
      s.deps.router.release(conn.server.address);
      conn.socket.destroy();
      throw e;
    }
  }
  if (s.isClosed) {
    s.deps.router.release(conn.server.address);
    conn.socket.destroy();
    return;
  }
  const old = s.detachBackend(dropCurrent);
  if (old && dropCurrent) {
    old.socket.on("error", () => undefined);
    old.socket.end(encodeCommand(COM_QUIT));
  } else if (old) {
    s.park(old);
  }
  t.statusFlags = flags;
  s.attachBackend(conn);
}
