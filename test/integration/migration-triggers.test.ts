// What happens around moves: backend loss in and out of statements, failed moves, hard removal,
// parameter types on a new backend, graceful shutdown.

import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import * as mariadb from "mariadb";
import type mysql from "mysql2/promise";
import type { FerryServer } from "../../src/server.js";
import { MARIADB_CLIENT_STMT_BULK_OPERATIONS } from "../../src/protocol/constants.js";
import { RawClient } from "./raw-client.js";
import { APP_PASSWORD, APP_USER, Cluster, connectVia, one, portOf, proxyConfig, startProxy, waitFor, withTimeout, type LogSink } from "./harness.js";

const EXTRA = "drain_grace_ms = 500\nreconnect_timeout_ms = 10000\nrebalance_ratio = 0";

describe("migration triggers and safety", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  let logs: LogSink;

  before(async () => {
    cluster = await Cluster.start(2);
    for (const s of cluster.servers) await s.sql("CREATE TABLE app.t (id INT PRIMARY KEY, v INT); INSERT INTO app.t VALUES (1, 1);");
    ({ ferry, logs } = await startProxy(cluster, EXTRA));
  });

  after(async () => {
    await ferry?.close();
    await cluster?.stop();
  });

  beforeEach(async () => {
    for (const s of cluster.servers) if (s.pid < 0 || !(await s.sql("SELECT 1").catch(() => false))) await s.start();
    ferry.reload(proxyConfig(cluster, EXTRA));
  });

  const serverAt = (port: number) => cluster.servers.find((s) => s.port === port)!;

  /** Sets the server on `port` OFFLINE_SOFT and waits for an idle session there to move off it. */
  const moveOffServer = async (port: number): Promise<void> => {
    const moved = ferry.moveCounts().moved;
    ferry.reload(proxyConfig(cluster, EXTRA, undefined, { [port]: "OFFLINE_SOFT" }));
    assert.ok(await waitFor(() => ferry.moveCounts().moved > moved, 3000), "the session moved");
  };

  /** Runs `statement` on a session holding @keep, crashes its server 300 ms in; the session must go on elsewhere. */
  const crashDuring = async (statement: (c: mysql.Connection) => Promise<unknown>, check: (outcome: PromiseSettledResult<unknown>, port: number) => void): Promise<void> => {
    const c = await connectVia(ferry.port);
    await c.query("SET @keep = 'kept'");
    const port = await portOf(c);
    const running = Promise.allSettled([statement(c)]);
    await new Promise((r) => setTimeout(r, 300));
    await serverAt(port).crash();
    check((await withTimeout(running, 15_000, "the statement's outcome"))[0], port);
    const r = await one(c, "SELECT @keep AS k, @@port AS p");
    assert.equal(r.k, "kept");
    assert.notEqual(Number(r.p), port);
    await c.end();
  };
  const lostStatement = (outcome: PromiseSettledResult<unknown>): void => {
    assert.equal(outcome.status, "rejected");
    const e = (outcome as PromiseRejectedResult).reason as mysql.QueryError;
    assert.equal(e.errno, 2013, e.message);
    assert.match(e.message, /^ferry: lost connection to backend .* during the statement; the session continues/);
  };

  it("a write whose backend is lost before it answers gets 2013 (it may have committed); the session goes on elsewhere", async () => {
    await crashDuring((c) => c.query("UPDATE app.t SET v = v + 0 * SLEEP(30) WHERE id = 1"), lostStatement);
    assert.ok(!logs.lines.some((l) => l.includes("running it again")), "the write was not run again");
  });

  it("with read_retries = 0 a read whose backend is lost gets 2013 too", async () => {
    ferry.reload(proxyConfig(cluster, `${EXTRA}\nread_retries = 0`));
    await crashDuring((c) => c.query("SELECT SLEEP(30)"), lostStatement);
  });

  it("a read whose backend is lost before it answers runs again on another server, with the session's state: the client sees no error", async () => {
    const retried = logs.lines.filter((l) => l.includes("running it again")).length;
    await crashDuring((c) => one(c, "SELECT SLEEP(1) AS s, @keep AS k, @@port AS p"), (outcome, port) => {
      assert.equal(outcome.status, "fulfilled", outcome.status === "rejected" ? String(outcome.reason) : "");
      const row = (outcome as PromiseFulfilledResult<Record<string, unknown>>).value;
      assert.equal(row.k, "kept");
      assert.notEqual(Number(row.p), port, "answered by the other server");
    });
    assert.equal(logs.lines.filter((l) => l.includes("running it again")).length, retried + 1);
  });

  it("a prepared read runs again the same way (the statement prepared on the new server first)", async () => {
    await crashDuring((c) => c.execute("SELECT SLEEP(?) AS s, @keep AS k, @@port AS p", [1]), (outcome, port) => {
      assert.equal(outcome.status, "fulfilled", outcome.status === "rejected" ? String(outcome.reason) : "");
      const [rows] = (outcome as PromiseFulfilledResult<[Record<string, unknown>[]]>).value;
      assert.equal(rows[0].k, "kept");
      assert.notEqual(Number(rows[0].p), port, "answered by the other server");
    });
  });

  it("a backend lost inside a transaction ends the client connection with an error, as a direct connection would", async () => {
    const c = await connectVia(ferry.port);
    await c.query("BEGIN");
    await c.query("UPDATE app.t SET v = v + 1 WHERE id = 1");
    const port = await portOf(c);
    await serverAt(port).crash();
    await assert.rejects(c.query("COMMIT"));
    assert.ok(await waitFor(() => logs.lines.some((l) => l.includes("backend lost while the session was pinned")), 2000));
    c.destroy();
    await serverAt(port).start();
  });

  it("a move that cannot complete leaves the session where it was, retried with backoff", async () => {
    const c = await connectVia(ferry.port);
    const port = await portOf(c);
    const other = cluster.servers.find((s) => s.port !== port)!;
    await other.stop();
    const failed = ferry.moveCounts().failed;
    ferry.reload(proxyConfig(cluster, EXTRA, undefined, { [port]: "OFFLINE_SOFT" }));
    assert.ok(await waitFor(() => ferry.moveCounts().failed >= failed + 2, 3000), "moves were attempted and failed");
    assert.equal(await portOf(c), port, "still served by its server");
    const moved = ferry.moveCounts().moved;
    await other.start();
    assert.ok(await waitFor(() => ferry.moveCounts().moved > moved, 8000), "moved once the target came back");
    assert.equal(await portOf(c), other.port);
    assert.ok(logs.lines.some((l) => l.includes('"result":"failed"') && l.includes('"reason":"drain"')));
    await c.end();
  });

  it("an idle session whose backend is lost with no server to take it: its next command waits for a server, up to reconnect_timeout_ms, then gets 2013", async () => {
    const extra = "drain_grace_ms = 500\nreconnect_timeout_ms = 6000\nrebalance_ratio = 0";
    ferry.reload(proxyConfig(cluster, extra));
    const [a, b] = [await connectVia(ferry.port), await connectVia(ferry.port)];
    await a.query("SET @keep = 'a'");
    await b.query("SET @keep = 'b'");
    // Ferry reads a user variable back after the SET's answer; the next command waits for that, so
    // the crash below finds both sessions idle and movable.
    await Promise.all([one(a, "SELECT 1"), one(b, "SELECT 1")]);
    for (const s of cluster.servers) await s.crash();
    await new Promise((r) => setTimeout(r, 700)); // the sessions' moves fail and back off
    const pending = one(a, "SELECT @keep AS k, @@port AS p");
    await new Promise((r) => setTimeout(r, 300));
    const back = cluster.servers[0];
    await back.start();
    const r = await withTimeout(pending, 15_000, "the waiting query once a server is back");
    assert.deepEqual([r.k, Number(r.p)], ["a", back.port], "answered by the server that came back, with the session's state");
    assert.ok(await waitFor(async () => (await back.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'")).trim() === "2", 8000), "the idle session moved too");
    await back.crash();
    const t0 = Date.now();
    await withTimeout(assert.rejects(b.query("SELECT @keep"), (e: mysql.QueryError) =>
      e.errno === 2013 && /^ferry: lost connection to backend .* no other server took the session within 6000 ms/.test(e.message)), 15_000, "the query with no server to run on");
    const waited = Date.now() - t0;
    assert.ok(waited >= 5000 && waited < 12_000, `refused after about reconnect_timeout_ms (${waited} ms)`);
    a.destroy();
    b.destroy();
  });

  it("a session closed while its move is still logging in leaves no connection behind on the target", async () => {
    ferry.reload(proxyConfig(cluster, "drain_grace_ms = 500\nreconnect_timeout_ms = 800\nbackend_connect_timeout_ms = 10000\nrebalance_ratio = 0"));
    const c = await connectVia(ferry.port);
    const port = await portOf(c);
    const target = cluster.servers.find((s) => s.port !== port)!;
    const appConnections = async () => (await target.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'")).trim();
    assert.equal(await appConnections(), "0");
    process.kill(target.pid, "SIGSTOP"); // accepts connections (the kernel does) but answers nothing
    try {
      await serverAt(port).crash();
      await new Promise((r) => setTimeout(r, 200)); // the move is now waiting for the target's greeting
      await assert.rejects(c.query("SELECT 1"), (e: mysql.QueryError) => e.errno === 2013, "the reconnect deadline ends the session");
    } finally {
      process.kill(target.pid, "SIGCONT");
    }
    await new Promise((r) => setTimeout(r, 1000)); // the login completes after the session is gone
    assert.ok(await waitFor(async () => (await appConnections()) === "0", 3000), `the late connection was closed (${await appConnections()} left)`);
    c.destroy();
  });

  it("OFFLINE_HARD closes sessions still pinned after the grace period; idle ones move", async () => {
    const pinned = await connectVia(ferry.port);
    const port = await portOf(pinned);
    ferry.reload(proxyConfig(cluster, EXTRA, undefined, { [cluster.servers.find((s) => s.port !== port)!.port]: "OFFLINE_SOFT" }));
    const idle = await connectVia(ferry.port);
    assert.equal(await portOf(idle), port);
    await pinned.query("BEGIN");
    await pinned.query("SELECT * FROM app.t FOR UPDATE");
    ferry.reload(proxyConfig(cluster, EXTRA, undefined, { [port]: "OFFLINE_HARD" }));
    assert.ok(await waitFor(async () => (await portOf(idle)) !== port, 3000), "the idle session moved");
    await new Promise((r) => setTimeout(r, 800));
    await assert.rejects(pinned.query("COMMIT"), "the pinned session was closed after the grace period");
    await idle.end();
    pinned.destroy();
  });

  it("a server brought back before the grace period ends keeps its pinned sessions", async () => {
    const pinned = await connectVia(ferry.port);
    await pinned.query("BEGIN");
    await pinned.query("SELECT * FROM app.t FOR UPDATE");
    const port = await portOf(pinned);
    ferry.reload(proxyConfig(cluster, EXTRA, undefined, { [port]: "OFFLINE_HARD" }));
    ferry.reload(proxyConfig(cluster, EXTRA)); // back before drain_grace_ms (500 ms)
    await new Promise((r) => setTimeout(r, 900));
    await pinned.query("COMMIT");
    assert.equal(await portOf(pinned), port);
    await pinned.end();
  });

  it("re-sends parameter types on the first execute on a new backend (mariadb connector)", async () => {
    const conn = await mariadb.createConnection({ host: "127.0.0.1", port: ferry.port, user: APP_USER, password: APP_PASSWORD, database: "app" });
    const stmt = await conn.prepare("SELECT ? + 1 AS x, CONCAT(?, '!') AS y, @@port AS p");
    const first = await stmt.execute([1, "a"]);
    const port = Number(first[0].p);
    await moveOffServer(port);
    const second = await stmt.execute([41, "b"]);
    assert.equal(Number(second[0].x), 42);
    assert.equal(second[0].y, "b!");
    assert.notEqual(Number(second[0].p), port);
    stmt.close();
    await conn.end();
  });

  /**
   * Schema drift: `table` is made with `onA` on one server and `onB` on the other. A MariaDB
   * connector session prepares `sql` (with one parameter, given 1) and runs it, then moves to
   * the other server: its next execute there gets 1615 matching `refusal`, and the statement
   * prepared again runs there. `check`: a row as the server it ran on (A or not) returns it.
   */
  const driftCase = async (table: string, onA: string, onB: string, sql: string, check: (row: Record<string, unknown>, onA: boolean) => void, refusal: (preparedOnA: boolean) => RegExp): Promise<void> => {
    const [a, b] = cluster.servers;
    await a.sql(`CREATE TABLE app.${table} ${onA}`);
    await b.sql(`CREATE TABLE app.${table} ${onB}`);
    const conn = await mariadb.createConnection({ host: "127.0.0.1", port: ferry.port, user: APP_USER, password: APP_PASSWORD, database: "app" });
    try {
      const port = Number((await conn.query("SELECT @@port AS p"))[0].p);
      const stmt = await conn.prepare(sql);
      check((await stmt.execute([1]))[0], port === a.port);
      await moveOffServer(port);
      await assert.rejects(stmt.execute([1]), (e: mariadb.SqlError) => {
        assert.equal(e.errno, 1615, e.message);
        assert.match(e.message, refusal(port === a.port));
        return true;
      });
      stmt.close();
      // prepared again (other text: the connector caches statements by text) on the server it runs on now
      const again = await conn.prepare(`${sql} /* again */`);
      check((await again.execute([1]))[0], port !== a.port);
      again.close();
    } finally {
      await conn.end();
      for (const s of cluster.servers) await s.sql(`DROP TABLE app.${table}`);
    }
  };

  it("a statement whose shape differs on the new backend (schema drift) gets 1615 there, not misread rows", async () => {
    // 2 columns on one server and 3 on the other: a client that prepared the statement on one
    // decodes rows by its columns (with metadata caching, the other server would not even send its own).
    await driftCase("drift", "(id INT PRIMARY KEY, v INT) AS SELECT 1 AS id, 10 AS v", "(id INT PRIMARY KEY, v INT, w INT) AS SELECT 1 AS id, 10 AS v, 100 AS w",
      "SELECT * FROM drift WHERE id = ?",
      (row, onA) => assert.equal(Object.keys(row).length, onA ? 2 : 3),
      () => /statement \d+ has 1 parameters and [23] result columns on 127\.0\.0\.1:\d+, where it runs now, not 1 and [23] as where the client prepared it: the servers' schemas differ; prepare it again/);
  });

  it("a result column of another type on the new backend gets 1615 there: with metadata caching the client would decode by the old type", async () => {
    // The MariaDB connector caches metadata: executes on the new server would come back without
    // their own column definitions.
    await driftCase("drift2", "(id INT PRIMARY KEY, v INT) AS SELECT 1 AS id, 10 AS v", "(id INT PRIMARY KEY, v VARCHAR(10)) AS SELECT 1 AS id, 'ten' AS v",
      "SELECT id, v FROM drift2 WHERE id = ?",
      (row, onA) => assert.equal(row.v, onA ? 10 : "ten"),
      (preparedOnA) => {
        const [was, now] = preparedOnA ? ["LONG", "VAR_STRING"] : ["VAR_STRING", "LONG"];
        return new RegExp(`statement \\d+ has result column 2 \\(\`v\`\\) of type ${now} on 127\\.0\\.0\\.1:\\d+, where it runs now, not ${was} as where the client prepared it: the servers' schemas differ; prepare it again`);
      });
  });

  it("re-sends parameter types a client bound before the move and omits afterwards (libmariadb style)", async () => {
    const c = await RawClient.connect(ferry.port, APP_USER, APP_PASSWORD);
    const id = await c.prepare("SELECT CAST(? AS SIGNED) * 2 + @@port * 0");
    assert.equal(await c.executeBigint(id, 20n, true), 40n);
    assert.equal(await c.executeBigint(id, 21n, false), 42n, "types bound earlier are reused");
    const moved = ferry.moveCounts().moved;
    const probe = await connectVia(ferry.port);
    const ports = cluster.servers.map((s) => s.port);
    ferry.reload(proxyConfig(cluster, EXTRA, undefined, { [ports[0]]: "OFFLINE_SOFT", [ports[1]]: "ONLINE" }));
    await waitFor(() => ferry.moveCounts().moved > moved, 1000);
    ferry.reload(proxyConfig(cluster, EXTRA, undefined, { [ports[1]]: "OFFLINE_SOFT" }));
    assert.ok(await waitFor(() => ferry.moveCounts().moved > moved, 3000), "the raw client's session moved");
    assert.equal(await c.executeBigint(id, 50n, false), 100n, "executes after the move without sending types");
    assert.ok(logs.lines.some((l) => l.includes("re-sending parameter types")));
    c.close();
    await probe.end();
  });

  it("a mariadb connector batch goes to the server as one COM_STMT_BULK_EXECUTE, before and after a move", async () => {
    for (const s of cluster.servers) await s.sql("CREATE TABLE app.bulk (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20), n INT)");
    const conn = await mariadb.createConnection({ host: "127.0.0.1", port: ferry.port, user: APP_USER, password: APP_PASSWORD, database: "app" });
    const executes = async (): Promise<number> => Number((await conn.query("SHOW SESSION STATUS LIKE 'Com_stmt_execute'"))[0].Value);
    const rows = (from: number) => Array.from({ length: 200 }, (_, i) => [`v${from + i}`, from + i]);
    try {
      const port = Number((await conn.query("SELECT @@port AS p"))[0].p);
      let before = await executes();
      const first = <mariadb.UpsertResult>await conn.batch("INSERT INTO bulk (v, n) VALUES (?, ?)", rows(0));
      assert.equal(Number(first.affectedRows), 200);
      assert.equal(await executes() - before, 1, "200 rows in one execution");
      await moveOffServer(port);
      const other = Number((await conn.query("SELECT @@port AS p"))[0].p);
      assert.notEqual(other, port);
      before = await executes();
      const second = <mariadb.UpsertResult>await conn.batch("INSERT INTO bulk (v, n) VALUES (?, ?)", rows(200));
      assert.equal(Number(second.affectedRows), 200);
      assert.equal(await executes() - before, 1, "one execution on the new server too");
      assert.equal(await serverAt(port).sql("SELECT COUNT(*), SUM(n) FROM app.bulk"), "200\t19900\n");
      assert.equal(await serverAt(other).sql("SELECT COUNT(*), MIN(n), MAX(n) FROM app.bulk"), "200\t200\t399\n");
    } finally {
      await conn.end();
    }
  });

  it("a bulk execute without parameter types after a move gets the types Ferry remembered", async () => {
    const c = await RawClient.connect(ferry.port, APP_USER, APP_PASSWORD, 0, MARIADB_CLIENT_STMT_BULK_OPERATIONS);
    try {
      const id = await c.prepare("INSERT INTO app.t (id, v) VALUES (?, 7)");
      assert.equal(await c.bulkBigint(id, [101n, 102n, 103n], true), 3);
      assert.equal(await c.bulkBigint(id, [104n, 105n], false), 2, "the server reuses the types it was sent");
      const port = Number(await c.queryValue("SELECT @@port"));
      await moveOffServer(port);
      assert.notEqual(Number(await c.queryValue("SELECT @@port")), port);
      assert.equal(await c.bulkBigint(id, [201n, 202n], false), 2, "bulk without types on the new server");
      assert.ok(logs.lines.some((l) => l.includes("re-sending parameter types with the statement's first bulk execute")));
      assert.equal(await c.queryValue("SELECT GROUP_CONCAT(id ORDER BY id) FROM app.t WHERE v = 7"), "201,202");
    } finally {
      c.close();
    }
    // A client that did not ask for bulk operations at login gets 1047 and carries on.
    const plain = await RawClient.connect(ferry.port, APP_USER, APP_PASSWORD);
    try {
      const id = await plain.prepare("INSERT INTO app.t (id, v) VALUES (?, 8)");
      await assert.rejects(plain.bulkBigint(id, [301n], true), /^Error: ferry: refused command 0xfa \(COM_STMT_BULK_EXECUTE\): bulk operations were not agreed at login$/);
      assert.equal(await plain.queryValue("SELECT COUNT(*) FROM app.t WHERE v = 8"), "0");
    } finally {
      plain.close();
    }
  });

  it("graceful shutdown lets an open transaction commit, closes idle sessions, and stops accepting", async () => {
    const { ferry: f2 } = await startProxy(cluster, EXTRA);
    const idle = await connectVia(f2.port);
    const busy = await connectVia(f2.port);
    await busy.query("BEGIN");
    await busy.query("UPDATE app.t SET v = 500 WHERE id = 1");
    const done = f2.shutdown(5000);
    await new Promise((r) => setTimeout(r, 200));
    await assert.rejects(connectVia(f2.port), "no new connections");
    await assert.rejects(idle.query("SELECT 1"), "idle session closed");
    await busy.query("COMMIT");
    await done;
    const rows = await Promise.all(cluster.servers.map((s) => s.sql("SELECT v FROM app.t WHERE id = 1")));
    assert.ok(rows.some((r) => r.trim() === "500"), "the transaction committed");
    idle.destroy();
    busy.destroy();
  });
});
