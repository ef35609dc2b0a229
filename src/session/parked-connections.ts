// A session's backend connections to other hostgroups than the active one's (read/write split),
// each with a snapshot of the session state it has. They still count for their servers in the
// router; one that dies, whose server leaves, or that stays unused for parked_idle_ms is closed.

import { quitBackend, type BackendConnection } from "../backend/backend-connection.js";
import { SERVER_STATUS_IN_TRANS } from "../protocol/constants.js";
import { encodeStmtClose } from "../protocol/packets.js";
import type { Router } from "../router/router.js";
import type { StateSnapshot } from "./state-sync.js";
import type { PreparedStatement } from "./state-tracker.js";

export interface ParkedConnection {
  conn: BackendConnection;
  hostgroup: number;
  snapshot: StateSnapshot;
  onClose: () => void;
  idleTimer: NodeJS.Timeout | null;
}

const ignore = (): void => undefined;

export class ParkedConnections {
  private readonly list: ParkedConnection[] = [];

  constructor(private readonly router: Router) {}

  get size(): number {
    return this.list.length;
  }

  has(hostgroup: number): boolean {
    return this.list.some((p) => p.hostgroup === hostgroup);
  }

  /** Keeps a connection; unused for idleMs (when > 0) it is closed. */
  park(conn: BackendConnection, snapshot: StateSnapshot, idleMs = 0): void {
    const entry: ParkedConnection = { conn, hostgroup: conn.server.hostgroup, snapshot, onClose: () => this.discard(entry), idleTimer: null };
    conn.socket.once("close", entry.onClose);
    conn.socket.on("error", ignore);
    if (idleMs > 0 && (snapshot.statusFlags & SERVER_STATUS_IN_TRANS) === 0) {
      entry.idleTimer = setTimeout(entry.onClose, idleMs);
      entry.idleTimer.unref();
    }
    this.list.push(entry);
  }

  /** The parked connection of a hostgroup, now the caller's (still counted for its server). */
  take(hostgroup: number): ParkedConnection | null {
    const i = this.list.findIndex((p) => p.hostgroup === hostgroup);
    if (i < 0) return null;
    const [entry] = this.list.splice(i, 1);
    entry.conn.socket.off("close", entry.onClose);
    entry.conn.socket.off("error", ignore);
    if (entry.idleTimer) clearTimeout(entry.idleTimer);
    return entry;
  }

  /** Closes a parked connection (its server leaves, it died, or the session state was reset). */
  discard(entry: ParkedConnection): void {
    const i = this.list.indexOf(entry);
    if (i < 0) return;
    this.list.splice(i, 1);
    this.router.release(entry.conn.server.address);
    entry.conn.socket.off("close", entry.onClose);
    if (entry.idleTimer) clearTimeout(entry.idleTimer);
    quitBackend(entry.conn);
    setTimeout(() => entry.conn.socket.destroy(), 1000).unref();
  }

  /** Closes the unwanted ones (on servers that leave, too old); one holding a transaction only when forced. */
  drop(unwanted: (conn: BackendConnection) => boolean, force = false): void {
    for (const p of [...this.list]) {
      if (unwanted(p.conn) && (force || (p.snapshot.statusFlags & SERVER_STATUS_IN_TRANS) === 0)) this.discard(p);
    }
  }

  /** Ends them all; with `reuse` (the session ended between commands) each goes there instead, its place given back. */
  dropAll(reuse: ((conn: BackendConnection) => void) | null = null): void {
    for (const p of [...this.list]) {
      if (reuse === null) {
        this.discard(p);
        continue;
      }
      const { conn } = this.take(p.hostgroup)!;
      this.router.release(conn.server.address);
      reuse(conn);
    }
  }

  /** COM_STMT_CLOSE for a statement on every parked connection that has it (it has no response). */
  closeStatement(stmt: PreparedStatement): void {
    for (const x of this.list) {
      const rec = stmt.on.get(x.conn);
      if (!rec) continue;
      x.conn.socket.write(encodeStmtClose(rec.id));
    }
  }
}
