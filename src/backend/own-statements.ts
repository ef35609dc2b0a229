// Statements Ferry runs itself on a backend connection (state capture and restore): sent
// pipelined, answers read in order. Not the forwarding path: packets are read whole here.

import { COM_QUERY, COM_STMT_PREPARE, MAX_PACKET_PAYLOAD } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { encodeCommand } from "../protocol/packets.js";
import { packetStream, type BackendConnection } from "./backend-connection.js";
import { readPrepareResult, readQueryResult, type StatementResult } from "./statement-results.js";

export type { StatementResult } from "./statement-results.js";

export interface OwnStatement {
  kind: "query" | "prepare";
  sql: string;
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
