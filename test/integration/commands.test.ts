// Commands the client libraries in the other tests rarely send, byte by byte through Ferry and
// compared with the server directly: COM_FIELD_LIST, COM_SET_OPTION, COM_RESET_CONNECTION,
// COM_STMT_SEND_LONG_DATA and COM_STMT_RESET, server-side cursors with COM_STMT_FETCH, and a
// payload of exactly 0xFFFFFF bytes with a pipelined command behind it.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { FerryServer } from "../../src/server.js";
import {
  CLIENT_MULTI_RESULTS, CLIENT_MULTI_STATEMENTS, CLIENT_PROTOCOL_41, COM_FIELD_LIST, COM_RESET_CONNECTION, COM_SET_OPTION, COM_STMT_EXECUTE, COM_STMT_FETCH,
  COM_STMT_PREPARE, COM_STMT_RESET, COM_STMT_SEND_LONG_DATA, ERR_HEADER, SERVER_STATUS_CURSOR_EXISTS, SERVER_STATUS_LAST_ROW_SENT,
} from "../../src/protocol/constants.js";
import { decodeErr, decodeOk } from "../../src/protocol/packets.js";
import { PacketWriter } from "../../src/protocol/writer.js";
import { APP_PASSWORD, APP_USER, Cluster, proxyConfig, startProxy, withTimeout } from "./harness.js";
import { RawClient } from "./raw-client.js";

const EXTRA = CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS;
const isEnd = (p: Buffer): boolean => p[0] === 0xfe && p.length < 0xffffff;
const statusOf = (p: Buffer): number => decodeOk(p, CLIENT_PROTOCOL_41).statusFlags;
const payload = (w: PacketWriter): Buffer => w.finish(0).subarray(4);

const next = (c: RawClient): Promise<Buffer> => withTimeout(c.packet(), 10_000, "waiting for a packet");

/** Packets up to and including a terminator (OK/EOF 0xFE, or ERR): rows sent for COM_STMT_FETCH. */
async function untilTerminator(c: RawClient): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (let i = 0; i < 100_000; i++) {
    const p = await next(c);
    out.push(p);
    if (isEnd(p) || p[0] === ERR_HEADER) return out;
  }
  throw new Error("response did not end");
}

/** A whole response: one OK or ERR packet, or a result set up to its terminator. */
async function untilEnd(c: RawClient): Promise<Buffer[]> {
  const first = await next(c);
  if (first[0] === 0x00 || first[0] === ERR_HEADER) return [first];
  return isEnd(first) ? [first] : [first, ...(await untilTerminator(c))];
}

/** Prepares a statement; returns its id after reading the definitions. */
async function prepare(c: RawClient, sql: string): Promise<number> {
  c.send(COM_STMT_PREPARE, sql);
  const ok = await next(c);
  if (ok[0] === ERR_HEADER) throw new Error(decodeErr(ok).message);
  const cols = ok.readUInt16LE(5), params = ok.readUInt16LE(7);
  for (let i = 0; i < cols + params; i++) await next(c);
  return ok.readUInt32LE(1);
}

