// Session migration against real servers: state survives a move, pins hold a session until they
// end, crashes and rolling restarts are invisible to idle clients.

import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import * as mariadb from "mariadb";
import type mysql from "mysql2/promise";
import type { FerryServer } from "../../src/server.js";
import { APP_PASSWORD, APP_USER, Cluster, connectVia, one, portOf, proxyConfig, startProxy, waitFor, type LogSink } from "./harness.js";
import { prng } from "./prng.js";

const BASE = "drain_grace_ms = 60000\nreconnect_timeout_ms = 15000\nrebalance_ratio = 0";

describe("session migration", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  let logs: LogSink;

  before(async () => {
    cluster = await Cluster.start(3);
    for (const s of cluster.servers) {
      await s.sql("CREATE DATABASE app2; CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT); INSERT INTO app.t (v) VALUES (1), (2), (3);");
      await s.sql("CREATE PROCEDURE app.make_temp() CREATE TEMPORARY TABLE app.rt (a INT); CREATE PROCEDURE app.set_var() SET @inproc = 5; " +
        "CREATE FUNCTION app.take_lock() RETURNS INT RETURN GET_LOCK('fn-lock', 1); " +
        "CREATE TABLE app.audited (id INT); CREATE TRIGGER app.audit_temp AFTER INSERT ON app.audited FOR EACH ROW CREATE TEMPORARY TABLE IF NOT EXISTS app.trigger_tmp (a INT);");
    }
    for (const s of cluster.servers) {
      const d = await connectVia(s.port);
      await d.query("CREATE FUNCTION app.temp_fn() RETURNS INT BEGIN CREATE TEMPORARY TABLE IF NOT EXISTS app.ft (a INT); RETURN 1; END");
      await d.query("CREATE FUNCTION app.var_fn() RETURNS INT BEGIN SET @infn = 7; RETURN 1; END");
      await d.end();
    }
    ({ ferry, logs } = await startProxy(cluster, BASE));
  });

  after(async () => {
    await ferry?.close();
    await cluster?.stop();
  });

  beforeEach(() => ferry.reload(proxyConfig(cluster, BASE)));

  /** Drains the server on `port` (with settings `extra` and `users`). */
  async function drainServerOf(port: number, extra = BASE, users?: string): Promise<void> {
    ferry.reload(proxyConfig(cluster, extra, users, { [port]: "OFFLINE_SOFT" }));
  }

  /** Drains the server the session is on and waits for it to move; returns that server's port. */
  async function moveAway(c: mysql.Connection, extra = BASE, users?: string): Promise<number> {
    const port = await portOf(c);
    const moved = ferry.moveCounts().moved;
    await drainServerOf(port, extra, users);
    assert.ok(await waitFor(() => ferry.moveCounts().moved > moved, 5000), "the session moved");
    return port;
  }

  it("drain moves an idle session with schema, variables, user variables, prepared statements and LAST_INSERT_ID intact", async () => {
    const c = await connectVia(ferry.port, { multipleStatements: true, supportBigNumbers: true, bigNumberStrings: true });
    await c.query("USE app2");
    await c.query("SET SESSION sql_mode = 'ANSI_QUOTES,NO_ENGINE_SUBSTITUTION', time_zone = '+03:00'");
    await c.query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
    await c.query("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci");
    await c.query("SET @i = 42, @d = 1.50, @f = 2.5e0, @s = 'h\u00e9llo \\\\ ''q''', @n = NULL, @b = X'00ff'");
    assert.equal((await one(c, "SELECT ? + 1 AS x", [1])).x, 2);
    await c.query("PREPARE ps FROM 'SELECT ? * 2 AS y'");
    const [ins] = await c.query("INSERT INTO app.t (v) VALUES (100)");
    const insertId = (ins as mysql.ResultSetHeader).insertId;
    const before = await one(c, "SELECT @@port AS p, CONNECTION_ID() AS id");
    const moved = ferry.moveCounts().moved;
    await drainServerOf(Number(before.p));
    assert.ok(await waitFor(() => ferry.moveCounts().moved > moved, 5000), "the session moved");
    const afterMove = await one(c, "SELECT @@port AS p, CONNECTION_ID() AS id");
    assert.notEqual(afterMove.p, before.p, "served by another server");
    assert.notEqual(afterMove.id, before.id);
    const st = await one(c, "SELECT DATABASE() AS db, @@sql_mode AS m, @@time_zone AS tz, @@tx_isolation AS iso, @@collation_connection AS coll, @@character_set_client AS cs");
    assert.deepEqual(st, { db: "app2", m: "ANSI_QUOTES,NO_ENGINE_SUBSTITUTION", tz: "+03:00", iso: "READ-COMMITTED", coll: "utf8mb4_unicode_ci", cs: "utf8mb4" });
    const uv = await one(c, "SELECT @i AS i, @d AS d, @f AS f, @s AS s, @n AS n, HEX(@b) AS b");
    assert.deepEqual(uv, { i: "42", d: "1.50", f: 2.5, s: "h\u00e9llo \\ 'q'", n: null, b: "00FF" });
    const [types] = await c.query("SELECT VARIABLE_NAME AS n, VARIABLE_TYPE AS t FROM information_schema.USER_VARIABLES WHERE VARIABLE_NAME IN ('i','d','f','s') ORDER BY 1");
    assert.deepEqual(types, [{ n: "d", t: "DECIMAL" }, { n: "f", t: "DOUBLE" }, { n: "i", t: "INT" }, { n: "s", t: "VARCHAR" }]);
    assert.equal((await one(c, "SELECT ? + 1 AS x", [41])).x, 42, "the old prepared statement id still works");
    assert.equal(Number((await one(c, "EXECUTE ps USING @i")).y), 84);
    assert.equal(Number((await one(c, "SELECT LAST_INSERT_ID() AS l")).l), insertId);
    await c.end();
  });

  it("the role SET ROLE made current survives a move, its privileges with it", async () => {
    for (const s of cluster.servers) {
      await s.sql("CREATE USER 'roleuser'@'%' IDENTIFIED BY 'roleuser'; CREATE ROLE `Reader`; GRANT SELECT ON app.* TO `Reader`; GRANT `Reader` TO 'roleuser'@'%';");
    }
    const users = `[[users]]\nname = "roleuser"\npassword = "roleuser"\n`;
    const extra = BASE;
    ferry.reload(proxyConfig(cluster, extra, users));
    const c = await connectVia(ferry.port, { user: "roleuser", password: "roleuser", database: undefined });
    await assert.rejects(c.query("SELECT COUNT(*) FROM app.t"), (e: mysql.QueryError) => e.errno === 1142, "no privilege without the role");
    await c.query("SET ROLE Reader");
    const port = await moveAway(c, extra, users);
    const r = await one(c, "SELECT CURRENT_ROLE() AS r, @@port AS p");
    assert.equal(r.r, "Reader");
    assert.notEqual(Number(r.p), port);
    assert.ok(Number((await one(c, "SELECT COUNT(*) AS n FROM app.t")).n) >= 3);
    await c.end();
  });

  // Pools that reset what they take back (the mariadb connector's resetAfterUse) send
  // COM_RESET_CONNECTION; a client may also set the tracking variables itself. Either way Ferry's tracking of the session's variables stops.
  const trackingOff: [string, (c: mariadb.Connection) => Promise<unknown>, string][] = [
    ["COM_RESET_CONNECTION", (c) => c.reset(), "SYSTEM"],
    ["SET session_track_system_variables = ''", (c) => c.query("SET SESSION session_track_system_variables = '', session_track_schema = OFF"), "+02:00"],
  ];
  for (const [what, switchOff, timeZone] of trackingOff) {
    it(`what a session sets after its client's ${what} (tracking off) survives a move`, async () => {
      const c = await mariadb.createConnection({ host: "127.0.0.1", port: ferry.port, user: APP_USER, password: APP_PASSWORD });
      try {
        await c.query("SET @kept = 1, SESSION time_zone = '+02:00'");
        await switchOff(c);
        await c.query("SET SESSION sql_mode = 'ANSI_QUOTES', SESSION div_precision_increment = 9");
        await c.query("USE app2");
        const state = "SELECT @@port AS p, @@sql_mode AS m, @@div_precision_increment AS d, @@time_zone AS tz, DATABASE() AS db";
        const [before] = await c.query(state);
        assert.equal(before.tz, timeZone);
        const moved = ferry.moveCounts().moved;
        await drainServerOf(Number(before.p));
        assert.ok(await waitFor(() => ferry.moveCounts().moved > moved, 5000), "the session moved");
        const [after] = await c.query(state);
        assert.notEqual(after.p, before.p);
        assert.deepEqual({ ...after, p: 0 }, { ...before, p: 0 });
        assert.equal(after.m, "ANSI_QUOTES");
      } finally {
        await c.end();
      }
    });
  }

  it("autocommit=0 and a read-only transaction mode survive a move", async () => {
    const c = await connectVia(ferry.port);
    await c.query("SET autocommit = 0");
    await c.query("SET SESSION TRANSACTION READ ONLY");
    await c.query("COMMIT");
    const port = await portOf(c);
    await c.query("COMMIT"); // reading @@port opened a transaction (autocommit=0): end it so the session can move
    const moved = ferry.moveCounts().moved;
    await drainServerOf(port);
    assert.ok(await waitFor(() => ferry.moveCounts().moved > moved, 5000), "the session moved");
    const r = await one(c, "SELECT @@autocommit AS ac, @@tx_read_only AS ro, @@port AS p");
    assert.deepEqual([Number(r.ac), Number(r.ro)], [0, 1]);
    assert.notEqual(Number(r.p), port);
    await assert.rejects(c.query("INSERT INTO app.t (v) VALUES (1)"), (e: mysql.QueryError) => e.errno === 1792);
    await c.query("ROLLBACK");
    await c.end();
  });

  const pins: [string, string, string][] = [
    ["an open transaction", "BEGIN; SELECT 1", "COMMIT"],
    ["a temporary table", "CREATE TEMPORARY TABLE tmp_pin (a INT)", "DROP TEMPORARY TABLE tmp_pin"],
    ["a named lock", "SELECT GET_LOCK('pin-lock', 1)", "SELECT RELEASE_LOCK('pin-lock')"],
    ["LOCK TABLES", "LOCK TABLES app.t READ", "UNLOCK TABLES"],
    ["an XA transaction", "XA START 'x1'", "XA END 'x1'; XA ROLLBACK 'x1'"],
    ["a named lock whose name Ferry cannot read", "SELECT GET_LOCK(CONCAT('pin-', 'lock'), 1)", "SELECT RELEASE_ALL_LOCKS()"],
    ["the next transaction's characteristics (SET TRANSACTION)", "SET TRANSACTION READ ONLY", "START TRANSACTION; COMMIT"],
    ["an open HANDLER", "HANDLER app.t OPEN AS h; HANDLER h READ FIRST", "HANDLER h CLOSE"],
    ["a temporary sequence", "CREATE TEMPORARY SEQUENCE app.tseq", "DROP TEMPORARY SEQUENCE app.tseq"],
  ];
  for (const [what, pin, unpin] of pins) {
    it(`a session pinned by ${what} stays until it ends, then moves`, async () => {
      const c = await connectVia(ferry.port, { multipleStatements: true });
      await c.query(pin);
      const port = await portOf(c);
      const moved = ferry.moveCounts().moved;
      await drainServerOf(port);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(await portOf(c), port, "still on the drained server while pinned");
      assert.equal(ferry.moveCounts().moved, moved);
      await c.query(unpin);
      assert.ok(await waitFor(() => ferry.moveCounts().moved > moved, 5000), "moved once the pin ended");
      assert.notEqual(await portOf(c), port);
      await c.end();
    });
  }

  // A stored routine may leave temporary tables or named locks Ferry cannot see (MariaDB reports
  // a state change for every routine that runs): the session stays until its server session
  // starts afresh.
  for (const [what, sql, check, expected] of [
    ["a stored procedure", "CALL app.make_temp()", "SELECT COUNT(*) AS n FROM app.rt", 0],
    ["a stored function", "SELECT app.take_lock()", "SELECT IS_USED_LOCK('fn-lock') = CONNECTION_ID() AS n", 1],
    ["a trigger", "INSERT INTO app.audited VALUES (1)", "SELECT COUNT(*) AS n FROM app.trigger_tmp", 0],
  ] as const) {
    it(`a session that ran ${what} stays on its server until its client resets the session, then moves`, async () => {
      const c = await mariadb.createConnection({ host: "127.0.0.1", port: ferry.port, user: APP_USER, password: APP_PASSWORD });
      try {
        await c.query(sql);
        const [{ p }] = await c.query("SELECT @@port AS p");
        const moved = ferry.moveCounts().moved;
        await drainServerOf(Number(p));
        await new Promise((r) => setTimeout(r, 300));
        const [r] = await c.query(`${check.replace(" AS n", " AS n, @@port AS p")}`);
        assert.equal(r.p, p, "still on the drained server");
        assert.equal(Number(r.n), expected, "what the routine left is there");
        assert.equal(ferry.moveCounts().moved, moved);
        await c.reset();
        assert.ok(await waitFor(() => ferry.moveCounts().moved > moved, 5000), "moved after the reset");
        const [{ p: now }] = await c.query("SELECT @@port AS p");
        assert.notEqual(now, p);
      } finally {
        await c.end();
      }
    });
  }

  // Where the server's state-change report cannot tell (a result set ending in an EOF packet, as
  // for mysql2; a SET, which reports a change of its own), Ferry asks the server which of the
  // names a statement called are stored functions.
  for (const [what, run, check, expected] of [
    ["a stored function in a query (mysql2: no CLIENT_DEPRECATE_EOF)", (c: mysql.Connection) => c.query("SELECT app.take_lock() AS l"),
      "SELECT IS_USED_LOCK('fn-lock') = CONNECTION_ID() AS n", 1],
    ["an unqualified stored function in a prepared query (mysql2)", (c: mysql.Connection) => c.execute("SELECT take_lock() AS l"),
      "SELECT IS_USED_LOCK('fn-lock') = CONNECTION_ID() AS n", 1],
    ["a stored function in a SET", (c: mysql.Connection) => c.query("SET @v = app.temp_fn()"), "SELECT COUNT(*) AS n FROM app.ft", 0],
  ] as const) {
    it(`a session that ran ${what} stays on its server until its client resets the session, then moves`, async () => {
      const c = await connectVia(ferry.port);
      try {
        await run(c);
        const port = await portOf(c);
        const moved = ferry.moveCounts().moved;
        await drainServerOf(port);
        await new Promise((r) => setTimeout(r, 300));
        const r = await one(c, check.replace(" AS n", " AS n, @@port AS p"));
        assert.equal(Number(r.p), port, "still on the drained server");
        assert.equal(Number(r.n), expected, "what the function left is there");
        assert.equal(ferry.moveCounts().moved, moved);
        await c.changeUser({ user: APP_USER, password: APP_PASSWORD, database: "app" });
        assert.ok(await waitFor(() => ferry.moveCounts().moved > moved, 5000), "moved after COM_CHANGE_USER");
        assert.notEqual(await portOf(c), port);
      } finally {
        await c.end();
      }
    });
  }

  it("a query calling names that are not stored functions does not hold the session", async () => {
    const c = await connectVia(ferry.port);
    await c.query("WITH c (v) AS (SELECT 1) SELECT v FROM c");
    await c.execute("WITH d (v) AS (SELECT ?) SELECT v FROM d", [2]);
    const port = await moveAway(c);
    assert.notEqual(await portOf(c), port);
    await c.end();
  });

  for (const [what, sql, variable, value] of [
    ["a stored procedure", "CALL app.set_var()", "@inproc", 5],
    ["a stored function in a query (mysql2: found by its name)", "SELECT app.var_fn() AS f", "@infn", 7],
  ] as const) {
    it(`with pin_after_routines = false a session moves after ${what}, with the user variables it set`, async () => {
      const extra = `${BASE}\npin_after_routines = false`;
      ferry.reload(proxyConfig(cluster, extra));
      const c = await connectVia(ferry.port);
      await c.query(sql);
      const port = await moveAway(c, extra);
      const r = await one(c, `SELECT ${variable} AS v, @@port AS p`);
      assert.notEqual(Number(r.p), port);
      assert.equal(Number(r.v), value, "read back after the routine, set again on the new server");
      await c.end();
    });
  }

  it("what a prepared statement does is tracked as the same text sent as a query: SET @x = ? moves, GET_LOCK(?) pins", async () => {
    const c = await connectVia(ferry.port);
    await c.execute("SET @prepared = ?", [42]);
    await c.execute("SELECT GET_LOCK(?, 1) AS l", ["prepared-lock"]);
    const port = await portOf(c);
    const moved = ferry.moveCounts().moved;
    await drainServerOf(port);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await portOf(c), port, "pinned by the lock");
    await c.query("SELECT RELEASE_ALL_LOCKS()");
    assert.ok(await waitFor(() => ferry.moveCounts().moved > moved, 5000), "moved once the locks were released");
    const r = await one(c, "SELECT @prepared AS v, @@port AS p");
    assert.notEqual(Number(r.p), port);
    assert.equal(Number(r.v), 42);
    await c.end();
  });

  it("kill -9 of a backend while 50 idle sessions sit on it: all 50 answer their next query correctly", async () => {
    const victim = cluster.servers[0];
    const others = Object.fromEntries(cluster.servers.slice(1).map((s) => [s.port, "OFFLINE_SOFT"]));
    ferry.reload(proxyConfig(cluster, BASE, undefined, others));
    const clients: mysql.Connection[] = [];
    for (let i = 0; i < 50; i++) {
      const c = await connectVia(ferry.port);
      await c.query(`SET @k = ${i}`);
      await c.query("USE app2");
      clients.push(c);
    }
    for (const c of clients.slice(0, 3)) assert.equal(await portOf(c), victim.port);
    ferry.reload(proxyConfig(cluster, BASE));
    await victim.crash();
    const answers = await Promise.all(clients.map((c) => one(c, "SELECT @k AS k, DATABASE() AS db, @@port AS p")));
    answers.forEach((a, i) => {
      assert.equal(Number(a.k), i);
      assert.equal(a.db, "app2");
      assert.notEqual(Number(a.p), victim.port);
    });
    await Promise.all(clients.map((c) => c.end()));
    await victim.start();
  });

  it("a rolling restart of all 3 servers under 16 looping clients causes no client error", async () => {
    const clients = await Promise.all(Array.from({ length: 16 }, () => connectVia(ferry.port)));
    await Promise.all(clients.map((c, i) => c.query(`SET @me = ${i}`)));
    let stop = false;
    const errors: string[] = [];
    let queries = 0;
    const loops = clients.map(async (c, i) => {
      const deadline = Date.now() + 90_000;
      while (!stop && Date.now() < deadline) {
        try {
          const r = await one(c, "SELECT @me AS me, COUNT(*) AS n FROM app.t");
          if (Number(r.me) !== i) errors.push(`client ${i} saw @me=${r.me}`);
          queries++;
        } catch (e) {
          errors.push(`client ${i}: ${(e as Error).message}`);
        }
      }
    });
    for (const server of cluster.servers) {
      ferry.reload(proxyConfig(cluster, BASE, undefined, { [server.port]: "OFFLINE_SOFT" }));
      assert.ok(await waitFor(() => !ferry.sessionsByServer().has(`127.0.0.1:${server.port}`), 10_000), `sessions left ${server.port}`);
      await server.stop();
      await server.start();
      ferry.reload(proxyConfig(cluster, BASE));
    }
    stop = true;
    await Promise.all(loops);
    await Promise.all(clients.map((c) => c.end()));
    assert.deepEqual(errors, []);
    assert.ok(queries > 100, `clients kept working (${queries} queries)`);
    assert.ok(logs.lines.some((l) => l.includes('"result":"moved"')));
  });
  it("random session state survives a drain and a kill -9 (mysql2 and the MariaDB connector): user variables of every type, session variables, schema, prepared statements", async () => {
    const seed = Number(process.env.FERRY_FUZZ_SEED ?? 20261203);
    const rounds = Number(process.env.FERRY_FUZZ_ROUNDS ?? 12);
    const rnd = prng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)];
    const VALUES = [
      "0", "-1", "9223372036854775807", "-9223372036854775808", "18446744073709551615", "123.4500", "-0.000001", "99999999999999999999.99",
      "1e308", "-2.5e-300", "0e0", "'plain'", "'it''s \\\\ a \"test\"'", "'\u00fc\u20ac\ud83d\ude00'", "''", "'a\\0b'", "X'00FF10'", "_binary'abc'",
      "_latin1 X'E9'", "NULL", "b'101'", "JSON_OBJECT('a', 1, 'b', 'x\"y')", "'2026-01-01 10:00:00' + INTERVAL 1 DAY", "CAST(-5 AS UNSIGNED)", "REPEAT('z', 3000)",
      "CONVERT('abc' USING ucs2)", "1 = 1",
    ];
    const MODES = ["ANSI_QUOTES", "NO_ENGINE_SUBSTITUTION", "STRICT_TRANS_TABLES", "PIPES_AS_CONCAT", "NO_BACKSLASH_ESCAPES", "ONLY_FULL_GROUP_BY",
      "IGNORE_SPACE", "NO_ZERO_DATE", "ERROR_FOR_DIVISION_BY_ZERO", "HIGH_NOT_PRECEDENCE", "NO_AUTO_VALUE_ON_ZERO"];
    const SETTINGS = [
      () => `SET SESSION sql_mode = '${MODES.filter(() => rnd(3) === 0).join(",")}'`,
      () => `SET SESSION time_zone = '${pick(["+05:30", "-08:00", "+00:00", "SYSTEM"])}'`,
      () => `SET SESSION group_concat_max_len = ${4 + rnd(100000)}`,
      () => `SET SESSION div_precision_increment = ${rnd(31)}`,
      () => `SET SESSION lc_time_names = '${pick(["de_DE", "ja_JP", "en_US", "fr_FR"])}'`,
      () => `SET SESSION sql_select_limit = ${pick(["DEFAULT", "1", "1000"])}`,
      () => pick(["SET NAMES latin1", "SET NAMES utf8mb4 COLLATE utf8mb4_bin", "SET NAMES utf8mb4", "SET NAMES utf8mb3", "SET character_set_results = NULL"]),
      () => `SET SESSION TRANSACTION ISOLATION LEVEL ${pick(["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE", "READ UNCOMMITTED"])}`,
      () => `SET SESSION sql_safe_updates = ${rnd(2)}`,
      () => `SET SESSION auto_increment_increment = ${1 + rnd(5)}`,
      () => `SET SESSION max_statement_time = ${pick(["0", "12.5"])}`,
      () => pick(["USE app", "USE app2"]),
      () => pick(["SET SESSION sql_mode = 'ORACLE'", "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI')", "SET NAMES binary"]),
      () => `SET SESSION optimizer_switch = '${pick(["index_merge=off", "mrr=on,mrr_sort_keys=on", "default"])}'`,
      () => `SET @\`odd \`\` name\` = ${pick(VALUES)}`,
    ];
    const VARIABLES = "@@sql_mode AS sql_mode, @@time_zone AS tz, @@group_concat_max_len AS gcml, @@div_precision_increment AS dpi, " +
      "@@lc_time_names AS ltn, @@sql_select_limit AS lim, @@character_set_client AS csc, @@character_set_connection AS cscn, " +
      "@@character_set_results AS csr, @@collation_connection AS cc, @@tx_isolation AS iso, @@sql_safe_updates AS ssu, " +
      "@@auto_increment_increment AS aii, @@max_statement_time AS mst, @@optimizer_switch AS os, DATABASE() AS db";
    /** mysql2 (text results as strings) and the MariaDB connector (session tracking, metadata caching), taking turns. */
    interface Client { query(sql: string): Promise<unknown[]>; execute(sql: string, params: unknown[]): Promise<unknown[]>; end(): Promise<void> }
    const open = async (round: number): Promise<Client> => {
      if (round % 2 === 1) {
        const m = await connectVia(ferry.port, { supportBigNumbers: true, bigNumberStrings: true, dateStrings: true });
        return { query: async (q) => (await m.query(q))[0] as unknown[], execute: async (q, p) => (await m.execute(q, p as never))[0] as unknown[], end: () => m.end() };
      }
      const m = await mariadb.createConnection({ host: "127.0.0.1", port: ferry.port, user: APP_USER, password: APP_PASSWORD, database: "app", dateStrings: true });
      const plain = (rows: unknown): unknown[] => Array.isArray(rows) ? rows.map((r: Record<string, unknown>) => ({ ...r })) : [];
      return { query: async (q) => plain(await m.query(q)), execute: async (q, p) => plain(await m.execute(q, p)), end: () => m.end() };
    };
    for (let round = 1; round <= rounds; round++) {
      const c = await open(round);
      const done: string[] = [round % 2 === 1 ? "mysql2" : "mariadb connector"];
      const run = async (sql: string): Promise<void> => {
        done.push(sql);
        await c.query(sql);
      };
      const vars = 1 + rnd(6);
      for (let i = 0; i < vars; i++) await run(`SET @v${i} = ${pick(VALUES)}`);
      for (let i = rnd(5); i > 0; i--) await run(pick(SETTINGS)());
      await run(`PREPARE ps${round} FROM 'SELECT ? AS a, @v0 AS b'`);
      const snapshot = async (): Promise<unknown> => ({
        session: await c.query(`SELECT ${VARIABLES}`),
        user: await c.query("SELECT VARIABLE_NAME AS n, HEX(VARIABLE_VALUE) AS v, VARIABLE_TYPE AS t, CHARACTER_SET_NAME AS cs " +
          "FROM information_schema.USER_VARIABLES ORDER BY VARIABLE_NAME LIMIT 1000"),
        text: await c.query(`EXECUTE ps${round} USING ${round}`),
        binary: await c.execute("SELECT ? AS x, CONCAT(?, 'z') AS y, @v0 AS v", [round, `r${round}`]),
      });
      const portNow = async (): Promise<number> => Number(((await c.query("SELECT @@port AS p"))[0] as { p: unknown }).p);
      const context = (): string => `round ${round}, seed ${seed}: ${done.join("; ")}`;
      const before = await snapshot();
      const from = await portNow();
      // Every third round the server is killed instead: the state must have been taken as it was made.
      const victim = round % 3 === 0 ? cluster.servers.find((x) => x.port === from) : null;
      assert.notEqual(victim, undefined, `the session is on one of the cluster's servers (${from})`);
      if (victim) {
        done.push("(kill -9 of the server)");
        await victim.crash();
      } else {
        const moved = ferry.moveCounts().moved;
        await drainServerOf(from);
        assert.ok(await waitFor(() => ferry.moveCounts().moved > moved, 5000), `the session moved (${context()})`);
      }
      assert.notEqual(await portNow(), from, `served by another server (${context()})`);
      assert.deepEqual(await snapshot(), before, `the same state after the move (${context()})`);
      await c.end();
      if (victim) await victim.start();
      ferry.reload(proxyConfig(cluster, BASE));
    }
  });
});
