// proxy.backend_wait_ms: a new session that no server takes yet waits for one (a failover, a
// restart, Ferry starting before its servers), then gets 9001 saying how long it waited.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type mysql from "mysql2/promise";
import { startFerry, type FerryServer } from "../../src/server.js";
import { Cluster, connectVia, LogSink, one, proxyConfig, startProxy } from "./harness.js";

describe("a new session waiting for a server (proxy.backend_wait_ms)", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  let logs: LogSink;
  const WAIT = "backend_wait_ms = 8000";
  let offline: Record<number, string>;

  before(async () => {
    cluster = await Cluster.start(1);
    offline = { [cluster.servers[0].port]: "OFFLINE_HARD" };
    ({ ferry, logs } = await startProxy(cluster, WAIT, undefined, offline));
  });

  after(async () => {
    await ferry?.close();
    await cluster?.stop();
  });

  const since = (t0: number): number => performance.now() - t0;

  it("logs in once the hostgroup gets an ONLINE server", async () => {
    const t0 = performance.now();
    const login = connectVia(ferry.port);
    await new Promise((r) => setTimeout(r, 700));
    ferry.reload(proxyConfig(cluster, WAIT));
    const c = await login;
    assert.ok(since(t0) >= 650, `logged in after ${since(t0).toFixed(0)} ms, before the server was ONLINE`);
    assert.equal(Number((await one(c, "SELECT 1 + 1 AS n")).n), 2);
    assert.equal(logs.lines.filter((l) => l.includes("no server takes the session yet; waiting for one")).length, 1);
    await c.end();
  });

  it("logs in once a stopped server is back", async () => {
    const server = cluster.servers[0];
    await server.stop();
    const t0 = performance.now();
    const login = connectVia(ferry.port);
    await new Promise((r) => setTimeout(r, 500));
    await server.start();
    const c = await login;
    assert.ok(since(t0) >= 450, `logged in after ${since(t0).toFixed(0)} ms`);
    assert.equal(Number((await one(c, "SELECT @@port AS p")).p), server.port);
    await c.end();
  });

  it("gives up after backend_wait_ms with 9001 saying it waited", async () => {
    ferry.reload(proxyConfig(cluster, "backend_wait_ms = 600", undefined, offline));
    const t0 = performance.now();
    await assert.rejects(connectVia(ferry.port), (e: mysql.QueryError) => {
      assert.equal(e.errno, 9001);
      assert.match(e.message, /^ferry: no backend available: hostgroup 0 has no ONLINE server \(waited \d+ ms for a server: proxy\.backend_wait_ms\)$/);
      return true;
    });
    assert.ok(since(t0) >= 450 && since(t0) < 3000, `refused after ${since(t0).toFixed(0)} ms`);
    // 0: at once, as before
    ferry.reload(proxyConfig(cluster, "backend_wait_ms = 0", undefined, offline));
    const t1 = performance.now();
    await assert.rejects(connectVia(ferry.port), (e: mysql.QueryError) => e.errno === 9001 && !e.message.includes("waited"));
    assert.ok(since(t1) < 400, `refused after ${since(t1).toFixed(0)} ms`);
  });

  it("closing Ferry ends the logins still waiting, at once", async () => {
    const other = await startFerry(proxyConfig(cluster, "backend_wait_ms = 20000", undefined, offline), { logLevel: "silent", logDestination: new LogSink() });
    const login = connectVia(other.port).then(() => "logged in", (e: Error) => e.message);
    await new Promise((r) => setTimeout(r, 400));
    const t0 = performance.now();
    await other.close();
    const outcome = await login;
    assert.ok(since(t0) < 2000, `the login ended ${since(t0).toFixed(0)} ms after close`);
    assert.notEqual(outcome, "logged in");
  });
});
