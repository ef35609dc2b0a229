// Random commands from authenticated clients: well-framed packets with random command bytes and
// payloads, mostly around the commands Ferry parses itself (queries, prepared statements, change
// user); then framing faults: commands split into pieces, pipelined, out of sequence, cut short,
// or bytes that are no packets at all. Ferry must answer or refuse each, close only the session concerned, log no error of its
// own, and keep serving. Deterministic: the seed is fixed and printed on failure. A longer campaign
// runs with FERRY_FUZZ_SEED (any integer) and FERRY_FUZZ_MS (how long; the client count is bounded
// at 200 per second).

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { framePayload } from "../../src/protocol/writer.js";
import type { FerryServer } from "../../src/server.js";
import { RawClient } from "./raw-client.js";
import { APP_PASSWORD, APP_USER, Cluster, connectVia, one, startProxy, waitFor, type LogSink } from "./harness.js";

/** mulberry32: a small seeded generator, so a failing sequence can be replayed. */
function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

const SQL = [
  "SELECT 1", "SELECT ?", "SET @a = 1", "BEGIN", "COMMIT", "SELECT * FROM information_schema.TABLES LIMIT 3", "CREATE TEMPORARY TABLE t (a INT)",
  "LOAD DATA LOCAL INFILE 'x' INTO TABLE t", "SELECT GET_LOCK('x', 0)", "KILL 1", "KILL QUERY 99999", "USE app", "SET NAMES latin1",
  "SELECT 1; SELECT 2", "PREPARE s FROM 'SELECT 1'", "XA START 'x'", "LOCK TABLES mysql.user READ", "SELECT REPEAT('a', 100000)",
];
// Every command byte a client may send except COM_SHUTDOWN, which the test user is allowed to run
// (through Ferry as directly) and would stop the server.
const COMMANDS = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
  0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x7f, 0xfe, 0xff];
const STATEMENT_COMMANDS = [0x17, 0x18, 0x19, 0x1a, 0x1c];

