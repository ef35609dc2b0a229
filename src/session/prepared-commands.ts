// Binary-protocol commands on prepared statements (COM_STMT_EXECUTE, BULK_EXECUTE, FETCH, RESET,
// CLOSE, SEND_LONG_DATA). Clients name statements by Ferry's ids; each backend connection the
// statement was prepared on has its own. Ferry rewrites the id in place, prepares the statement
// on a connection at its first use there (after a move or a hostgroup switch), and, because the
// server there has never seen the statement's parameter types, re-sends the types it remembered
// when the client's command relies on types bound earlier.

import {
  BULK_SEND_TYPES_TO_SERVER, COM_STMT_BULK_EXECUTE, COM_STMT_CLOSE, COM_STMT_EXECUTE, COM_STMT_FETCH, COM_STMT_SEND_LONG_DATA,
  ER_UNKNOWN_COM_ERROR, ER_UNKNOWN_STMT_HANDLER, HEADER_SIZE, MARIADB_CLIENT_STMT_BULK_OPERATIONS,
} from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { encodeErr } from "../protocol/packets.js";
import { Shape } from "../protocol/response-scanner.js";
import { refuse, refuseMalformed } from "./command-refusal.js";
import { prepareOnActive } from "./hostgroup-switch.js";
import type { Session } from "./session.js";
import { statementOn, type PreparedStatement, type StatementOnConnection } from "./state-tracker.js";

/** COM_STMT_CLOSE and COM_STMT_SEND_LONG_DATA: the server sends nothing back, not even an error. */
export function hasNoResponse(cmd: number): boolean {
  return cmd === COM_STMT_CLOSE || cmd === COM_STMT_SEND_LONG_DATA;
}

/** Dispatches a COM_STMT_* command other than PREPARE; returns the position after what it consumed. */
export function dispatchStatementCommand(s: Session, cmd: number, buf: Buffer, pos: number, end: number, len: number, avail: number): number {
  const p = pos + HEADER_SIZE;
  const noResponse = hasNoResponse(cmd);
  if (avail < (cmd === COM_STMT_BULK_EXECUTE ? 7 : 5)) {
    // The server ignores such a packet when no response is due; otherwise it answers 1835.
    if (noResponse) return discard(s, p, len, avail);
    return refuseMalformed(s, cmd, p, len, avail, "too short to hold a statement id");
  }
  const id = buf.readUInt32LE(p + 1);
  const t = s.tracker;
  s.command.stmtId = id;
  const stmt = t.prepared.get(id);
  let here: StatementOnConnection | null = null;
  // 0xFFFFFFFF is MariaDB's "the statement prepared last": the server resolves it.
  if (stmt) {
    t.touch(stmt);
    if (cmd === COM_STMT_CLOSE) s.parked.closeStatement(stmt);
    here = statementOn(stmt, s.backend);
    if (here === null) {
      if (cmd === COM_STMT_CLOSE) {
        t.onStmtClosed(id);
        return discard(s, p, len, avail);
      }
      // First use on this connection: prepare it here, then run the command.
      startPrepareHere(s, stmt, buf.subarray(pos, end));
      return end;
    }
    if (here.id !== id) buf.writeUInt32LE(here.id, p + 1);
  } else if (id !== 0xffffffff) {
    if (noResponse) return discard(s, p, len, avail);
    return refuseUnknownStatement(s, cmd, id, p, len, avail);
  }
  switch (cmd) {
    case COM_STMT_EXECUTE:
      s.command.cursor = avail >= 6 && (buf[p + 5] & 0x07) !== 0;
      if (stmt) s.command.effects = stmt.effects;
      if (stmt && here) {
        t.onExecuteSent(stmt, buf, p, p + avail);
        if (!here.typesBound && stmt.numParams > 0) return executeWithTypes(s, stmt, here, buf, pos, end, len, avail);
      }
      return s.loop.forwardCommand(buf, pos, end, len, Shape.Result);
    case COM_STMT_BULK_EXECUTE:
      if ((s.backend!.mariadbCapabilities & MARIADB_CLIENT_STMT_BULK_OPERATIONS) === 0) {
        const why = (s.auth.mariadbCapabilities & MARIADB_CLIENT_STMT_BULK_OPERATIONS) === 0
          ? "bulk operations were not agreed at login" : `server ${s.backendAddress} does not support bulk operations`;
        return refuse(s, cmd, p, len, avail, ER_UNKNOWN_COM_ERROR, "08S01", why);
      }
      s.command.cursor = false;
      if (stmt) s.command.effects = stmt.effects;
      if (stmt && here) return bulkExecute(s, stmt, here, buf, pos, end, len, avail);
      return s.loop.forwardCommand(buf, pos, end, len, Shape.Result);
    case COM_STMT_FETCH:
      return s.loop.forwardCommand(buf, pos, end, len, Shape.Fetch);
    case COM_STMT_CLOSE:
      t.onStmtClosed(id);
      return s.loop.forwardCommand(buf, pos, end, len, Shape.None);
    case COM_STMT_SEND_LONG_DATA:
      t.onLongData(id);
      return s.loop.forwardCommand(buf, pos, end, len, Shape.None);
    default: // COM_STMT_RESET
      return s.loop.forwardCommand(buf, pos, end, len, Shape.Simple);
  }
}

