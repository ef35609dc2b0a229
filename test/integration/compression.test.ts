// The compressed protocol (CLIENT_COMPRESS) between clients and Ferry, with real clients that ask
// for it (mysql2 `compress: true`, the mariadb CLI `--compress`): results identical to a direct
// compressed connection, large packets both ways, and bytes on the wire actually compressed.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import type net from "node:net";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import mysql from "mysql2/promise";
import type { FerryServer } from "../../src/server.js";
import { APP_PASSWORD, APP_USER, Cluster, one, startProxy } from "./harness.js";

const run = promisify(execFile);

describe("compressed protocol", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  const open: mysql.Connection[] = [];

  before(async () => {
    cluster = await Cluster.start(1, ["--max-allowed-packet=64M"]);
    ({ ferry } = await startProxy(cluster));
    const c = await mysql.createConnection({ host: "127.0.0.1", port: cluster.servers[0].port, user: APP_USER, password: APP_PASSWORD, database: "app" });
    await c.query("CREATE TABLE words (id INT PRIMARY KEY, w VARCHAR(200))");
    await c.query("INSERT INTO words SELECT seq, CONCAT('word-', seq, '-', REPEAT('abc', seq % 50)) FROM seq_1_to_20000");
    await c.end();
  });

  after(async () => {
    await Promise.all(open.map((c) => c.end().catch(() => undefined)));
    await ferry?.close();
    await cluster?.stop();
  });

  const connect = async (port: number, opts: mysql.ConnectionOptions = {}): Promise<mysql.Connection> => {
    const c = await mysql.createConnection({ host: "127.0.0.1", port, user: APP_USER, password: APP_PASSWORD, database: "app", compress: true, multipleStatements: true, ...opts });
    open.push(c);
    return c;
  };
  const bytesRead = (c: mysql.Connection): number => (c as unknown as { connection: { stream: net.Socket } }).connection.stream.bytesRead;
  const digest = (rows: unknown): string => createHash("sha256").update(JSON.stringify(rows)).digest("hex");

  it("answers mysql2 with compression as the server does: queries, prepared statements, multi-results", async () => {
    const viaFerry = await connect(ferry.port);
    const direct = await connect(cluster.servers[0].port);
    for (const c of [viaFerry, direct]) assert.equal(Number((await one(c, "SELECT 6 * 7 AS n")).n), 42);
    const results = [];
    for (const c of [viaFerry, direct]) {
      const [all] = await c.query("SELECT * FROM words ORDER BY id");
      const [some] = await c.execute("SELECT w FROM words WHERE id BETWEEN ? AND ? ORDER BY id", [100, 2100]);
      const [multi] = await c.query("SELECT COUNT(*) AS n FROM words; SELECT MAX(id) AS m FROM words");
      results.push([digest(all), digest(some), JSON.stringify(multi)]);
    }
    assert.deepEqual(results[0], results[1]);
    assert.equal((results[0][2] as string), JSON.stringify([[{ n: 20000 }], [{ m: 20000 }]]));
  });

  it("compresses on the wire: a 20,000-row result arrives in fewer bytes than it holds", async () => {
    const c = await connect(ferry.port);
    const before = bytesRead(c);
    const [rows] = (await c.query("SELECT w FROM words")) as unknown as [{ w: string }[]];
    const received = bytesRead(c) - before;
    const plain = rows.reduce((n, r) => n + r.w.length + 5, 0);
    assert.ok(received * 3 < plain, `received ${received} bytes for ${plain} bytes of rows`);
  });

  it("carries 20 MB values both ways in both protocols, and LOAD DATA LOCAL", async () => {
    const c = await connect(ferry.port, {
      infileStreamFactory: () => Readable.from(Array.from({ length: 5000 }, (_, i) => Buffer.from(`${100000 + i}\tloaded-${i}\n`))),
    });
    await c.query("CREATE TABLE IF NOT EXISTS big (id INT PRIMARY KEY, b LONGBLOB)");
    const value = Buffer.alloc(20 << 20);
    for (let i = 0; i < value.length; i += 4096) value.write(`block ${i} `, i);
    await c.execute("REPLACE INTO big VALUES (1, ?)", [value]);
    const [[text]] = (await c.query("SELECT b FROM big WHERE id = 1")) as unknown as [[{ b: Buffer }]];
    const [[binary]] = (await c.execute("SELECT b FROM big WHERE id = ?", [1])) as unknown as [[{ b: Buffer }]];
    assert.ok(text.b.equals(value) && binary.b.equals(value));
    await c.query("LOAD DATA LOCAL INFILE 'words.tsv' INTO TABLE words");
    assert.equal(Number((await one(c, "SELECT COUNT(*) AS n FROM words WHERE w LIKE 'loaded-%'")).n), 5000);
    await c.query("DELETE FROM words WHERE id >= 100000");
  });

  it("keeps compressing across COM_CHANGE_USER", async () => {
    const c = await connect(ferry.port);
    await c.changeUser({ user: APP_USER, password: APP_PASSWORD, database: "app" });
    assert.equal(Number((await one(c, "SELECT COUNT(*) AS n FROM words")).n), 20000);
  });

  it("serves the mariadb CLI with --compress like the server", async () => {
    const cli = (port: number) => run("mariadb", ["--no-defaults", "--compress", "-h127.0.0.1", `-P${port}`, `-u${APP_USER}`, `-p${APP_PASSWORD}`, "app", "-N", "-B", "-e",
      "SELECT id, w FROM words WHERE id % 7 = 0 ORDER BY id; SELECT SUM(LENGTH(w)) FROM words"], { maxBuffer: 64 << 20 });
    const [viaFerry, direct] = await Promise.all([cli(ferry.port), cli(cluster.servers[0].port)]);
    assert.ok(viaFerry.stdout.length > 50_000);
    assert.equal(viaFerry.stdout, direct.stdout);
  });
});
