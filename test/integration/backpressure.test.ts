// Backpressure: a client that stops reading a large result stops the backend's sending too, so
// Ferry holds no more of the result than socket buffers do; when the client reads again, the whole
// result arrives and the session goes on.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Readable } from "node:stream";
import type mysql from "mysql2/promise";
import type { FerryServer } from "../../src/server.js";
import { APP_PASSWORD, APP_USER, Cluster, connectVia, one, startProxy, withTimeout } from "./harness.js";
import { RawClient } from "./raw-client.js";

const ROWS = 10_000;
const ROW_BYTES = 10_000; // a 100 MB result

describe("backpressure", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  let direct: mysql.Connection;

  before(async () => {
    cluster = await Cluster.start(1);
    ({ ferry } = await startProxy(cluster));
    direct = await connectVia(cluster.servers[0].port);
  });

  after(async () => {
    await direct?.end().catch(() => undefined);
    await ferry?.close();
    await cluster?.stop();
  });

  /** The server thread running the big statement, if it is still running. */
  const running = async (): Promise<Record<string, unknown> | undefined> =>
    one(direct, "SELECT COMMAND, STATE FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT REPEAT%'");

  it("stops the server's sending while the client does not read, and delivers everything after", async () => {
    const client = await RawClient.connect(ferry.port, APP_USER, APP_PASSWORD);
    try {
      client.pause();
      const buffersBefore = process.memoryUsage().arrayBuffers;
      client.sendQuery(`SELECT REPEAT('x', ${ROW_BYTES}) AS r FROM app.seq_1_to_${ROWS}`);
      await new Promise((r) => setTimeout(r, 1500));
      // Without backpressure the server would have sent all 100 MB into Ferry by now and be done;
      // with it, the statement still runs, blocked on a full socket.
      const thread = await running();
      assert.equal(thread?.COMMAND, "Query", "the statement is still running on the server");
      const held = process.memoryUsage().arrayBuffers - buffersBefore;
      assert.ok(held < 30_000_000, `Ferry holds ${held} bytes of buffers for a client that reads nothing`);
      client.resume();
      const r = await withTimeout(client.readTextResult(), 30_000, "reading the result");
      assert.equal(r.rows, ROWS);
      assert.equal(r.rowBytes, ROWS * (ROW_BYTES + 3)); // each row: a 3-byte length prefix, then the value
      client.sendQuery("SELECT 1");
      assert.equal((await client.readTextResult()).rows, 1);
    } finally {
      client.close();
    }
  });

  for (const [kind, opts] of [["TLS", { ssl: { rejectUnauthorized: false } }], ["compressing", { compress: true }]] as const) it(`holds a large result for a ${kind} client that pauses, then delivers it whole`, async () => {
    // Many small rows: chunk boundaries fall inside packet headers, where Ferry writes a held
    // header and the rest of the chunk back to back. Both kinds go through a stream that may keep
    // chunks queued, so the backend's read buffer must not be reused under them.
    const tlsClient = await connectVia(ferry.port, opts);
    try {
      const core = (tlsClient as unknown as { connection: { stream: { encrypted?: boolean }; query(sql: string): { stream(): Readable } } }).connection;
      if (kind === "TLS") assert.equal(core.stream.encrypted, true, "the client connection uses TLS");
      const rows = 200_000, width = 100;
      const stream = core.query(`SELECT seq, REPEAT('y', ${width}) AS r FROM app.seq_1_to_${rows}`).stream();
      let n = 0, bytes = 0, sum = 0;
      const done = new Promise<void>((resolve, reject) => {
        stream.on("data", (row: { seq: number; r: string }) => {
          n++;
          sum += row.seq;
          bytes += row.r.length;
          if (n === 1) {
            // Stop reading long enough for every socket buffer on the way to fill.
            stream.pause();
            setTimeout(() => stream.resume(), 800);
          }
        });
        stream.on("end", resolve);
        stream.on("error", reject);
      });
      await withTimeout(done, 60_000, `reading the result (${kind})`);
      assert.equal(n, rows);
      assert.equal(bytes, rows * width);
      assert.equal(sum, (rows * (rows + 1)) / 2);
      assert.equal((await one(tlsClient, "SELECT 2 AS two")).two, 2);
    } finally {
      await tlsClient.end().catch(() => undefined);
    }
  });
});