/** A prepared statement's first use on this connection: prepare it here first, then run the held command. */
function startPrepareHere(s: Session, stmt: PreparedStatement, command: Buffer): void {
  s.loop.holdWhile(command, prepareOnActive(s, stmt).catch((e: Error) => {
    s.log.info({ statement: stmt.clientId, err: e.message }, "could not prepare a statement on this connection");
    s.failNext = e instanceof FerryError ? e : new FerryError(1105, "HY000", e.message);
  }));
}

/**
 * First COM_STMT_EXECUTE of a statement on a backend connection: when the client relies on types
 * bound earlier (new_params_bound_flag = 0), Ferry re-sends the execute with the types it remembered.
 */
function executeWithTypes(s: Session, stmt: PreparedStatement, here: StatementOnConnection, buf: Buffer, pos: number, end: number, len: number, avail: number): number {
  const p = pos + HEADER_SIZE;
  const flagAt = p + 10 + ((stmt.numParams + 7) >> 3);
  here.typesBound = true;
  if (flagAt >= p + avail || buf[flagAt] === 1) return s.loop.forwardCommand(buf, pos, end, len, Shape.Result);
  if (len !== avail || !stmt.paramTypes) {
    s.fatal(new FerryError(1210, "HY000", "refused COM_STMT_EXECUTE: parameter types are unknown on this backend connection", "client"), 1);
    return end;
  }
  s.log.debug({ statement: stmt.clientId }, "re-sending parameter types on the statement's first execute on this connection");
  return s.loop.sendRebuilt(Buffer.concat([buf.subarray(p, flagAt), Buffer.from([1]), stmt.paramTypes, buf.subarray(flagAt + 1, p + len)]), p + len);
}

/**
 * COM_STMT_BULK_EXECUTE. A bulk command that carries no parameter types relies on types the
 * connection saw before: where the statement's types were never sent, Ferry sends the remembered ones.
 */
function bulkExecute(s: Session, stmt: PreparedStatement, here: StatementOnConnection, buf: Buffer, pos: number, end: number, len: number, avail: number): number {
  const p = pos + HEADER_SIZE;
  s.tracker.onBulkSent(stmt, buf, p, p + avail);
  const flags = buf.readUInt16LE(p + 5);
  if ((flags & BULK_SEND_TYPES_TO_SERVER) !== 0 || here.typesBound || stmt.numParams === 0) {
    here.typesBound = true;
    return s.loop.forwardCommand(buf, pos, end, len, Shape.Result);
  }
  if (len !== avail || !stmt.paramTypes) {
    s.fatal(new FerryError(1210, "HY000", "refused COM_STMT_BULK_EXECUTE: parameter types are unknown on this backend connection", "client"), 1);
    return end;
  }
  here.typesBound = true;
  s.log.debug({ statement: stmt.clientId }, "re-sending parameter types with the statement's first bulk execute on this connection");
  const head = Buffer.from(buf.subarray(p, p + 7));
  head.writeUInt16LE(flags | BULK_SEND_TYPES_TO_SERVER, 5);
  return s.loop.sendRebuilt(Buffer.concat([head, stmt.paramTypes, buf.subarray(p + 7, p + len)]), p + len);
}

/** A command with no response that Ferry drops: skip its bytes. */
function discard(s: Session, p: number, len: number, avail: number): number {
  if (s.loop.framing.expect(len, avail)) s.fatal(new FerryError(ER_UNKNOWN_COM_ERROR, "08S01", "refused command: unknown statement id in a multi-packet command", "client"), -1);
  return p + avail;
}

/** The server's own error for an id it does not know, naming the server function as it does. */
function refuseUnknownStatement(s: Session, cmd: number, id: number, p: number, len: number, avail: number): number {
  const what = cmd === COM_STMT_EXECUTE ? "mysqld_stmt_execute" : cmd === COM_STMT_FETCH ? "mysqld_stmt_fetch"
    : cmd === COM_STMT_BULK_EXECUTE ? "mysqld_stmt_bulk_execute" : "mysqld_stmt_reset";
  const message = `Unknown prepared statement handler (${id}) given to ${what}`;
  s.client.write(encodeErr(1, ER_UNKNOWN_STMT_HANDLER, "HY000", `ferry: ${message}`));
  if (s.loop.framing.expect(len, avail)) s.fatal(new FerryError(ER_UNKNOWN_STMT_HANDLER, "HY000", message, "client"), -1);
  return p + avail;
}
