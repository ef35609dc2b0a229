// The mariadb npm connector, the mariadb CLI and PyMySQL through Ferry against real MariaDB.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import * as mariadb from "mariadb";
import type { FerryServer } from "../../src/server.js";
import { APP_PASSWORD, APP_USER, Cluster, startProxy } from "./harness.js";

const run = promisify(execFile);

describe("other clients through Ferry", () => {
  let cluster: Cluster;
  let ferry: FerryServer;

  before(async () => {
    cluster = await Cluster.start(1);
    ({ ferry } = await startProxy(cluster));
    await cluster.servers[0].sql("CREATE TABLE app.kv (k VARCHAR(20) PRIMARY KEY, v INT); INSERT INTO app.kv VALUES ('a', 1), ('b', 2), ('c', 3);");
  });

  after(async () => {
    await ferry?.close();
    await cluster?.stop();
  });

  it("mariadb connector: query, prepared execute, batch, pipelining and transactions", async () => {
    const conn = await mariadb.createConnection({ host: "127.0.0.1", port: ferry.port, user: APP_USER, password: APP_PASSWORD, database: "app", pipelining: true });
    try {
      const rows = await conn.query("SELECT k, v FROM kv ORDER BY k");
      assert.deepEqual(rows.map((r: { k: string; v: number }) => [r.k, r.v]), [["a", 1], ["b", 2], ["c", 3]]);
      const exec = await conn.execute("SELECT v FROM kv WHERE k = ?", ["b"]);
      assert.equal(exec[0].v, 2);
      // pipelined: several commands written before any answer arrives
      const many = await Promise.all(Array.from({ length: 20 }, (_, i) => conn.query("SELECT ? AS n", [i])));
      assert.deepEqual(many.map((r: { n: number }[]) => Number(r[0].n)), Array.from({ length: 20 }, (_, i) => i));
      await conn.beginTransaction();
      await conn.batch("INSERT INTO kv VALUES (?, ?)", [["x", 10], ["y", 20], ["z", 30]]);
      await conn.commit();
      const sum = await conn.query("SELECT SUM(v) AS s FROM kv WHERE k IN ('x','y','z')");
      assert.equal(Number(sum[0].s), 60);
    } finally {
      await conn.end();
    }
  });

  it("mariadb connector with metadata caching: repeated executes skip column definitions and still decode right", async () => {
    /** executes a prepared point select 6 times through `port`; returns the rows and how many result sets the server sent without metadata */
    const executeRepeatedly = async (port: number): Promise<{ values: number[]; skipped: number }> => {
      const conn = await mariadb.createConnection({ host: "127.0.0.1", port, user: APP_USER, password: APP_PASSWORD, database: "app" });
      try {
        const stmt = await conn.prepare("SELECT k, v FROM kv WHERE k = ?");
        const values: number[] = [];
        for (const k of ["a", "b", "c", "a", "b", "c"]) {
          const rows = await stmt.execute([k]);
          assert.equal(rows[0].k, k, "the row decodes with the columns of the first result");
          values.push(rows[0].v);
        }
        stmt.close();
        const st = await conn.query("SHOW SESSION STATUS LIKE 'Resultset_metadata_skipped'");
        return { values, skipped: Number(st[0].Value) };
      } finally {
        await conn.end();
      }
    };
    const on = await executeRepeatedly(ferry.port);
    assert.deepEqual(on.values, [1, 2, 3, 1, 2, 3]);
    assert.ok(on.skipped >= 5, `the server left out metadata on repeated executes (skipped ${on.skipped})`);
    const { ferry: off } = await startProxy(cluster, "cache_metadata = false");
    try {
      const r = await executeRepeatedly(off.port);
      assert.deepEqual(r.values, [1, 2, 3, 1, 2, 3]);
      assert.equal(r.skipped, 0, "with proxy.cache_metadata = false the capability is not offered");
    } finally {
      await off.close();
    }
  });

  it("mariadb CLI: queries, multi-statements, USE and errors", async () => {
    const base = ["--no-defaults", "-h", "127.0.0.1", "-P", String(ferry.port), `-u${APP_USER}`, `-p${APP_PASSWORD}`, "-N", "-B"];
    const { stdout } = await run("mariadb", [...base, "app", "-e", "SELECT k, v FROM kv ORDER BY k LIMIT 2; SELECT 'second'; USE mysql; SELECT DATABASE();"]);
    assert.equal(stdout, "a\t1\nb\t2\nsecond\nmysql\n");
    await assert.rejects(run("mariadb", [...base, "app", "-e", "SELECT * FROM missing_table"]), (e: { stderr: string }) => /ERROR 1146 \(42S02\)/.test(e.stderr));
    const tls = await run("mariadb", [...base, "--ssl", "app", "-e", "status"]);
    assert.match(tls.stdout, /SSL:\s+Cipher in use is/);
  });

  it("PyMySQL: query, parameters and commit", async () => {
    const script = `
import pymysql, sys
c = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="${APP_USER}", password="${APP_PASSWORD}", database="app")
cur = c.cursor()
cur.execute("SELECT v FROM kv WHERE k = %s", ("c",))
print(cur.fetchone()[0])
cur.execute("INSERT INTO kv VALUES (%s, %s)", ("py", 42))
c.commit()
cur.execute("SELECT COUNT(*) FROM kv WHERE k = 'py'")
print(cur.fetchone()[0])
c.close()
`;
    const { stdout } = await run("/usr/bin/python3", ["-c", script, String(ferry.port)]);
    assert.equal(stdout, "3\n1\n");
    const direct = await cluster.servers[0].sql("SELECT v FROM app.kv WHERE k = 'py'");
    assert.equal(direct.trim(), "42");
  });
});
