// Statements Ferry runs itself on a backend connection (state capture and restore): sent
// pipelined, answers read in order. Not the forwarding path: packets are read whole here.

import { CLIENT_DEPRECATE_EOF, COM_QUERY, COM_STMT_PREPARE, EOF_HEADER, ERR_HEADER, MAX_PACKET_PAYLOAD, OK_HEADER, SERVER_MORE_RESULTS_EXISTS } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import type { PacketStream } from "../protocol/packet-stream.js";
import { decodeErr, decodeOk, encodeCommand, type ErrPacket, type OkPacket } from "../protocol/packets.js";
import { PacketReader } from "../protocol/reader.js";
import { okStatus, eofStatus } from "../protocol/response-scanner.js";
import { packetStream, type BackendConnection } from "./backend-connection.js";

export interface OwnStatement {
  kind: "query" | "prepare";
  sql: string;
}

export interface StatementResult {
  error: ErrPacket | null;
  ok: OkPacket | null;
  columns: string[];
  rows: (Buffer | null)[][];
  /** COM_STMT_PREPARE: the backend's statement id */
  stmtId: number;
}

/**
 * Runs statements on a backend connection that no session is reading at the moment. Answers
 * come back in order; an ERR answer is returned, not thrown (the caller decides what it means).
 */
export async function runOwnStatements(conn: BackendConnection, statements: OwnStatement[]): Promise<StatementResult[]> {
  const stream = packetStream(conn.socket, conn.reader);
  try {
    const out = Buffer.concat(statements.map((s) => encodeCommand(s.kind === "query" ? COM_QUERY : COM_STMT_PREPARE, s.sql)));
    if (out.length >= MAX_PACKET_PAYLOAD) throw new FerryError(1105, "HY000", "statement too large for Ferry's own use");
    conn.socket.write(out);
    const results: StatementResult[] = [];
    for (const s of statements) results.push(s.kind === "query" ? await readQueryResult(stream, conn.capabilities) : await readPrepareResult(stream, conn.capabilities));
    return results;
  } finally {
    const rest = stream.detach();
    if (conn.reader) conn.reader.sink = null;
    if (rest.length) throw new FerryError(2027, "HY000", `backend ${conn.server.address} sent ${rest.length} unexpected bytes`, "backend");
  }
}

function empty(): StatementResult {
  return { error: null, ok: null, columns: [], rows: [], stmtId: 0 };
}

async function readQueryResult(stream: PacketStream, caps: number): Promise<StatementResult> {
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

async function readPrepareResult(stream: PacketStream, caps: number): Promise<StatementResult> {
  const res = empty();
  const p = (await stream.next()).payload;
  if (p[0] === ERR_HEADER) {
    res.error = decodeErr(p);
    return res;
  }
  res.stmtId = p.readUInt32LE(1);
  const columns = p.readUInt16LE(5);
  const params = p.readUInt16LE(7);
  const eof = (caps & CLIENT_DEPRECATE_EOF) === 0;
  for (let i = 0; i < params; i++) await stream.next();
  if (params > 0 && eof) await stream.next();
  for (let i = 0; i < columns; i++) await stream.next();
  if (columns > 0 && eof) await stream.next();
  return res;
}

function columnName(def: Buffer): string {
  const r = new PacketReader(def);
  r.lenencBytes(); // catalog
  r.lenencBytes(); // schema
  r.lenencBytes(); // table
  r.lenencBytes(); // org_table
  return r.lenencString();
}
