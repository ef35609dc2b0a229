// proxy.backend_max_age_ms: a backend connection past its age is replaced by a fresh one, the
// session moving with its state at a movable boundary, to where the router would put it now.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type mysql from "mysql2/promise";
import type { FerryServer } from "../../src/server.js";
import { parseConfig } from "../../src/config/load.js";
import { APP_PASSWORD, APP_USER, Cluster, connectVia, LogSink, one, proxyConfig, startProxy, waitFor } from "./harness.js";

const MAX_AGE = 1500;
// Scores by connection count alone (no latency), so where a renewal goes is exact.
const BALANCER = "\n[balancer]\nlatency_weight = 0";
const EXTRA = `backend_max_age_ms = ${MAX_AGE}\nrebalance_ratio = 0${BALANCER}`;

describe("backend connection age (proxy.backend_max_age_ms)", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  let logs: LogSink;
  let onlyA: Record<number, string>;

  before(async () => {
    cluster = await Cluster.start(2);
    onlyA = { [cluster.servers[1].port]: "OFFLINE_HARD" };
    ({ ferry, logs } = await startProxy(cluster, EXTRA, undefined, onlyA));
  });

  after(async () => {
    await ferry?.close();
    await cluster?.stop();
  });

  const backendId = async (c: mysql.Connection): Promise<number> => Number((await one(c, "SELECT CONNECTION_ID() AS id")).id);

  it("replaces a connection past its age with a fresh one, with the session's state, again and again", async () => {
    const c = await connectVia(ferry.port);
    const t0 = performance.now();
    await c.query("SET @v = 'kept', SESSION sql_mode = 'ANSI_QUOTES'");
    assert.equal(Number((await one(c, "SELECT ? + 1 AS n", [1])).n), 2); // prepared before the renewal
    const first = await backendId(c);
    let id = first;
    assert.ok(await waitFor(async () => (id = await backendId(c)) !== first, 5000), "the connection was never renewed");
    const ms = performance.now() - t0;
    // Renewed between 0.9 × and 1 × the age, at the next sweep (once a second).
    assert.ok(ms >= MAX_AGE * 0.9 - 50 && ms <= MAX_AGE + 2000, `renewed after ${ms.toFixed(0)} ms`);
    const row = await one(c, "SELECT @v AS v, @@sql_mode AS m");
    assert.equal(row.v, "kept");
    assert.equal(row.m, "ANSI_QUOTES");
    assert.equal(Number((await one(c, "SELECT ? + 1 AS n", [41])).n), 42);
    const moved = logs.lines.map((l) => JSON.parse(l) as { msg: string; reason?: string; result?: string }).filter((l) => l.msg === "session moved" && l.reason === "max-age");
    assert.ok(moved.length >= 1 && moved.every((l) => l.result === "moved"), `moves logged: ${JSON.stringify(moved)}`);
    const second = id;
    assert.ok(await waitFor(async () => (id = await backendId(c)) !== second, 5000), "renewed only once");
    await c.end();
  });

  it("keeps a connection past its age while a transaction is open, and renews it after COMMIT", async () => {
    const c = await connectVia(ferry.port);
    await c.query("CREATE TABLE IF NOT EXISTS age_ledger (n INT)");
    await c.query("BEGIN");
    await c.query("INSERT INTO age_ledger VALUES (1)");
    const inTx = await backendId(c);
    const until = Date.now() + MAX_AGE + 1200;
    let checks = 0;
    while (Date.now() < until) {
      assert.equal(await backendId(c), inTx, "the connection changed inside a transaction");
      checks++;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(checks >= 10);
    await c.query("COMMIT");
    assert.ok(await waitFor(async () => (await backendId(c)) !== inTx, 3000), "not renewed after COMMIT");
    assert.equal(Number((await one(c, "SELECT COUNT(*) AS n FROM age_ledger")).n), 1);
    await c.end();
  });

  it("renews idle sessions to where the router would put them now, and stops when the limit is removed", async () => {
    const [a, b] = cluster.servers;
    const clients: mysql.Connection[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await connectVia(ferry.port);
      await c.query(`SET @i = ${i}`);
      clients.push(c);
    }
    const on = (s: typeof a): number => ferry.sessionsByServer().get(`127.0.0.1:${s.port}`) ?? 0;
    assert.equal(on(a), 4);
    // b joins; the rebalancer is off (rebalance_ratio = 0): only renewals move sessions.
    ferry.reload(proxyConfig(cluster, EXTRA));
    assert.ok(await waitFor(() => on(a) === 2 && on(b) === 2, 6000), `spread: ${JSON.stringify([...ferry.sessionsByServer()])}`);
    // Each renewal scores the server it leaves without its own connection: 2 and 2 stays so.
    const moved0 = ferry.moveCounts().moved;
    const until = Date.now() + MAX_AGE + 1500;
    while (Date.now() < until) {
      assert.deepEqual([on(a), on(b)], [2, 2]);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(ferry.moveCounts().moved - moved0 >= 4, `renewed ${ferry.moveCounts().moved - moved0} times`);
    const answers = await Promise.all(clients.map((c) => one(c, "SELECT @i AS i")));
    answers.forEach((r, i) => assert.equal(Number(r.i), i));

    ferry.reload(proxyConfig(cluster, `rebalance_ratio = 0${BALANCER}`));
    await new Promise((r) => setTimeout(r, 1200)); // a renewal asked just before the reload may finish
    const moved1 = ferry.moveCounts().moved;
    await new Promise((r) => setTimeout(r, MAX_AGE + 1200));
    assert.equal(ferry.moveCounts().moved, moved1, "sessions still renewed after backend_max_age_ms was removed");
    await Promise.all(clients.map((c) => c.end()));
  });
  it("closes a parked connection (read/write split) past its age; the next statement there gets a fresh one", async () => {
    const [a, b] = cluster.servers;
    // Statements marked READER go to hostgroup 1 (server b); the session's own hostgroup 0 is a.
    ferry.reload(parseConfig(`[proxy]\nlisten = "127.0.0.1:0"\n${EXTRA}
[[servers]]\nhost = "127.0.0.1"\nport = ${a.port}\nhostgroup = 0\n
[[servers]]\nhost = "127.0.0.1"\nport = ${b.port}\nhostgroup = 1\n
[[users]]\nname = "${APP_USER}"\npassword = "${APP_PASSWORD}"\n
[[query_rules]]\nrule_id = 1\nmatch_pattern = "READER"\ndestination_hostgroup = 1\napply = true\n`, "test"));
    const c = await connectVia(ferry.port);
    const onB = async (): Promise<{ port: number; id: number }> => {
      const r = await one(c, "SELECT 'READER' AS r, @@port AS p, CONNECTION_ID() AS id");
      return { port: Number(r.p), id: Number(r.id) };
    };
    const first = await onB();
    assert.equal(first.port, b.port);
    assert.equal(Number((await one(c, "SELECT @@port AS p")).p), a.port); // b's connection is parked now
    await new Promise((r) => setTimeout(r, MAX_AGE + 1200));
    const later = await onB();
    assert.equal(later.port, b.port);
    assert.notEqual(later.id, first.id, "the parked connection outlived backend_max_age_ms");
    await c.end();
  });
  it("renews a lone session on its own server when no other is less loaded", async () => {
    // Without the replaced connection discounted, its own server would score one session worse and
    // every renewal would flip the session to the other server.
    ferry.reload(proxyConfig(cluster, EXTRA));
    const c = await connectVia(ferry.port);
    const home = Number((await one(c, "SELECT @@port AS p")).p);
    const ids = new Set<number>([await backendId(c)]);
    assert.ok(await waitFor(async () => {
      const r = await one(c, "SELECT @@port AS p, CONNECTION_ID() AS id");
      assert.equal(Number(r.p), home, "the renewal moved a lone session to another server");
      ids.add(Number(r.id));
      return ids.size >= 3;
    }, 6000), `renewals seen: ${ids.size - 1}`);
    await c.end();
  });
});
