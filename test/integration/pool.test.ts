// proxy.pool_size: a session that ends between commands leaves its backend connection, reset, to
// the next session whose login would be the same. Checked against the server itself: which
// connection a session gets (CONNECTION_ID()), what the server still holds for it, and which
// connections Ferry keeps open (the server's process list).

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as mariadb from "mariadb";
import mysql from "mysql2/promise";
import type { FerryServer } from "../../src/server.js";
import { APP_PASSWORD, APP_USER, Cluster, connectVia, one, proxyConfig, startProxy, waitFor, withTimeout } from "./harness.js";
import { RawClient } from "./raw-client.js";

const EXTRA = "pool_size = 2\npool_idle_ms = 1500";
const USERS = `[[users]]\nname = "${APP_USER}"\npassword = "${APP_PASSWORD}"\n[[users]]\nname = "other"\npassword = "other"\n` +
  `[[users]]\nname = "capped"\npassword = "capped"\n[[users]]\nname = "plain"\npassword = "plain"\n`;

describe("backend connection pool (proxy.pool_size)", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  let direct: mysql.Connection;

  before(async () => {
    cluster = await Cluster.start(1);
    await cluster.servers[0].sql(`CREATE USER IF NOT EXISTS 'other'@'%' IDENTIFIED BY 'other'; GRANT ALL ON *.* TO 'other'@'%'; CREATE USER 'watcher'@'%' IDENTIFIED BY 'watcher'; GRANT ALL ON *.* TO 'watcher'@'%'; CREATE DATABASE IF NOT EXISTS pool_a; CREATE DATABASE IF NOT EXISTS pool_b; CREATE TABLE pool_a.t (id INT PRIMARY KEY); CREATE ROLE pool_role; GRANT pool_role TO '${APP_USER}'@'%';` +
      // without SUPER: init_connect runs for them; 'capped' with a per-user statement time limit
      "CREATE USER 'plain'@'%' IDENTIFIED BY 'plain'; GRANT ALL ON pool_a.* TO 'plain'@'%'; " +
      "CREATE USER 'capped'@'%' IDENTIFIED BY 'capped' WITH MAX_STATEMENT_TIME 0.5; GRANT ALL ON pool_a.* TO 'capped'@'%';");
    ({ ferry } = await startProxy(cluster, EXTRA, USERS));
    direct = await mysql.createConnection({ host: "127.0.0.1", port: cluster.servers[0].port, user: "watcher", password: "watcher" });
  });

  after(async () => {
    await direct?.end();
    await ferry?.close();
    await cluster?.stop();
  });

  const backendId = async (c: mysql.Connection): Promise<number> => Number((await one(c, "SELECT CONNECTION_ID() AS id")).id);
  /** The server's connections of `user`, as its process list has them. */
  const serverConnections = async (user: string): Promise<number[]> => {
    const [rows] = await direct.query("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ? ORDER BY ID", [user]);
    return (rows as { ID: number }[]).map((r) => Number(r.ID));
  };
  const session = (database = "pool_a", user = APP_USER, password = APP_PASSWORD) => connectVia(ferry.port, { database, user, password });
  /** Ends a session as a client does (COM_QUIT); its connection is back in the pool after the reset's round trip. */
  const quit = async (c: mysql.Connection): Promise<void> => {
    await c.end();
    await new Promise((r) => setTimeout(r, 150));
  };

  it("gives the next identical login the connection of a session that ended, with nothing of that session left on it", async () => {
    const a = await session();
    const id = await backendId(a);
    await a.query("SET @v = 'left', SESSION sql_mode = 'ANSI_QUOTES', SESSION time_zone = '+05:00'");
    await a.query("CREATE TEMPORARY TABLE tmp (x INT)");
    assert.equal(Number((await one(a, "SELECT GET_LOCK('pool_lock', 0) AS l")).l), 1);
    await a.execute("SELECT ? AS p", [1]); // a prepared statement on the server
    await a.query("BEGIN");
    await a.query("INSERT INTO t VALUES (1)"); // never committed
    await a.query("USE pool_a");
    await quit(a);

    const b = await session();
    assert.equal(await backendId(b), id, "the same server connection");
    const r = await one(b, "SELECT @v AS v, @@sql_mode AS m, @@time_zone AS tz, IS_USED_LOCK('pool_lock') AS l, @@in_transaction AS tx, DATABASE() AS d");
    assert.equal(r.v, null);
    assert.doesNotMatch(String(r.m), /ANSI_QUOTES/);
    assert.equal(r.tz, "SYSTEM");
    assert.equal(r.l, null, "the named lock was released");
    assert.equal(Number(r.tx), 0);
    assert.equal(r.d, "pool_a");
    await b.query("CREATE TEMPORARY TABLE tmp (x INT)"); // the old one is gone
    assert.equal(Number((await one(b, "SELECT COUNT(*) AS n FROM t")).n), 0, "the uncommitted row was rolled back");
    // Ferry still tracks the new session's own state on it
    await b.query("SET @w = 7");
    assert.equal(Number((await one(b, "SELECT @w AS w")).w), 7);
    await b.end();
  });

  it("hands a connection only to a login with the same user and database", async () => {
    // whatever the last test left in the pool is reused below or not at all
    const a = await session("pool_a");
    const b = await session("pool_b");
    const ids = new Map([["pool_a", await backendId(a)], ["pool_b", await backendId(b)]]);
    await quit(a);
    await quit(b);
    const other = await session("pool_a", "other", "other");
    assert.ok(![...ids.values()].includes(await backendId(other)), "another user logs in afresh");
    // pool_b's came back last: a login to pool_a must still get pool_a's
    const na = await session("pool_a");
    assert.equal(await backendId(na), ids.get("pool_a"));
    assert.equal((await one(na, "SELECT DATABASE() AS d")).d, "pool_a");
    const nb = await session("pool_b");
    assert.equal(await backendId(nb), ids.get("pool_b"));
    for (const c of [other, nb, na]) await c.end();
  });

  it("keeps at most pool_size connections per server, and closes them when idle past pool_idle_ms", async () => {
    const cs = await Promise.all([0, 1, 2, 3].map(() => session()));
    const ids = await Promise.all(cs.map(backendId));
    for (const c of cs) await c.end();
    assert.ok(await waitFor(async () => (await serverConnections(APP_USER)).length === 2, 3000), "two kept, the others closed");
    const kept = await serverConnections(APP_USER);
    assert.ok(kept.every((id) => ids.includes(id)));
    // unused for pool_idle_ms (1.5 s) plus a sweep: closed
    assert.ok(await waitFor(async () => (await serverConnections(APP_USER)).length === 0, 4000), "idle connections closed");
    const fresh = await session();
    assert.ok(!ids.includes(await backendId(fresh)));
    await fresh.end();
  });

  it("does not keep a connection whose session ended in the middle of a statement", async () => {
    const a = await session();
    const id = await backendId(a);
    a.query("SELECT SLEEP(0.5)").catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100));
    a.destroy();
    assert.ok(await waitFor(async () => !(await serverConnections(APP_USER)).includes(id), 3000), "its connection was closed");
    const b = await session();
    assert.notEqual(await backendId(b), id);
    await b.end();
  });

  it("drops a pooled connection the server closes, and one whose server leaves ONLINE", async () => {
    const a = await session();
    const id = await backendId(a);
    await quit(a);
    await direct.query(`KILL ${id}`);
    const b = await session();
    const idB = await backendId(b);
    assert.notEqual(idB, id);
    assert.equal(Number((await one(b, "SELECT 1 + 1 AS n")).n), 2);
    await quit(b);
    // a drain (OFFLINE_SOFT) closes the idle connections at once
    ferry.reload((proxyConfig(cluster, EXTRA, USERS, { [cluster.servers[0].port]: "OFFLINE_SOFT" })));
    assert.ok(await waitFor(async () => (await serverConnections(APP_USER)).length === 0, 2000), "closed on the drain");
    ferry.reload((proxyConfig(cluster, EXTRA, USERS)));
  });

  it("counts sessions, not idle connections, toward a server's max_connections", async () => {
    ferry.reload(proxyConfig(cluster, EXTRA, USERS, {}, "max_connections = 2"));
    const a = await session("pool_a");
    const b = await session("pool_b");
    const ib = await backendId(b);
    await quit(a);
    await quit(b);
    // two idle connections, of other logins: both places are free for sessions
    const c = await session("pool_a", "other", "other");
    const d = await session("pool_b");
    assert.equal(await backendId(d), ib, "a pooled connection takes a place when a session takes it");
    await assert.rejects(session("pool_a", "other", "other"), (e: mysql.QueryError) => e.errno === 9001 && /max_connections/.test(e.message));
    for (const x of [c, d]) await x.end();
    ferry.reload(proxyConfig(cluster, EXTRA, USERS));
  });

  it("does not keep a connection whose session changed its role (the reset keeps the role)", async () => {
    const a = await session();
    const id = await backendId(a);
    await a.query("SET ROLE pool_role");
    assert.equal((await one(a, "SELECT CURRENT_ROLE() AS r")).r, "pool_role");
    await quit(a);
    // at once, well within pool_idle_ms
    const b = await session();
    assert.equal((await one(b, "SELECT CURRENT_ROLE() AS r")).r, null);
    assert.notEqual(await backendId(b), id);
    // closed on its return, not by the idle sweep (pool_idle_ms is 1.5 s)
    assert.ok(await waitFor(async () => !(await serverConnections(APP_USER)).includes(id), 1000), "its connection was closed");
    await b.end();
  });

  it("does not keep a connection with a prepared XA transaction (the reset leaves it there)", async () => {
    const a = await session();
    const id = await backendId(a);
    await a.query("XA START 'pool_xa'");
    await a.query("INSERT INTO t VALUES (7)");
    await a.query("XA END 'pool_xa'");
    await a.query("XA PREPARE 'pool_xa'");
    await quit(a);
    const b = await session();
    assert.notEqual(await backendId(b), id);
    await b.query("INSERT INTO t VALUES (8)"); // on a connection in that state this fails with 1031
    await b.query("DELETE FROM t WHERE id = 8");
    await b.end();
    await direct.query("XA ROLLBACK 'pool_xa'");
  });

  it("gives an interactive client's connection back its interactive_timeout after the reset", async () => {
    await direct.query("SET GLOBAL interactive_timeout = 1111, GLOBAL wait_timeout = 2222");
    try {
      const interactive = () => connectVia(ferry.port, { database: "pool_a", flags: ["INTERACTIVE"] });
      const a = await interactive();
      const id = await backendId(a);
      assert.equal(Number((await one(a, "SELECT @@wait_timeout AS w")).w), 1111);
      await quit(a);
      const b = await interactive();
      assert.equal(await backendId(b), id);
      assert.equal(Number((await one(b, "SELECT @@wait_timeout AS w")).w), 1111, "as after an interactive login");
      await b.end();
      // a non-interactive login does not get it (a connection reset before the SET GLOBAL has 28800)
      const c = await session();
      assert.notEqual(await backendId(c), id);
      assert.notEqual(Number((await one(c, "SELECT @@wait_timeout AS w")).w), 1111);
      await c.end();
    } finally {
      await direct.query("SET GLOBAL interactive_timeout = 28800, GLOBAL wait_timeout = 28800");
    }
  });

  it("gives a reused connection what the login gave it: the user's MAX_STATEMENT_TIME and the handshake's character set", async () => {
    const login = () => connectVia(ferry.port, { database: "pool_a", user: "capped", password: "capped", charset: "UTF8MB4_UNICODE_CI" });
    const state = "SELECT @@max_statement_time AS t, @@character_set_client AS cs, @@character_set_results AS rs, @@collation_connection AS co";
    const a = await login();
    const id = await backendId(a);
    const fresh = await one(a, state);
    assert.deepEqual(fresh, { t: 0.5, cs: "utf8mb4", rs: "utf8mb4", co: "utf8mb4_unicode_ci" });
    await a.query("SET SESSION max_statement_time = 0, NAMES latin1");
    await quit(a);
    const b = await login();
    assert.equal(await backendId(b), id);
    assert.deepEqual(await one(b, state), fresh, "as after a login (the reset sets the global max_statement_time)");
    await assert.rejects(b.query("SELECT SLEEP(3)"), (e: mysql.QueryError) => e.errno === 1969, "the limit holds");
    await b.end();
  });

  it("keeps no connection of a server with an init_connect (a login runs it, a reset does not)", async () => {
    await direct.query("SET GLOBAL init_connect = 'SET @ic = CONNECTION_ID()'");
    try {
      const login = () => connectVia(ferry.port, { database: "pool_a", user: "plain", password: "plain" });
      const a = await login();
      const id = await backendId(a);
      assert.equal(Number((await one(a, "SELECT @ic AS ic")).ic), id, "init_connect ran at login");
      await quit(a);
      const b = await login();
      const r = await one(b, "SELECT CONNECTION_ID() AS id, @ic AS ic");
      assert.notEqual(Number(r.id), id, "a new connection");
      assert.equal(Number(r.ic), Number(r.id), "with init_connect run by its login");
      await b.end();
    } finally {
      await direct.query("SET GLOBAL init_connect = ''");
    }
  });

  // Connections that end hand their read buffers to the next ones (lib/socket-reader.ts). Sessions
  // come and go at once here, some leaving in the middle of a response, some pipelining, some
  // taking results far over a read buffer while others start: each must get exactly its own bytes.
  it("sessions coming and going at once, pooled connections and reused read buffers among them, each get exactly their own results", async () => {
    const WORKERS = 6;
    const ROUNDS = 12;
    let checked = 0;
    const expectOwn = (got: unknown, tag: string, times: number, what: string): void => {
      const v = String(got);
      assert.ok(v.length === tag.length * times && v === tag.repeat(times), `${what}: a result of ${v.length} bytes that is not its own (${JSON.stringify(v.slice(0, 24))}…)`);
      checked++;
    };
    const worker = async (w: number): Promise<void> => {
      for (let i = 0; i < ROUNDS; i++) {
        const tag = `<w${w}r${i}>`;
        const mode = (w + i) % 4;
        if (mode === 2) {
          // the mariadb connector pipelines: three statements in flight at once
          const c = await mariadb.createConnection({ host: "127.0.0.1", port: ferry.port, user: APP_USER, password: APP_PASSWORD, database: "pool_a" });
          try {
            const rs = await Promise.all([1000, 12000, 3].map((n) => c.query(`SELECT REPEAT('${tag}', ${n}) AS v`)));
            [1000, 12000, 3].forEach((n, k) => expectOwn(rs[k][0].v, tag, n, `pipelined statement ${k} of ${tag}`));
          } finally {
            await c.end();
          }
          continue;
        }
        if (mode === 3) {
          // A client that stops reading for a moment in a 9 MB result: Ferry's writes to it queue,
          // holding the backend's read buffers, while other sessions start and end.
          const raw = await RawClient.connect(ferry.port, APP_USER, APP_PASSWORD);
          try {
            raw.pause();
            raw.sendQuery(`SELECT REPEAT('${tag}', 400) AS v FROM pool_a.seq_1_to_3000`);
            await new Promise((r) => setTimeout(r, 300));
            raw.resume();
            const want = tag.repeat(400);
            let bad = 0;
            // each row: a 3-byte length prefix (0xfc, 2 bytes), then the value
            const r = await raw.readTextResult((p) => { if (p.length !== want.length + 3 || p.toString("latin1", 3) !== want) bad++; });
            assert.equal(r.rows, 3000);
            assert.equal(bad, 0, `${tag}: ${bad} rows of 3000 not its own`);
            checked++;
          } finally {
            raw.close();
          }
          continue;
        }
        const c = await session();
        const times = 9_000;
        const [rows] = await c.query(`SELECT REPEAT('${tag}', ${times}) AS v`);
        expectOwn((rows as { v: string }[])[0].v, tag, times, tag);
        if (mode === 1) {
          // leaves while the next response is still owed
          void c.query(`SELECT REPEAT('${tag}', 50000) AS v`).catch(() => undefined);
          c.destroy();
        } else {
          await c.end();
        }
      }
    };
    // A client given bytes that are not its own may wait forever for the rest of a packet.
    await withTimeout(Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w))), 60_000, "the sessions' statements");
    assert.equal(checked, WORKERS * ROUNDS + (WORKERS * ROUNDS / 4) * 2, "every statement checked");
    // Ferry still answers, and keeps serving sessions after the abrupt goodbyes.
    const c = await session();
    assert.equal(Number((await one(c, "SELECT 7 AS x")).x), 7);
    await c.end();
  });

  it("pool_size = 0 keeps nothing", async () => {
    ferry.reload((proxyConfig(cluster, "pool_size = 0", USERS)));
    const a = await session();
    const id = await backendId(a);
    await a.end();
    assert.ok(await waitFor(async () => !(await serverConnections(APP_USER)).includes(id), 3000));
    ferry.reload((proxyConfig(cluster, EXTRA, USERS)));
  });
});
