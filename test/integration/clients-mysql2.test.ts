// mysql2 through Ferry against real MariaDB: results identical to a direct connection.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createReadStream, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type mysql from "mysql2/promise";
import type { FerryServer } from "../../src/server.js";
import { Cluster, connectVia, startProxy } from "./harness.js";

describe("mysql2 through Ferry", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  let viaFerry: mysql.Connection;
  let direct: mysql.Connection;

  before(async () => {
    cluster = await Cluster.start(1);
    ({ ferry } = await startProxy(cluster));
    viaFerry = await connectVia(ferry.port, { multipleStatements: true });
    direct = await connectVia(cluster.servers[0].port, { multipleStatements: true });
    await direct.query("CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(100), d DECIMAL(10,2), ts DATETIME(3), b LONGBLOB, j JSON, n INT NULL)");
    await direct.query("INSERT INTO t (v, d, ts, b, j, n) VALUES ('a', 1.50, '2024-01-02 03:04:05.678', 0x00ff, '{\"k\":1}', NULL), ('b', -2.25, '1999-12-31 23:59:59.000', '', '[1,2]', 7)");
  });

  after(async () => {
    await viaFerry?.end().catch(() => undefined);
    await direct?.end().catch(() => undefined);
    await ferry?.close();
    await cluster?.stop();
  });

  it("returns the same rows and column metadata as a direct connection (text protocol)", async () => {
    const [a, fa] = await viaFerry.query("SELECT * FROM t ORDER BY id");
    const [b, fb] = await direct.query("SELECT * FROM t ORDER BY id");
    assert.deepEqual(a, b);
    assert.deepEqual((fa as mysql.FieldPacket[]).map((f) => [f.name, f.type, f.flags]), (fb as mysql.FieldPacket[]).map((f) => [f.name, f.type, f.flags]));
  });

  it("executes prepared statements (binary protocol) with the same results", async () => {
    const [a] = await viaFerry.execute("SELECT * FROM t WHERE id >= ? AND v <> ? ORDER BY id", [1, "zzz"]);
    const [b] = await direct.execute("SELECT * FROM t WHERE id >= ? AND v <> ? ORDER BY id", [1, "zzz"]);
    assert.deepEqual(a, b);
    assert.equal((a as unknown[]).length, 2);
  });

  it("runs multi-statements and returns every result", async () => {
    const [res] = await viaFerry.query("SELECT 1 AS x; SELECT 'two' AS y; INSERT INTO t (v) VALUES ('m'); SELECT COUNT(*) AS c FROM t");
    const r = res as unknown[];
    assert.equal(r.length, 4);
    assert.deepEqual(r[0], [{ x: 1 }]);
    assert.deepEqual(r[1], [{ y: "two" }]);
    assert.equal((r[2] as mysql.ResultSetHeader).affectedRows, 1);
    assert.deepEqual(r[3], [{ c: 3 }]);
    await viaFerry.query("DELETE FROM t WHERE v = 'm'");
  });

  it("keeps a transaction on one connection: rollback undoes, commit keeps", async () => {
    await viaFerry.beginTransaction();
    await viaFerry.query("INSERT INTO t (v) VALUES ('tx-rolled-back')");
    await viaFerry.rollback();
    await viaFerry.beginTransaction();
    const [ins] = await viaFerry.query("INSERT INTO t (v) VALUES ('tx-committed')");
    await viaFerry.commit();
    const [rows] = await direct.query("SELECT v FROM t WHERE v LIKE 'tx-%'");
    assert.deepEqual(rows, [{ v: "tx-committed" }]);
    const [[li]] = (await viaFerry.query("SELECT LAST_INSERT_ID() AS id")) as unknown as [[{ id: number }]];
    assert.equal(li.id, (ins as mysql.ResultSetHeader).insertId);
  });

  it("round-trips a 20 MB blob through both protocols, byte for byte", async () => {
    const blob = randomBytes(20 * 1024 * 1024);
    await viaFerry.query("CREATE TABLE IF NOT EXISTS big (id INT PRIMARY KEY, b LONGBLOB)");
    await viaFerry.query("INSERT INTO big VALUES (1, ?)", [blob]);
    await viaFerry.execute("INSERT INTO big VALUES (2, ?)", [blob]);
    const [text] = await viaFerry.query("SELECT b FROM big WHERE id = 1");
    const [bin] = await viaFerry.execute("SELECT b FROM big WHERE id = ?", [2]);
    assert.ok(blob.equals((text as { b: Buffer }[])[0].b), "text protocol blob differs");
    assert.ok(blob.equals((bin as { b: Buffer }[])[0].b), "binary protocol blob differs");
    const [[lens]] = (await direct.query("SELECT LENGTH(b) AS l, MD5(b) = MD5((SELECT b FROM big WHERE id = 2)) AS same FROM big WHERE id = 1")) as unknown as [[{ l: number; same: number }]];
    assert.equal(lens.l, blob.length);
    assert.equal(lens.same, 1);
  });

  it("streams a 100k-row result identical to the direct one", async () => {
    const sql = "SELECT seq, CONCAT('row-', seq) AS label, seq * 1.5 AS f FROM seq_1_to_100000";
    const [a] = await viaFerry.query(sql);
    const [b] = await direct.query(sql);
    assert.equal((a as unknown[]).length, 100000);
    assert.deepEqual(a, b);
  });

  it("loads a file with LOAD DATA LOCAL INFILE", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ferry-infile-"));
    const file = join(dir, "rows.tsv");
    const lines: string[] = [];
    for (let i = 0; i < 5000; i++) lines.push(`${i}\tvalue-${i}`);
    writeFileSync(file, lines.join("\n") + "\n");
    await viaFerry.query("CREATE TABLE li (id INT PRIMARY KEY, v VARCHAR(50))");
    const [res] = await viaFerry.query({ sql: `LOAD DATA LOCAL INFILE '${file}' INTO TABLE li`, infileStreamFactory: () => createReadStream(file) } as mysql.QueryOptions);
    assert.equal((res as mysql.ResultSetHeader).affectedRows, 5000);
    const [[c]] = (await direct.query("SELECT COUNT(*) AS c, SUM(id) AS s FROM li")) as unknown as [[{ c: number; s: string }]];
    assert.equal(c.c, 5000);
    assert.equal(Number(c.s), (4999 * 5000) / 2);
    // the session is still usable afterwards
    const [[one]] = (await viaFerry.query("SELECT 1 AS one")) as unknown as [[{ one: number }]];
    assert.equal(one.one, 1);
    rmSync(dir, { recursive: true, force: true });
  });

  it("reports errors exactly as the server does and keeps the session", async () => {
    await assert.rejects(viaFerry.query("SELECT * FROM no_such_table"), (e: mysql.QueryError) => e.errno === 1146 && e.sqlState === "42S02");
    await assert.rejects(viaFerry.query("SELEC 1"), (e: mysql.QueryError) => e.errno === 1064);
    const [[r]] = (await viaFerry.query("SELECT 2 AS two")) as unknown as [[{ two: number }]];
    assert.equal(r.two, 2);
  });

  it("answers COM_PING, COM_INIT_DB and COM_STATISTICS", async () => {
    await viaFerry.ping();
    await viaFerry.changeUser({ database: "mysql" }).catch(() => undefined);
    const c = await connectVia(ferry.port);
    await c.query("USE mysql");
    const [[db]] = (await c.query("SELECT DATABASE() AS d")) as unknown as [[{ d: string }]];
    assert.equal(db.d, "mysql");
    await c.end();
  });

  it("gives each client Ferry's own connection id and translates KILL QUERY", async () => {
    const victim = await connectVia(ferry.port);
    const killer = await connectVia(ferry.port);
    const ferryId = victim.threadId;
    const [[backend]] = (await victim.query("SELECT CONNECTION_ID() AS id")) as unknown as [[{ id: number }]];
    assert.notEqual(ferryId, null);
    const interrupted = (e: mysql.QueryError) => e.errno === 1317; // ER_QUERY_INTERRUPTED, sent by the server
    const running = assert.rejects(victim.query("SELECT SLEEP(20) AS s"), interrupted);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    await killer.query(`KILL QUERY ${ferryId}`);
    await running;
    assert.ok(Date.now() - t0 < 5000);
    // by backend thread id too, and the session survives KILL QUERY
    const again = assert.rejects(victim.query("SELECT SLEEP(20) AS s"), interrupted);
    await new Promise((r) => setTimeout(r, 300));
    await killer.query(`KILL QUERY ${backend.id}`);
    await again;
    const [[alive]] = (await victim.query("SELECT 3 AS x")) as unknown as [[{ x: number }]];
    assert.equal(alive.x, 3);
    // KILL CONNECTION ends the victim
    await killer.query(`KILL ${ferryId}`);
    await assert.rejects(victim.query("SELECT 1"));
    await assert.rejects(killer.query("KILL 999999"), (e: mysql.QueryError) => e.errno === 1094);
    await killer.end();
  });
});
