// Reading the answers to statements Ferry sends itself, whole packets at a time from a backend's
// PacketStream: query results (OK, ERR, rows as raw values) and COM_STMT_PREPARE answers.

import { CLIENT_DEPRECATE_EOF, EOF_HEADER, ERR_HEADER, MAX_PACKET_PAYLOAD, OK_HEADER, SERVER_MORE_RESULTS_EXISTS } from "../protocol/constants.js";
import type { PacketStream } from "../protocol/packet-stream.js";
import { columnName, columnShape } from "../protocol/column-definition.js";
import { decodeErr, decodeOk, type ErrPacket, type OkPacket } from "../protocol/packets.js";
import { PacketReader } from "../protocol/reader.js";
import { okStatus, eofStatus } from "../protocol/response-scanner.js";

export interface StatementResult {
  error: ErrPacket | null;
  ok: OkPacket | null;
  /** names of the result's columns (of a COM_STMT_PREPARE: of the statement's result columns) */
  columns: string[];
  rows: (Buffer | null)[][];
  /** COM_STMT_PREPARE: the backend's statement id, and the statement's parameters and result columns there */
  stmtId: number;
  numParams: number;
  numColumns: number;
  /** COM_STMT_PREPARE: each result column's columnShape() */
  columnShapes: number[];
}

function empty(): StatementResult {
  return { error: null, ok: null, columns: [], rows: [], stmtId: 0, numParams: 0, numColumns: 0, columnShapes: [] };
}

/** Reads one COM_QUERY answer (all its results) from a backend's packet stream. */
export async function readQueryResult(stream: PacketStream, caps: number): Promise<StatementResult> {
  const res = empty();
  for (;;) {
    const first = (await stream.next()).payload;
    if (first[0] === OK_HEADER) {
      res.ok = decodeOk(first, caps);
      if (res.ok.statusFlags & SERVER_MORE_RESULTS_EXISTS) continue;
      return res;
    }
    if (first[0] === ERR_HEADER) {
      res.error = decodeErr(first);
      return res;
    }
    const count = new PacketReader(first).lenenc();
    for (let i = 0; i < count; i++) res.columns.push(columnName((await stream.next()).payload));
    const deprecateEof = (caps & CLIENT_DEPRECATE_EOF) !== 0;
    if (!deprecateEof) await stream.next();
    let status = 0;
    for (;;) {
      const p = (await stream.next()).payload;
      if (p[0] === ERR_HEADER) {
        res.error = decodeErr(p);
        return res;
      }
      if (p[0] === EOF_HEADER && p.length < MAX_PACKET_PAYLOAD) {
        status = deprecateEof ? okStatus(p, 0, p.length) : eofStatus(p, 0, p.length);
        break;
      }
      const r = new PacketReader(p);
      const row: (Buffer | null)[] = [];
      for (let i = 0; i < count; i++) {
        const n = r.lenencOrNull();
        row.push(n === null ? null : r.bytes(n));
      }
      res.rows.push(row);
    }
    if (!(status & SERVER_MORE_RESULTS_EXISTS)) return res;
  }
}

/** Reads one COM_STMT_PREPARE answer. */
export async function readPrepareResult(stream: PacketStream, caps: number): Promise<StatementResult> {
  const res = empty();
  const p = (await stream.next()).payload;
  if (p[0] === ERR_HEADER) {
    res.error = decodeErr(p);
    return res;
  }
  res.stmtId = p.readUInt32LE(1);
  const columns = p.readUInt16LE(5);
  const params = p.readUInt16LE(7);
  res.numColumns = columns;
  res.numParams = params;
  const eof = (caps & CLIENT_DEPRECATE_EOF) === 0;
  for (let i = 0; i < params; i++) await stream.next();
  if (params > 0 && eof) await stream.next();
  for (let i = 0; i < columns; i++) {
    const def = (await stream.next()).payload;
    res.columns.push(columnName(def));
    res.columnShapes.push(columnShape(def, 0, def.length));
  }
  if (columns > 0 && eof) await stream.next();
  return res;
}