describe("random commands", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  let logs: LogSink;

  before(async () => {
    cluster = await Cluster.start(1);
    ({ ferry, logs } = await startProxy(cluster));
  });

  after(async () => {
    await ferry?.close();
    await cluster?.stop();
  });

  it("never take Ferry down, are answered or refused, and leave no session behind", async () => {
    const seed = Number(process.env.FERRY_FUZZ_SEED ?? 20261123);
    const runMs = Number(process.env.FERRY_FUZZ_MS ?? 10_000);
    const rnd = prng(seed);
    const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => rnd(256)));
    const payload = (cmd: number): Buffer => {
      if (cmd === 0x03 || cmd === 0x16) return Buffer.concat([Buffer.from(SQL[rnd(SQL.length)]), rnd(4) === 0 ? bytes(rnd(20)) : Buffer.alloc(0)]);
      if (STATEMENT_COMMANDS.includes(cmd)) {
        const b = bytes(4 + rnd(36));
        b.writeUInt32LE(rnd(5), 0); // statement ids 0..4: some exist, some not
        return rnd(3) === 0 ? b.subarray(0, rnd(5)) : b;
      }
      return bytes(rnd(50));
    };
    const deadline = Date.now() + runMs;
    let clients = 0, commands = 0;
    const history: string[] = [];
    while (Date.now() < deadline && clients < runMs / 5) {
      const c = await RawClient.connect(ferry.port, APP_USER, APP_PASSWORD);
      clients++;
      for (let i = 1 + rnd(5); i > 0; i--) {
        const cmd = rnd(10) < 6 ? [0x03, 0x16, ...STATEMENT_COMMANDS][rnd(7)] : COMMANDS[rnd(COMMANDS.length)];
        const p = payload(cmd);
        history.push(`client ${clients}: command 0x${cmd.toString(16)} ${p.toString("hex").slice(0, 40)}`);
        c.send(cmd, p);
        commands++;
        await Promise.race([c.packet().catch(() => null), new Promise((r) => setTimeout(r, 5 + rnd(60)))]);
      }
      c.close();
    }
    const context = `seed ${seed}, ${clients} clients, ${commands} commands; last: ${history.slice(-3).join(" | ")}`;
    assert.ok(clients > 50, `clients ran (${context})`);
    const c = await connectVia(ferry.port);
    assert.equal(Number((await one(c, "SELECT 1 + 1 AS two")).two), 2, `Ferry still serves (${context})`);
    await c.end();
    assert.ok(await waitFor(() => ferry.sessions() === 0, 5000), `every session ended (${ferry.sessions()} left; ${context})`);
    const errors = logs.lines.filter((l) => /"level":(50|60)/.test(l));
    assert.deepEqual(errors, [], `no error logged by Ferry (${context})`);
  });

  it("framing faults (split, pipelined, out of sequence, truncated, unframed) never take Ferry down", async () => {
    const seed = Number(process.env.FERRY_FUZZ_SEED ?? 20261202);
    const runMs = Number(process.env.FERRY_FUZZ_MS ?? 8_000);
    const rnd = prng(seed);
    const query = (): Buffer => Buffer.concat([Buffer.from([0x03]), Buffer.from(SQL[rnd(SQL.length)])]);
    const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    /** Writes bytes in pieces of 1..maxPiece, pausing 0–2 ms after one in `pauseOneIn`. */
    const writeInPieces = async (c: RawClient, bytes: Buffer, maxPiece: number, pauseOneIn: number): Promise<void> => {
      for (let at = 0; at < bytes.length;) {
        const n = 1 + rnd(Math.min(maxPiece, bytes.length - at));
        c.sendRaw(bytes.subarray(at, at + n));
        at += n;
        if (rnd(pauseOneIn) === 0) await pause(rnd(3));
      }
    };
    const deadline = Date.now() + runMs;
    let clients = 0, steps = 0, splitAnswered = 0;
    const kinds = new Map<string, number>();
    const history: string[] = [];
    const logBefore = logs.lines.length;
    while (Date.now() < deadline && clients < runMs / 10) {
      const c = await RawClient.connect(ferry.port, APP_USER, APP_PASSWORD);
      clients++;
      let open = true;
      if (rnd(2) === 0) {
        // First a command written in pieces (header bytes too), answered like any other: a result set of one column.
        await writeInPieces(c, framePayload(Buffer.from("\x03SELECT 'split'"), 0), 6, 2);
        const first = await Promise.race([c.packet(), pause(5000).then(() => null)]);
        assert.equal(first?.[0], 1, `client ${clients}: a split command is answered with its result set (seed ${seed}): ${first?.toString("latin1")}`);
        splitAnswered++;
        for (let k = 0; k < 3; k++) await c.packet(); // the column definition, the row, the closing OK (CLIENT_DEPRECATE_EOF)
      }
      for (let i = 1 + rnd(4); i > 0 && open; i--) {
        const kind = ["split", "pipelined", "sequence", "truncated", "unframed", "continuation"][rnd(6)];
        kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
        steps++;
        history.push(`client ${clients}: ${kind}`);
        switch (kind) {
          case "split": // one command written in pieces, some after a pause
            await writeInPieces(c, framePayload(query(), 0), 8, 3);
            break;
          case "pipelined": // the next commands before the first answer, in one write or several
            c.sendRaw(Buffer.concat([framePayload(query(), 0), framePayload(query(), 0), framePayload(Buffer.from([0x0e]), 0)]));
            break;
          case "sequence": { // a command packet whose sequence id is not 0
            const seq = 1 + rnd(255);
            c.sendRaw(framePayload(query(), seq));
            open = false;
            break;
          }
          case "truncated": { // a header promising more than ever comes, then the client goes
            const h = Buffer.from([0, 0, 0, 0, 0x03]);
            h.writeUIntLE(10 + rnd(200_000), 0, 3);
            c.sendRaw(Buffer.concat([h, Buffer.from("SELECT ")]));
            open = false;
            break;
          }
          case "unframed": // bytes that are no packet stream at all
            c.sendRaw(Buffer.from(Array.from({ length: 1 + rnd(64) }, () => rnd(256))));
            open = false;
            break;
          case "continuation": { // a 16 MiB - 1 first packet, cut short
            const h = Buffer.from([0xff, 0xff, 0xff, 0, 0x03]);
            c.sendRaw(Buffer.concat([h, Buffer.from("SELECT '"), Buffer.alloc(rnd(70_000), 0x61)]));
            open = false;
            break;
          }
        }
        await Promise.race([c.packet().catch(() => null), pause(5 + rnd(40))]);
      }
      if (open && rnd(2) === 0) c.close();
      else c.destroy();
    }
    const context = `seed ${seed}, ${clients} clients, ${steps} steps (${[...kinds].map(([k, n]) => `${k} ${n}`).join(", ")}); last: ${history.slice(-3).join(" | ")}`;
    assert.ok(clients > 30 && kinds.size === 6 && splitAnswered > 10, `every kind of fault ran, ${splitAnswered} split commands answered (${context})`);
    const c = await connectVia(ferry.port);
    assert.equal(Number((await one(c, "SELECT 1 + 1 AS two")).two), 2, `Ferry still serves (${context})`);
    await c.end();
    assert.ok(await waitFor(() => ferry.sessions() === 0, 5000), `every session ended (${ferry.sessions()} left; ${context})`);
    const errors = logs.lines.slice(logBefore).filter((l) => /"level":(50|60)/.test(l));
    assert.deepEqual(errors, [], `no error logged by Ferry (${context})`);
  });
});
