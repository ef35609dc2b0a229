// Where new sessions go: tenant labels (user?key=value and the ferry_labels connection attribute),
// routes by user name, client address and labels, and the balancer spreading 300 sessions over
// three servers, then rebalancing when a fourth joins.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import mysql from "mysql2/promise";
import { parseConfig } from "../../src/config/load.js";
import { startFerry, type FerryServer } from "../../src/server.js";
import { APP_PASSWORD, APP_USER, Cluster, LogSink, portOf, waitFor } from "./harness.js";

describe("routing new sessions", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  const logs = new LogSink();
  const open: mysql.Connection[] = [];

  const config = (withFourth: boolean) => {
    const [s0, s1, s2, s3] = cluster.servers.map((s) => s.port);
    // latency_weight = 0: under this test's load the servers' round trips differ by chance; the
    // latency factor is unit-tested (test/router, test/session/rebalancer.test.ts)
    return parseConfig(`[proxy]\nlisten = "127.0.0.1:0"\nbackend_wait_ms = 0\nrebalance_ratio = 1.1\nrebalance_moves_per_second = 100\n[balancer]\nlatency_weight = 0\n
[[servers]]\nhost = "127.0.0.1"\nport = ${s0}\nlabels = { tenant = "a" }\n
[[servers]]\nhost = "127.0.0.1"\nport = ${s1}\nlabels = { tenant = "b" }\n
[[servers]]\nhost = "127.0.0.1"\nport = ${s2}\n
[[servers]]\nhost = "127.0.0.1"\nport = ${s2}\nhostgroup = 5\n
[[servers]]\nhost = "127.0.0.1"\nport = ${s3}\nhostgroup = 7\nlabels = { tier = "batch" }\n
${withFourth ? `[[servers]]\nhost = "127.0.0.1"\nport = ${s3}\nhostgroup = 0\nlabels = { tier = "batch" }\n` : ""}
[[users]]\nname = "${APP_USER}"\npassword = "${APP_PASSWORD}"\n
[[users]]\nname = "other"\npassword = "other"\n
[[routes]]\nusername = "other"\ndestination_hostgroup = 5\n
[[routes]]\nclient_addr = "10.0.0.0/8"\ndestination_hostgroup = 9\n
[[routes]]\nclient_addr = "127.0.0.0/8"\nlabels = { tier = "batch" }\ndestination_hostgroup = 7\n`, "test");
  };

  before(async () => {
    cluster = await Cluster.start(4);
    ferry = await startFerry(config(false), { logLevel: "info", logDestination: logs });
  });

  after(async () => {
    await Promise.all(open.map((c) => c.end().catch(() => undefined)));
    await ferry?.close();
    await cluster?.stop();
  });

  const connect = async (opts: mysql.ConnectionOptions = {}): Promise<mysql.Connection> => {
    const c = await mysql.createConnection({ host: "127.0.0.1", port: ferry.port, user: APP_USER, password: APP_PASSWORD, ...opts });
    open.push(c);
    return c;
  };

  it("tenant labels in the user name or a connection attribute pick servers carrying them", async () => {
    const [s0, s1] = cluster.servers.map((s) => s.port);
    for (let i = 0; i < 3; i++) assert.equal(await portOf(await connect({ user: `${APP_USER}?tenant=b` })), s1);
    assert.equal(await portOf(await connect({ connectAttributes: { ferry_labels: "tenant=a" } })), s0);
    // the user name wins over the attribute
    assert.equal(await portOf(await connect({ user: `${APP_USER}?tenant=b`, connectAttributes: { ferry_labels: "tenant=a" } })), s1);
  });

  it("refuses malformed labels (1045) and labels no server carries (9001)", async () => {
    await assert.rejects(connect({ user: `${APP_USER}?tenant` }), (e: { errno: number; message: string }) => {
      assert.equal(e.errno, 1045);
      assert.match(e.message, /^ferry: refused login: malformed tenant labels/);
      return true;
    });
    await assert.rejects(connect({ user: `${APP_USER}?tenant=zzz` }), (e: { errno: number; message: string }) => {
      assert.equal(e.errno, 9001);
      assert.match(e.message, /hostgroup 0 has no ONLINE server with labels \{"tenant":"zzz"\}/);
      return true;
    });
  });

  it("routes pick the hostgroup by user name, client address and labels", async () => {
    const [, , s2, s3] = cluster.servers.map((s) => s.port);
    assert.equal(await portOf(await connect({ user: "other", password: "other", database: "app" })), s2, "user other → hostgroup 5");
    assert.equal(await portOf(await connect({ user: `${APP_USER}?tier=batch` })), s3, "127.0.0.1 with tier=batch → hostgroup 7");
  });

  it("spreads 300 sessions within ±10% over three servers and rebalances when a fourth joins", async () => {
    for (const c of open.splice(0)) await c.end();
    assert.ok(await waitFor(() => ferry.sessions() === 0, 5000));
    const sessions: mysql.Connection[] = [];
    for (let batch = 0; batch < 10; batch++) sessions.push(...(await Promise.all(Array.from({ length: 30 }, () => connect()))));
    const [s0, s1, s2, s3] = cluster.servers.map((s) => `127.0.0.1:${s.port}`);
    const spread = (addresses: string[]): number[] => addresses.map((a) => ferry.sessionsByServer().get(a) ?? 0);
    for (const n of spread([s0, s1, s2])) assert.ok(n >= 90 && n <= 110, `three servers: ${spread([s0, s1, s2])}`);
    ferry.reload(config(true));
    // sessions move at their next command boundary: keep them busy
    let stop = false;
    const loops = sessions.map(async (c) => {
      while (!stop) await c.query("SELECT 1");
    });
    const even = await waitFor(() => spread([s0, s1, s2, s3]).every((n) => n >= 67 && n <= 83), 15_000);
    stop = true;
    await Promise.all(loops);
    assert.ok(even, `four servers: ${spread([s0, s1, s2, s3])}`);
    assert.ok(logs.lines.some((l) => l.includes("rebalancing sessions")));
  });
});
