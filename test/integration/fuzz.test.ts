// Random commands from authenticated clients: well-framed packets with random command bytes and
// payloads, mostly around the commands Ferry parses itself (queries, prepared statements, change
// user). Ferry must answer or refuse each, close only the session concerned, log no error of its
// own, and keep serving. Deterministic: the seed is fixed and printed on failure.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
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
    const seed = 20261123;
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
    const deadline = Date.now() + 10_000;
    let clients = 0, commands = 0;
    const history: string[] = [];
    while (Date.now() < deadline && clients < 2000) {
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
});
