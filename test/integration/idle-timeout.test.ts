// Idle clients: Ferry closes a session idle past its wait_timeout as the server closes a direct
// connection (Ferry would otherwise reconnect it when the server drops the backend connection),
// never one running a statement, and proxy.client_idle_timeout_ms caps a longer wait_timeout.

import assert from "node:assert/strict";
import type net from "node:net";
import { after, before, describe, it } from "node:test";
import mysql from "mysql2/promise";
import type { FerryServer } from "../../src/server.js";
import { APP_PASSWORD, APP_USER, Cluster, connectVia, type LogSink, one, proxyConfig, startProxy, waitFor } from "./harness.js";

/** Resolves with ms from now until the connection's socket closes (or rejects after ms). */
function closedWithin(c: mysql.Connection, ms: number): Promise<number> {
  const stream = (c as unknown as { connection: { stream: net.Socket } }).connection.stream;
  c.on("error", () => undefined);
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`still open after ${ms} ms`)), ms);
    stream.once("close", () => {
      clearTimeout(t);
      resolve(Date.now() - t0);
    });
  });
}

describe("idle clients", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  let logs: LogSink;

  before(async () => {
    cluster = await Cluster.start(1);
    ({ ferry, logs } = await startProxy(cluster));
  });

  after(async () => {
    await ferry?.close();
    await cluster?.stop();
  });

  const direct = (opts: mysql.ConnectionOptions = {}) =>
    mysql.createConnection({ host: "127.0.0.1", port: cluster.servers[0].port, user: APP_USER, password: APP_PASSWORD, database: "app", ...opts });
  const appConnections = async (): Promise<number> =>
    Number((await cluster.servers[0].sql(`SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '${APP_USER}'`)).trim());

  it("closes a session idle past its wait_timeout, as the server closes a direct connection", async () => {
    // With session tracking (the server reports the SET) and without (Ferry notes it from the SET).
    const viaFerry = [await connectVia(ferry.port), await connectVia(ferry.port, { flags: ["-SESSION_TRACK"] })];
    const plain = await direct();
    for (const c of [...viaFerry, plain]) await c.query("SET SESSION wait_timeout = 2");
    const times = await Promise.all([...viaFerry, plain].map((c) => closedWithin(c, 8000)));
    for (const t of times) assert.ok(t >= 1900 && t < 4500, `closed after ${times.join(", ")} ms`);
    assert.ok(await waitFor(() => ferry.sessions() === 0, 2000), "Ferry let the sessions go");
    assert.ok(await waitFor(async () => (await appConnections()) === 0, 3000), "no backend connection left on the server");
    assert.ok(logs.lines.some((l) => /idle past its wait_timeout|idle to its wait_timeout/.test(l)));
    assert.ok(!logs.lines.some((l) => l.includes("backend lost while idle; reconnecting")), "not reconnected");
  });

  it("applies the wait_timeout the server gives at login: its default, and interactive_timeout to interactive clients", async () => {
    const server = cluster.servers[0];
    await server.sql("SET GLOBAL wait_timeout = 2");
    // Each session's idle time counts from its login, which comes before the defaults are restored.
    const loggedInAt: number[] = [];
    const login = async (opts: mysql.ConnectionOptions = {}): Promise<mysql.Connection> => {
      const c = await connectVia(ferry.port, opts);
      loggedInAt.push(Date.now());
      return c;
    };
    let batch: mysql.Connection[];
    try {
      batch = [await login(), await login({ flags: ["-SESSION_TRACK"] })];
    } finally {
      await server.sql("SET GLOBAL wait_timeout = 28800");
    }
    await server.sql("SET GLOBAL interactive_timeout = 2");
    let interactive: mysql.Connection[];
    try {
      interactive = [await login({ flags: ["INTERACTIVE"] }), await login({ flags: ["INTERACTIVE", "-SESSION_TRACK"] })];
    } finally {
      await server.sql("SET GLOBAL interactive_timeout = 28800");
    }
    const idle = [...batch, ...interactive];
    const watchedFrom = Date.now();
    const times = (await Promise.all(idle.map((c) => closedWithin(c, 8000)))).map((t, i) => t + watchedFrom - loggedInAt[i]);
    for (const t of times) assert.ok(t >= 1900 && t < 4500, `closed ${times.join(", ")} ms after login`);
    // A session opened after the defaults were restored stays.
    const later = await connectVia(ferry.port, { flags: ["INTERACTIVE"] });
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(Number((await one(later, "SELECT @@wait_timeout AS w")).w), 28800);
    await later.end();
  });

  it("keeps a session that runs a statement longer than wait_timeout, or sends commands more often", async () => {
    const c = await connectVia(ferry.port);
    // 3 s against commands 1 s apart: the test tolerates 2 s of stall on a loaded machine.
    await c.query("SET SESSION wait_timeout = 3");
    assert.equal(Number((await one(c, "SELECT SLEEP(4) AS s")).s), 0);
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(Number((await one(c, "SELECT 1 AS one")).one), 1);
    }
    await c.end();
  });

  it("caps a longer wait_timeout with proxy.client_idle_timeout_ms", async () => {
    ferry.reload(proxyConfig(cluster, "client_idle_timeout_ms = 1500"));
    try {
      const c = await connectVia(ferry.port);
      const plain = await direct();
      assert.equal(Number((await one(c, "SELECT @@wait_timeout AS w")).w), 28800);
      const t = await closedWithin(c, 6000);
      assert.ok(t >= 1400 && t < 3500, `closed after ${t} ms`);
      assert.equal(Number((await one(plain, "SELECT 1 AS one")).one), 1, "a direct connection with the same wait_timeout stays");
      await plain.end();
    } finally {
      ferry.reload(proxyConfig(cluster));
    }
    const c = await connectVia(ferry.port);
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(Number((await one(c, "SELECT 1 AS one")).one), 1, "without the cap the session stays");
    await c.end();
  });
});
