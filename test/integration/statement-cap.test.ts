// proxy.max_prepared_statements: a backend connection holds at most that many prepared statements;
// the least recently used are closed there and prepared again, unseen by the client, when used.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import mysql from "mysql2/promise";
import type { FerryServer } from "../../src/server.js";
import { APP_PASSWORD, APP_USER, Cluster, connectVia, LogSink, one, startProxy } from "./harness.js";

describe("prepared statements per backend connection (proxy.max_prepared_statements)", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  let logs: LogSink;
  let direct: mysql.Connection;

  before(async () => {
    cluster = await Cluster.start(1);
    ({ ferry, logs } = await startProxy(cluster, "max_prepared_statements = 4"));
    direct = await mysql.createConnection({ host: "127.0.0.1", port: cluster.servers[0].port, user: APP_USER, password: APP_PASSWORD });
  });

  after(async () => {
    await direct?.end();
    await ferry?.close();
    await cluster?.stop();
  });

  /** prepared statements the server holds, for all its connections */
  const onServer = async (): Promise<number> => Number((await one(direct, "SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'")).Value);
  const closedIds = (): number[] => logs.lines.map((l) => JSON.parse(l) as { msg: string; statement?: number })
    .filter((l) => l.msg.startsWith("closed the least recently used prepared statement")).map((l) => l.statement!);

  it("closes the least recently used past the cap; every statement still runs, with its own result", async () => {
    const c = await connectVia(ferry.port);
    const stmts: mysql.PreparedStatementInfo[] = [];
    for (let i = 0; i < 10; i++) {
      const p = await c.prepare(`SELECT ? + ${i} AS n`);
      stmts.push(p);
      const [rows] = await p.execute([100]);
      assert.equal(Number((rows as { n: number }[])[0].n), 100 + i);
    }
    assert.equal(await onServer(), 4);
    const ids = (xs: number[]): number[] => xs.map((i) => (stmts[i] as unknown as { statement: { id: number } }).statement.id);
    assert.deepEqual(closedIds(), ids([0, 1, 2, 3, 4, 5]), "closed oldest first");

    // Statement 0 is prepared again on its next execute; 6 is now the least recently used.
    const [r0] = await stmts[0].execute([1]);
    assert.equal(Number((r0 as { n: number }[])[0].n), 1);
    assert.deepEqual(closedIds().slice(6), ids([6]));
    // Using 7 makes 8 the least recently used (closing by age of prepare would pick 7).
    await stmts[7].execute([1]);
    const [r1] = await stmts[1].execute([5]);
    assert.equal(Number((r1 as { n: number }[])[0].n), 6);
    assert.deepEqual(closedIds().slice(7), ids([8]));
    assert.equal(await onServer(), 4);

    // Every statement, in reverse order, twice: right answers, never more than 4 on the server.
    for (let round = 0; round < 2; round++) {
      for (let i = 9; i >= 0; i--) {
        const [rows] = await stmts[i].execute([1000]);
        assert.equal(Number((rows as { n: number }[])[0].n), 1000 + i);
      }
      assert.ok(await onServer() <= 4);
    }
    for (const p of stmts) await p.close();
    assert.equal(Number((await one(c, "SELECT 1 AS one")).one), 1); // closes are answered by nothing: a round trip after them
    assert.equal(await onServer(), 0);
    await c.end();
  });
});
