// A primary and a replica behind Ferry with the read/write-split rules of the README: where each
// statement runs, what the monitor does when read_only flips or the replica falls behind, and the
// rules' error_msg and timeout on real sessions.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type mysql from "mysql2/promise";
import * as mariadb from "mariadb";
import { parseConfig } from "../../src/config/load.js";
import { startFerry, type FerryServer } from "../../src/server.js";
import { APP_PASSWORD, APP_USER, Cluster, connectVia, LogSink, MONITOR_PASSWORD, MONITOR_USER, one, startReplicated, waitFor, withTimeout } from "./harness.js";

const RW_SPLIT_RULES = `
[[query_rules]]
rule_id = 100
match_digest = "^SELECT .* (FOR UPDATE|LOCK IN SHARE MODE)"
destination_hostgroup = 0
apply = true

[[query_rules]]
rule_id = 200
match_digest = "^SELECT"
destination_hostgroup = 1
apply = true

[[query_rules]]
rule_id = 300
match_pattern = "^DROP\\\\s+DATABASE"
error_msg = "dropping databases through Ferry is not allowed"

[[query_rules]]
rule_id = 50
match_pattern = "SLEEP\\\\(5\\\\)"
timeout = 300
`;

describe("read/write split with a primary and a replica", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  const logs = new LogSink();
  const clients: mysql.Connection[] = [];

  const serverId = async (c: mysql.Connection, sql = "SELECT @@server_id AS id"): Promise<number> => Number((await one(c, sql)).id);
  const hostgroupsOf = (port: number): number[] => ferry.config().servers.filter((s) => s.port === port).map((s) => s.hostgroup).sort();
  const statusOf = (port: number): string[] => ferry.config().servers.filter((s) => s.port === port).map((s) => s.status);

  before(async () => {
    cluster = await startReplicated();
    const [primary, replica] = cluster.servers;
    await primary.sql("CREATE TABLE app.items (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(40))");
    const config = parseConfig(`[proxy]\nlisten = "127.0.0.1:0"\nparked_idle_ms = 1500\n
[monitor]\nuser = "${MONITOR_USER}"\npassword = "${MONITOR_PASSWORD}"\ninterval_ms = 200\ntimeout_ms = 1000\nfailure_threshold = 2\n
[[replication_hostgroups]]\nwriter_hostgroup = 0\nreader_hostgroup = 1\n
[[servers]]\nhost = "127.0.0.1"\nport = ${primary.port}\nhostgroup = 0\n
[[servers]]\nhost = "127.0.0.1"\nport = ${replica.port}\nhostgroup = 1\nmax_replication_lag = 5\n
[[users]]\nname = "${APP_USER}"\npassword = "${APP_PASSWORD}"\ndefault_hostgroup = 0\n
[[users]]\nname = "loose"\npassword = "loose"\ntransaction_persistent = false\nbackend_user = "${APP_USER}"\nbackend_password = "${APP_PASSWORD}"\n${RW_SPLIT_RULES}`, "test");
    ferry = await startFerry(config, { logLevel: "debug", logDestination: logs });
    assert.ok(await waitFor(() => ferry.health().length === 2 && ferry.health().every((h) => h.lastCheck > 0), 5000), "monitor checked both servers");
  });

  after(async () => {
    for (const c of clients) c.destroy(); // a teardown that cannot wait on a stuck session
    await ferry?.close();
    await cluster?.stop();
  });

  async function client(): Promise<mysql.Connection> {
    const c = await connectVia(ferry.port, { multipleStatements: true });
    clients.push(c);
    return c;
  }

  it("sends reads to the replica, writes and locking reads to the primary, and keeps a transaction on one server", async () => {
    assert.deepEqual(hostgroupsOf(cluster.servers[1].port), [1]);
    const c = await client();
    assert.equal(await serverId(c), 2, "a plain SELECT runs on the replica");
    const [res] = await c.query("INSERT INTO items (name) VALUES ('a'), ('b')");
    const insertId = (res as mysql.ResultSetHeader).insertId;
    assert.equal((await cluster.servers[0].sql("SELECT COUNT(*) FROM app.items")).trim(), "2", "the write reached the primary");
    assert.ok(await waitFor(async () => (await cluster.servers[1].sql("SELECT COUNT(*) FROM app.items")).trim() === "2", 5000), "replicated");
    assert.deepEqual((await c.query("SELECT name FROM items ORDER BY id"))[0], [{ name: "a" }, { name: "b" }]);
    assert.equal(await serverId(c, "SELECT @@server_id AS id FROM items WHERE id = 1 FOR UPDATE"), 1, "a locking read runs on the primary");
    assert.equal(await serverId(c, "SELECT @@server_id AS id FROM items WHERE id = 1 LOCK IN SHARE MODE"), 1);
    // state set on one server is there when the session runs on the other
    await c.query("SET @who = 'me', SESSION sql_mode = 'ANSI_QUOTES'");
    const r = await one(c, "SELECT @who AS who, @@session.sql_mode AS mode, LAST_INSERT_ID() AS li, @@server_id AS id");
    assert.deepEqual([r.who, r.mode, Number(r.li), Number(r.id)], ["me", "ANSI_QUOTES", insertId, 2]);
    await c.query("SET SESSION sql_mode = DEFAULT");
    // named locks are taken at home, where every client takes them, and pin the session there
    assert.equal(Number((await one(c, "SELECT GET_LOCK('ferry-test', 1) AS l, @@server_id AS id")).id), 1);
    assert.equal(await serverId(c), 1, "a session holding a named lock stays where the lock is");
    await c.query("SELECT RELEASE_LOCK('ferry-test')");
    assert.equal(await serverId(c), 2);
    // a multi-statement query may write: it runs on the primary
    const [multi] = await c.query("SELECT @@server_id AS id; INSERT INTO items (name) VALUES ('m')");
    assert.equal(Number((multi as [{ id: number }[]])[0][0].id), 1);

    await c.query("USE mysql");
    assert.equal((await one(c, "SELECT DATABASE() AS db, @@server_id AS id")).db, "mysql");
    await c.query("USE app");
    // inside a transaction every statement stays on the server the transaction started on
    await c.query("BEGIN");
    assert.equal(await serverId(c), 1, "a read inside a transaction stays on the primary");
    await c.query("INSERT INTO items (name) VALUES ('c')");
    await c.query("COMMIT");
    assert.equal(await serverId(c), 2, "after COMMIT reads go back to the replica");
    // autocommit off: the session stays home, where its implicit transaction runs
    await c.query("SET autocommit = 0");
    assert.equal(await serverId(c), 1);
    await c.query("COMMIT");
    await c.query("SET autocommit = 1");
  });

  it("routes prepared statements by their text: reads execute on the replica, writes and reads in a transaction on the primary", async () => {
    const c = await client();
    const exec = async (sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> => (await c.execute(sql, params as never))[0] as Record<string, unknown>[];
    assert.equal(Number((await exec("SELECT @@server_id AS id, name FROM items WHERE id = ?", [1]))[0].id), 2);
    await exec("INSERT INTO items (name) VALUES (?)", ["prepared"]);
    assert.equal((await cluster.servers[0].sql("SELECT COUNT(*) FROM app.items WHERE name = 'prepared'")).trim(), "1");
    await c.query("BEGIN");
    // the same statement, inside a transaction: prepared on the primary on first use there
    const inTx = await exec("SELECT @@server_id AS id, name FROM items WHERE id = ?", [2]);
    assert.deepEqual([Number(inTx[0].id), inTx[0].name], [1, "b"]);
    await c.query("COMMIT");
    const after = await exec("SELECT @@server_id AS id, name FROM items WHERE id = ?", [1]);
    assert.deepEqual([Number(after[0].id), after[0].name], [2, "a"]);
    const [primaryStmts, replicaStmts] = await Promise.all(cluster.servers.map(async (s) => Number((await s.sql("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'")).split("\t")[1])));
    assert.ok(primaryStmts >= 2 && replicaStmts >= 1, `statements prepared on both servers: ${primaryStmts} / ${replicaStmts}`);
    c.unprepare("SELECT @@server_id AS id, name FROM items WHERE id = ?");
    await c.query("DO 1");
    const [p2, r2] = await Promise.all(cluster.servers.map(async (s) => Number((await s.sql("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'")).split("\t")[1])));
    assert.deepEqual([primaryStmts - p2, replicaStmts - r2], [1, 1], "closing the statement closed it on both connections");
    // prepared at home (inside a transaction), first executed on the replica, where it cannot be prepared
    await cluster.servers[0].sql("SET SESSION sql_log_bin = 0; CREATE TABLE app.primary_only (n INT); INSERT INTO app.primary_only VALUES (5)");
    await c.query("BEGIN");
    assert.deepEqual(await exec("SELECT n FROM primary_only WHERE n = ?", [5]), [{ n: 5 }]);
    await c.query("COMMIT");
    await assert.rejects(exec("SELECT n FROM primary_only WHERE n = ?", [5]), (e: { errno: number; message: string }) => {
      assert.equal(e.errno, 1146);
      assert.match(e.message, /^ferry: statement \d+ could not be prepared on 127\.0\.0\.1:\d+, where it runs now: Table 'app\.primary_only' doesn't exist/);
      return true;
    });
    assert.equal(await serverId(c), 2, "the session goes on");
  });

  it("transaction_persistent = false: reads inside a transaction follow the rules, the transaction waits on its connection", async () => {
    const c = await connectVia(ferry.port, { user: "loose", password: "loose" });
    clients.push(c);
    await c.query("BEGIN");
    await c.query("INSERT INTO items (name) VALUES ('loose')");
    assert.equal(await serverId(c), 2, "a read inside the transaction goes to the replica");
    assert.equal((await one(c, "SELECT COUNT(*) AS n FROM items WHERE name = 'loose'")).n, 0, "the replica cannot see the uncommitted row");
    await c.query("INSERT INTO items (name) VALUES ('loose2')");
    await c.query("COMMIT");
    assert.equal((await cluster.servers[0].sql("SELECT COUNT(*) FROM app.items WHERE name LIKE 'loose%'")).trim(), "2", "both writes committed together");
  });

  it("replaces a parked or active replica connection that the server closed", async () => {
    const [, replica] = cluster.servers;
    const c = await client();
    await c.query("SET @mark = 7");
    assert.equal(await serverId(c), 2);
    await c.query("DO 1"); // back home: the replica connection is parked
    const killAppConnections = async (): Promise<void> => {
      const ids = (await replica.sql("SELECT id FROM information_schema.PROCESSLIST WHERE user = 'app'")).trim().split("\n").filter(Boolean);
      if (ids.length) await replica.sql(ids.map((id) => `KILL ${id};`).join(" "));
    };
    await killAppConnections();
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual([Number((await one(c, "SELECT @@server_id AS id, @mark AS m")).id), Number((await one(c, "SELECT @mark AS m")).m)], [2, 7], "a parked connection that died is replaced");
    await killAppConnections(); // now the active one
    await new Promise((r) => setTimeout(r, 100));
    const r = await one(c, "SELECT @@server_id AS id, @mark AS m");
    assert.deepEqual([Number(r.m)], [7], "the session survives its active replica connection closing");
    assert.equal(await serverId(c), 2);
  });

  it("keeps order and answers right when a pipelining client interleaves reads and writes (mariadb connector)", async () => {
    const conn = await mariadb.createConnection({ host: "127.0.0.1", port: ferry.port, user: APP_USER, password: APP_PASSWORD, database: "app", pipelining: true });
    try {
      await conn.query("CREATE TABLE IF NOT EXISTS piped (n INT PRIMARY KEY)");
      // 40 commands sent without waiting: each write goes to the primary, each read to the replica
      const sent: Promise<unknown>[] = [];
      for (let i = 0; i < 20; i++) {
        sent.push(conn.query("INSERT INTO piped VALUES (?)", [i]));
        sent.push(conn.query("SELECT @@server_id AS id, ? AS n", [i]));
      }
      const answers = await Promise.all(sent);
      for (let i = 0; i < 20; i++) {
        assert.equal((answers[2 * i] as { affectedRows: number }).affectedRows, 1);
        const row = (answers[2 * i + 1] as { id: number; n: number }[])[0];
        assert.deepEqual([Number(row.id), Number(row.n)], [2, i], `answer ${i} in order, from the replica`);
      }
      const [stmtRow] = await conn.execute("SELECT @@server_id AS id, COUNT(*) AS c FROM piped WHERE n < ?", [100]);
      assert.equal(Number(stmtRow.id), 2);
      assert.equal((await cluster.servers[0].sql("SELECT COUNT(*) FROM app.piped")).trim(), "20");
    } finally {
      await conn.end();
    }
  });

  it("closes a parked connection left unused for parked_idle_ms; the next read opens a new one", async () => {
    const [, replica] = cluster.servers;
    const c = await client();
    await c.query("SET @idle = 1");
    const r = await one(c, "SELECT @@server_id AS id, CONNECTION_ID() AS thread");
    assert.equal(Number(r.id), 2);
    const alive = async (): Promise<boolean> => (await replica.sql(`SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE id = ${Number(r.thread)}`)).trim() === "1";
    assert.equal(await alive(), true);
    await c.query("DO 1"); // home: the replica connection is parked
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(await alive(), true, "still parked before parked_idle_ms");
    assert.ok(await waitFor(async () => !(await alive()), 5000), "the parked replica connection was closed after 1.5 s unused");
    assert.deepEqual([Number((await one(c, "SELECT @@server_id AS id, @idle AS v")).id)], [2]);
    assert.equal(Number((await one(c, "SELECT @idle AS v")).v), 1);
  });

  it("a session's parked replica connection serves the next session once it ends (connection pool)", async () => {
    const c1 = await client();
    const r1 = await one(c1, "SELECT @@server_id AS id, CONNECTION_ID() AS thread");
    assert.equal(Number(r1.id), 2);
    await c1.query("SET @mine = 1");
    await c1.query("DO 1"); // home: the replica connection is parked
    await c1.end();
    await new Promise((res) => setTimeout(res, 150)); // the reset's round trip
    const c2 = await client();
    const r2 = await one(c2, "SELECT @@server_id AS id, CONNECTION_ID() AS thread, @mine AS v");
    assert.deepEqual([Number(r2.id), Number(r2.thread), r2.v], [2, Number(r1.thread), null]);
  });

  it("refuses a statement by rule with 1148, and kills one over the rule's timeout; the session goes on", async () => {
    const c = await client();
    await assert.rejects(c.query("DROP DATABASE app"), (e: { errno: number; sqlState: string; message: string }) => {
      assert.equal(e.errno, 1148);
      assert.equal(e.sqlState, "42000");
      assert.match(e.message, /^ferry: statement refused by query rule 300: dropping databases/);
      return true;
    });
    const t0 = Date.now();
    await assert.rejects(one(c, "SELECT SLEEP(5) AS s"), (e: { errno: number }) => e.errno === 1317); // query execution was interrupted
    assert.ok(Date.now() - t0 < 3000, `the statement was stopped after ${Date.now() - t0} ms`);
    assert.equal(await serverId(c), 2);
    assert.equal((await cluster.servers[0].sql("SHOW DATABASES LIKE 'app'")).trim(), "app");
    // padded past what Ferry assembles (1 MiB), the statement is still matched (on its first 64 KiB);
    // Ferry cannot skip the rest of it, so the refused session ends
    const big = await client();
    await assert.rejects(big.query(`DROP DATABASE app /* ${"x".repeat(2 * 1024 * 1024)} */`), (e: { errno: number }) => e.errno === 1148);
    await assert.rejects(big.query("SELECT 1"));
    assert.equal((await cluster.servers[0].sql("SHOW DATABASES LIKE 'app'")).trim(), "app");
    assert.equal(await serverId(c), 2, "other sessions go on");
  });

  it("shuns a replica whose replication stopped, reads fall back to the primary, and it returns when replication resumes", async () => {
    const [, replica] = cluster.servers;
    const c = await client();
    assert.equal(await serverId(c), 2);
    await replica.sql("STOP SLAVE SQL_THREAD");
    assert.ok(await waitFor(() => statusOf(replica.port).includes("SHUNNED"), 5000), "the replica is shunned");
    const h = ferry.health().find((x) => x.address.endsWith(`:${replica.port}`))!;
    assert.equal(h.lastError, null);
    assert.equal(h.replicationLag, 60, "stopped replication counts as lag_when_null");
    assert.ok(await waitFor(async () => (await serverId(c)) === 1, 3000), "reads fall back to the primary");
    const fresh = await client();
    assert.equal(await serverId(fresh), 1, "a new session's reads go to the primary too");
    await replica.sql("START SLAVE SQL_THREAD");
    assert.ok(await waitFor(() => statusOf(replica.port).every((s) => s === "ONLINE"), 5000), "the replica is back");
    assert.equal(await serverId(fresh), 2);
  });

  it("shuns a replica that stops answering after failure_threshold rounds; reads fall back; it returns after recovery_threshold healthy rounds", async () => {
    const [, replica] = cluster.servers;
    const c = await client();
    assert.equal(await serverId(c), 2);
    await c.query("DO 1"); // home, so the next read is a routing decision
    await replica.stop();
    assert.ok(await waitFor(() => statusOf(replica.port).includes("SHUNNED"), 5000), "the stopped replica is shunned");
    const h = ferry.health().find((x) => x.address.endsWith(`:${replica.port}`))!;
    assert.ok(h.consecutiveFailures >= 2 && h.lastError !== null, JSON.stringify(h));
    assert.match(ferry.config().servers.find((x) => x.port === replica.port)!.statusReason!, /^unreachable: /);
    assert.equal(await serverId(c), 1, "reads fall back to the primary");
    await replica.start();
    assert.ok(await waitFor(() => statusOf(replica.port).every((x) => x === "ONLINE"), 10_000), "back ONLINE");
    assert.ok(logs.lines.some((l) => l.includes("monitor: server status changed") && l.includes("unreachable")));
    assert.equal(await serverId(c), 2);
  });

  it("a monitor user without the replication privilege: the refused check is reported, the server is not shunned", async () => {
    const [primary, replica] = cluster.servers;
    await primary.sql("CREATE USER 'weakmon'@'%' IDENTIFIED BY 'weak'");
    assert.ok(await waitFor(async () => (await replica.sql("SELECT COUNT(*) FROM mysql.user WHERE user = 'weakmon'")).trim() === "1", 5000));
    const weak = await startFerry(parseConfig(`[proxy]\nlisten = "127.0.0.1:0"\n[monitor]\nuser = "weakmon"\npassword = "weak"\ninterval_ms = 100\nfailure_threshold = 1\n
[[servers]]\nhost = "127.0.0.1"\nport = ${replica.port}\nhostgroup = 1\nmax_replication_lag = 5\n[[users]]\nname = "${APP_USER}"\npassword = "${APP_PASSWORD}"\n`, "test"), { logLevel: "silent" });
    try {
      assert.ok(await waitFor(() => (weak.health()[0]?.lastError ?? "").startsWith("check refused: 1227"), 5000), JSON.stringify(weak.health()));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(weak.config().servers[0].status, "ONLINE");
      assert.equal(weak.health()[0].replicationLag, null);
    } finally {
      await weak.close();
    }
  });

  it("moves a server between the writer and reader hostgroups when its read_only flips", async () => {
    const [primary, replica] = cluster.servers;
    await replica.sql("SET GLOBAL read_only = OFF");
    assert.ok(await waitFor(() => hostgroupsOf(replica.port).join() === "0", 3000), `writable replica in the writer hostgroup (${hostgroupsOf(replica.port)})`);
    await replica.sql("SET GLOBAL read_only = ON");
    await primary.sql("SET GLOBAL read_only = ON");
    assert.ok(await waitFor(() => hostgroupsOf(replica.port).join() === "1" && hostgroupsOf(primary.port).join() === "1", 3000), "both read-only: both readers");
    await primary.sql("SET GLOBAL read_only = OFF");
    assert.ok(await waitFor(() => hostgroupsOf(primary.port).join() === "0", 3000), "the primary is the writer again");
    const c = await client();
    assert.equal(await serverId(c, "SELECT @@server_id AS id FROM DUAL FOR UPDATE"), 1);
    assert.ok(logs.lines.some((l) => l.includes("runtime servers changed")));
  });

  // Last: it leaves the replica promoted and the old primary stopped.
  it("failover: the primary stops, the replica is promoted, idle sessions carry on there with their state", async () => {
    const [primary, replica] = cluster.servers;
    const sessions = await Promise.all([1, 2, 3].map(async (i) => {
      const c = await withTimeout(client(), 15_000, `client ${i}: connecting`);
      await withTimeout(c.query(`SET @who = 'client ${i}'`), 15_000, `client ${i}: SET`);
      await withTimeout(c.query("INSERT INTO items (name) VALUES ('before failover')"), 15_000, `client ${i}: INSERT before failover`);
      return c;
    }));
    assert.ok(await waitFor(async () => (await replica.sql("SELECT COUNT(*) FROM app.items WHERE name = 'before failover'")).trim() === "3", 5000));
    await withTimeout(primary.stop(), 30_000, "stopping the primary");
    assert.ok(await waitFor(() => statusOf(primary.port).includes("SHUNNED"), 5000), "the stopped primary is shunned");
    await withTimeout(replica.sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF"), 30_000, "promoting the replica");
    assert.ok(await waitFor(() => hostgroupsOf(replica.port).join() === "0", 5000), "the promoted replica is the writer");
    for (const [i, c] of sessions.entries()) {
      const r = await withTimeout(one(c, "SELECT @who AS who, @@server_id AS id"), 20_000, `client ${i + 1}: first query after failover`);
      assert.deepEqual([r.who, Number(r.id)], [`client ${i + 1}`, 2]);
      await withTimeout(c.query("INSERT INTO items (name) VALUES ('after failover')"), 20_000, `client ${i + 1}: INSERT after failover`);
    }
    assert.equal((await replica.sql("SELECT COUNT(*) FROM app.items WHERE name = 'after failover'")).trim(), "3");
    assert.ok(logs.lines.some((l) => l.includes('"reason":"backend-lost"') && l.includes('"result":"moved"')), "sessions reconnected");
  });
});