describe("less common commands, through Ferry and directly", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  const clients: RawClient[] = [];
  const both = async (): Promise<[RawClient, RawClient]> => {
    const pair: [RawClient, RawClient] = [
      await RawClient.connect(ferry.port, APP_USER, APP_PASSWORD, EXTRA),
      await RawClient.connect(cluster.servers[0].port, APP_USER, APP_PASSWORD, EXTRA),
    ];
    clients.push(...pair);
    return pair;
  };

  before(async () => {
    cluster = await Cluster.start(1);
    ({ ferry } = await startProxy(cluster));
    await cluster.servers[0].sql("CREATE TABLE app.fl (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL, note TEXT)");
  });

  after(async () => {
    for (const c of clients) c.close();
    await ferry?.close();
    await cluster?.stop();
  });

  it("COM_FIELD_LIST returns the same column definitions", async () => {
    const answers: Buffer[][] = [];
    for (const c of await both()) {
      c.sendQuery("USE app");
      assert.equal((await untilEnd(c))[0][0], 0x00);
      c.send(COM_FIELD_LIST, Buffer.from("fl\0", "latin1"));
      answers.push(await untilEnd(c));
    }
    assert.equal(answers[0].length, 4, "three column definitions and the terminator");
    assert.deepEqual(answers[0].slice(0, 3), answers[1].slice(0, 3));
  });

  it("COM_SET_OPTION switches multi-statements off and on", async () => {
    for (const c of await both()) {
      c.send(COM_SET_OPTION, payload(new PacketWriter().u16(1))); // MYSQL_OPTION_MULTI_STATEMENTS_OFF
      assert.ok(isEnd((await untilEnd(c))[0]));
      c.sendQuery("SELECT 1; SELECT 2");
      const refused = await untilEnd(c);
      assert.equal(decodeErr(refused[refused.length - 1]).errno, 1064);
      c.send(COM_SET_OPTION, payload(new PacketWriter().u16(0))); // ON
      await untilEnd(c);
      c.sendQuery("SELECT 1; SELECT 2");
      const first = await untilEnd(c);
      assert.ok(statusOf(first[first.length - 1]) & 0x0008, "SERVER_MORE_RESULTS_EXISTS after the first result");
      const second = await untilEnd(c);
      assert.equal(second.length, 4); // column count, definition, row, terminator
    }
  });

  it("COM_RESET_CONNECTION clears user variables and prepared statements, and the session goes on", async () => {
    const results: string[][] = [];
    for (const c of await both()) {
      c.sendQuery("SET @kept = 'x'");
      await untilEnd(c);
      const id = await prepare(c, "SELECT 1");
      c.send(COM_RESET_CONNECTION);
      const ok = await next(c);
      assert.equal(ok[0], 0x00, "OK after the reset");
      c.sendQuery("SELECT @kept IS NULL AS gone");
      const r = await untilEnd(c);
      const execute = payload(new PacketWriter().u32(id).u8(0).u32(1));
      c.send(COM_STMT_EXECUTE, execute);
      const err = await next(c);
      results.push([r[2].toString("latin1"), String(err[0] === ERR_HEADER ? decodeErr(err).errno : "no error")]);
    }
    assert.deepEqual(results[0], results[1]);
    assert.deepEqual(results[0], ["\x011", "1243"]);
  });

  it("COM_STMT_SEND_LONG_DATA builds a parameter in pieces; COM_STMT_RESET clears it", async () => {
    const piece = (i: number): Buffer => Buffer.alloc(100_000, 97 + i);
    const values: Buffer[] = [];
    for (const c of await both()) {
      const id = await prepare(c, "SELECT ? AS v");
      for (let i = 0; i < 3; i++) c.send(COM_STMT_SEND_LONG_DATA, Buffer.concat([payload(new PacketWriter().u32(id).u16(0)), piece(i)]));
      // types bound: MYSQL_TYPE_BLOB; the value itself came as long data
      c.send(COM_STMT_EXECUTE, payload(new PacketWriter().u32(id).u8(0).u32(1).u8(0).u8(1).u16(0xfc)));
      const r = await untilEnd(c);
      assert.equal(r.length, 4, "column count, definition, row, terminator");
      const row = r[2];
      // binary row: 0x00, null bitmap (1 byte), then the value with a length prefix (0xfd: 3 bytes)
      assert.equal(row[2], 0xfd);
      const len = row.readUIntLE(3, 3);
      values.push(row.subarray(6, 6 + len));
      c.send(COM_STMT_RESET, payload(new PacketWriter().u32(id)));
      assert.equal((await next(c))[0], 0x00, "OK to COM_STMT_RESET");
    }
    assert.equal(values[0].length, 300_000);
    assert.ok(values[0].equals(Buffer.concat([piece(0), piece(1), piece(2)])));
    assert.ok(values[0].equals(values[1]));
  });

  it("a cursor opened by COM_STMT_EXECUTE is read with COM_STMT_FETCH to its last row", async () => {
    const fetched: number[][] = [];
    for (const c of await both()) {
      const id = await prepare(c, "SELECT seq FROM app.seq_1_to_10");
      c.send(COM_STMT_EXECUTE, payload(new PacketWriter().u32(id).u8(1 /* CURSOR_TYPE_READ_ONLY */).u32(1)));
      const head = await untilEnd(c); // column count, definition, terminator: rows come by fetch
      assert.equal(head.length, 3);
      assert.ok(statusOf(head[2]) & SERVER_STATUS_CURSOR_EXISTS, "the server opened a cursor");
      const seen: number[] = [];
      for (let round = 0; round < 10; round++) {
        c.send(COM_STMT_FETCH, payload(new PacketWriter().u32(id).u32(4)));
        const part = await untilTerminator(c);
        for (const row of part.slice(0, -1)) seen.push(Number(row.readBigUInt64LE(2)));
        if (statusOf(part[part.length - 1]) & SERVER_STATUS_LAST_ROW_SENT) break;
      }
      fetched.push(seen);
      c.sendQuery("SELECT 'after' AS a");
      assert.equal((await untilEnd(c)).length, 4, "the session goes on after the cursor");
    }
    assert.deepEqual(fetched[0], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(fetched[0], fetched[1]);
  });
  it("a statement whose cursor is open is not closed to keep under max_prepared_statements", async () => {
    ferry.reload(proxyConfig(cluster, "max_prepared_statements = 2"));
    try {
      const c = await RawClient.connect(ferry.port, APP_USER, APP_PASSWORD, EXTRA);
      clients.push(c);
      const id = await prepare(c, "SELECT seq FROM app.seq_1_to_10");
      c.send(COM_STMT_EXECUTE, payload(new PacketWriter().u32(id).u8(1 /* CURSOR_TYPE_READ_ONLY */).u32(1)));
      assert.equal((await untilEnd(c)).length, 3);
      const fetch = async (): Promise<{ rows: number[]; last: boolean }> => {
        c.send(COM_STMT_FETCH, payload(new PacketWriter().u32(id).u32(4)));
        const part = await untilTerminator(c);
        assert.notEqual(part[part.length - 1][0], ERR_HEADER, "the fetch failed: the cursor's statement was closed");
        return { rows: part.slice(0, -1).map((row) => Number(row.readBigUInt64LE(2))), last: (statusOf(part[part.length - 1]) & SERVER_STATUS_LAST_ROW_SENT) !== 0 };
      };
      const seen = (await fetch()).rows;
      // Three more statements: the cap closes the least recently used of the others, not the cursor's.
      for (const sql of ["SELECT 1", "SELECT 2", "SELECT 3"]) await prepare(c, sql);
      for (let round = 0; round < 5; round++) {
        const part = await fetch();
        seen.push(...part.rows);
        if (part.last) break;
      }
      assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    } finally {
      ferry.reload(proxyConfig(cluster));
    }
  });

  it("a statement of exactly 0xFFFFFF bytes (ended by an empty packet) and one sent right behind it both get their answers", async () => {
    // COM_QUERY byte + statement = 16,777,215 bytes: one full packet, then an empty one ends the
    // payload. The client sends its next statement without waiting: Ferry must see where the first
    // ended, hold the second until the first is answered, and dispatch it as a command.
    const head = "SELECT LENGTH('", tail = "') AS l";
    const sql = head + "x".repeat(0xffffff - 1 - head.length - tail.length) + tail;
    const answers: string[][] = [];
    for (const c of await both()) {
      c.sendQuery(sql);
      c.sendQuery("SELECT 'next' AS n");
      const got: string[] = [];
      for (let i = 0; i < 2; i++) {
        const r = await untilEnd(c);
        assert.equal(r.length, 4, "column count, definition, row, terminator");
        got.push(r[2].toString("utf8", 1, 1 + r[2][0]));
      }
      answers.push(got);
    }
    assert.deepEqual(answers[0], [String(0xffffff - 1 - head.length - tail.length), "next"]);
    assert.deepEqual(answers[0], answers[1]);
  });
});
