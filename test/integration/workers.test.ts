// proxy.workers = 2: the primary and a worker process both serve clients. Connections spread over
// both; KILL, the max_connections limits, drains and shutdown act across them; a worker that dies
// is replaced; connection renewal by age and logins waiting for a server work in each.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { TLSSocket } from "node:tls";
import net from "node:net";
import mysql from "mysql2/promise";
import { parseConfig } from "../../src/config/load.js";
import type { FerryServer } from "../../src/server.js";
import { Cluster, connectVia, LogSink, one, portOf, proxyConfig, startProxy, waitFor } from "./harness.js";

const EXTRA = "workers = 2\nrebalance_ratio = 0\ndrain_grace_ms = 60000";
const USERS = `[[users]]\nname = "app"\npassword = "app-secret"\n[[users]]\nname = "other"\npassword = "other"\nmax_connections = 3\n`;

/** Process 0 hands out odd ids, process 1 even ones (registry.ts). */
const processOf = (c: mysql.Connection): number => (c.threadId! - 1) % 2;
const interrupted = (e: mysql.QueryError): boolean => e.errno === 1317;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("worker processes", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  let logs: LogSink;
  const conns: mysql.Connection[] = [];

  before(async () => {
    cluster = await Cluster.start(2);
    // Ferry ids go first in KILL: move the servers' thread ids past the few Ferry ids this test
    // hands out, and apart from each other (a KILL by thread id prefers the killer's own server).
    for (const [n, s] of cluster.servers.entries()) for (let i = 0; i < 40 * (n + 1); i++) await (await connectVia(s.port)).end();
    ({ ferry, logs } = await startProxy(cluster, EXTRA, USERS));
  });

  after(async () => {
    for (const c of conns) c.destroy();
    const pids = ferry?.workerPids() ?? [];
    await ferry?.close();
    // close() resolves once every worker has exited
    for (const pid of pids) assert.equal(alive(pid), false, `worker ${pid} still running after close()`);
    await cluster?.stop();
  });

  const open = async (opts: mysql.ConnectionOptions = {}): Promise<mysql.Connection> => {
    const c = await connectVia(ferry.port, opts);
    conns.push(c);
    return c;
  };

  it("spreads clients over the primary and the worker, each with its own id series", async () => {
    assert.equal(ferry.workerPids().length, 1);
    for (let i = 0; i < 6; i++) await open();
    assert.deepEqual(conns.map(processOf).sort(), [0, 0, 0, 1, 1, 1]);
    for (const c of conns) assert.equal((await one(c, "SELECT 6 * 7 AS x")).x, 42);
    assert.ok(await waitFor(() => ferry.sessions() === 6, 2000), `sessions() summed over both processes: ${ferry.sessions()}`);
    // the worker's log lines reach the destination given to startFerry, through the primary
    const started = (worker: boolean) => logs.lines.filter((l) => l.includes('"msg":"session started"') && l.includes('"worker":1') === worker).length;
    assert.ok(await waitFor(() => started(true) === 3, 2000), "the worker's three sessions logged where the primary logs");
    assert.equal(started(false), 3);
  });

  it("TLS: every process holds the primary's certificate and session ticket keys", async () => {
    // mysql2 keeps TLS sessions per ssl options object and offers the last one when it connects again
    const first = { rejectUnauthorized: false }, second = { rejectUnauthorized: false };
    const secure = [await open({ ssl: first }), await open({ ssl: second }), await open({ ssl: first }), await open({ ssl: first })];
    assert.deepEqual(secure.map(processOf), [0, 1, 0, 1]);
    const streams = secure.map((c) => (c as unknown as { connection: { stream: TLSSocket } }).connection.stream);
    assert.ok(streams.every((s) => s.encrypted));
    // full handshakes with each process: the same certificate
    assert.equal(streams[0].getPeerCertificate().fingerprint256, streams[1].getPeerCertificate().fingerprint256);
    // the primary's session resumed by the primary, then by the worker
    assert.deepEqual(streams.map((s) => s.isSessionReused()), [false, false, true, true]);
    for (const c of secure) assert.equal((await one(c, "SELECT 2 AS x")).x, 2);
  });

  it("KILL reaches a session in the other process, by Ferry id and by backend thread id", async () => {
    const killer = conns.find((c) => processOf(c) === 0)!;
    const victim = await open();
    if (processOf(victim) === 0) await open(); // keep the balance; the test needs a victim in the worker
    const target = conns.find((c) => processOf(c) === 1 && c !== killer)!;
    const running = assert.rejects(target.query("SELECT SLEEP(20)"), interrupted);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    await killer.query(`KILL QUERY ${target.threadId}`);
    await running;
    assert.ok(Date.now() - t0 < 5000);
    // the backend thread id, which only the worker knows
    const backendId = Number((await one(target, "SELECT CONNECTION_ID() AS id")).id);
    assert.ok(backendId > 40, `backend thread id ${backendId} is not also a Ferry id`);
    const again = assert.rejects(target.query("SELECT SLEEP(20)"), interrupted);
    await new Promise((r) => setTimeout(r, 300));
    await killer.query(`KILL QUERY ${backendId}`);
    await again;
    assert.equal((await one(target, "SELECT 3 AS x")).x, 3);
    // another user may not; an id nobody has is unknown
    const other = await open({ user: "other", password: "other" });
    await assert.rejects(other.query(`KILL ${target.threadId}`), (e: mysql.QueryError) => e.errno === 1095 && /not owner of thread/.test(e.message));
    await assert.rejects(killer.query("KILL 999998"), (e: mysql.QueryError) => e.errno === 1094);
    // KILL CONNECTION ends it
    await killer.query(`KILL ${target.threadId}`);
    await assert.rejects(target.query("SELECT 1"));
    conns.splice(conns.indexOf(target), 1);
    conns.splice(conns.indexOf(other), 1);
    other.destroy();
  });

  it("max_connections counts the clients of every process", async () => {
    assert.ok(await waitFor(() => ferry.sessions() === conns.length, 2000));
    const limit = conns.length + 2;
    ferry.reload(proxyConfig(cluster, `${EXTRA}\nmax_connections = ${limit}`, USERS));
    await open();
    await open();
    await assert.rejects(connectVia(ferry.port), (e: mysql.QueryError) => e.errno === 1040);
    ferry.reload(proxyConfig(cluster, EXTRA, USERS));
  });

  it("a drain moves the sessions of both processes", async () => {
    const from = cluster.servers[0].port;
    ferry.reload(proxyConfig(cluster, EXTRA, USERS, { [from]: "OFFLINE_SOFT" }));
    // the worker learns of the drain over IPC, a moment after the primary
    for (const c of conns) assert.ok(await waitFor(async () => (await portOf(c)) === cluster.servers[1].port, 5000), `session ${c.threadId} left the drained server`);
    assert.ok(conns.some((c) => processOf(c) === 0) && conns.some((c) => processOf(c) === 1));
    assert.ok(await waitFor(() => !ferry.sessionsByServer().has(`127.0.0.1:${from}`), 2000), "no session of either process left on it");
    ferry.reload(proxyConfig(cluster, EXTRA, USERS));
  });

  it("a worker that dies is replaced; only its own clients lose their connections", async () => {
    const [pid] = ferry.workerPids();
    process.kill(pid, "SIGKILL");
    const theirs = conns.filter((c) => processOf(c) === 1);
    const ours = conns.filter((c) => processOf(c) === 0);
    assert.ok(theirs.length > 0 && ours.length > 0);
    for (const c of theirs) await assert.rejects(c.query("SELECT 1"));
    for (const c of ours) assert.equal((await one(c, "SELECT 1 AS x")).x, 1);
    assert.ok(await waitFor(() => ferry.workerPids().length === 1 && ferry.workerPids()[0] !== pid, 10_000), "a new worker started");
    // its clients' places are free again, and new clients reach the new worker
    for (const c of theirs) conns.splice(conns.indexOf(c), 1);
    const fresh: mysql.Connection[] = [];
    assert.ok(await waitFor(async () => {
      fresh.push(await open());
      return fresh.some((c) => processOf(c) === 1);
    }, 10_000), "the new worker serves clients");
  });

  it("a PROXY protocol header reaches whichever process serves the connection, unread by the primary", async () => {
    const [s0, s1] = cluster.servers.map((x) => x.port);
    ferry.reload(parseConfig(`[proxy]\nlisten = "127.0.0.1:0"\n${EXTRA}\nproxy_protocol_networks = ["127.0.0.1"]\n
[[servers]]\nhost = "127.0.0.1"\nport = ${s0}\nhostgroup = 0\n[[servers]]\nhost = "127.0.0.1"\nport = ${s1}\nhostgroup = 1\n${USERS}
[[routes]]\nclient_addr = "10.9.9.0/24"\ndestination_hostgroup = 1\n`, "test config"));
    // from no clients at all, connections alternate between the two processes
    for (const c of conns.splice(0)) c.destroy();
    assert.ok(await waitFor(() => ferry.sessions() === 0, 5000));
    const relayed: mysql.Connection[] = [];
    // until both processes serve some (connections go to the least busy one), at most 16
    for (let i = 0; i < 16 && new Set(relayed.map(processOf)).size < 2; i++) {
      // sent at once, as a load balancer does: the header is in the socket before Ferry's greeting
      const sock = net.connect(ferry.port, "127.0.0.1");
      sock.write(`PROXY TCP4 10.9.9.${i + 1} 127.0.0.1 ${40000 + i} 6033\r\n`);
      const c = await mysql.createConnection({ stream: sock, user: "app", password: "app-secret", database: "app" });
      conns.push(c);
      relayed.push(c);
    }
    assert.deepEqual(new Set(relayed.map(processOf)), new Set([0, 1]));
    // routed by the address in the header: hostgroup 1; a client without one stays in hostgroup 0
    for (const c of relayed) assert.equal(await portOf(c), s1, `session ${c.threadId} saw the header`);
    assert.equal(await portOf(await open()), s0);
    ferry.reload(proxyConfig(cluster, EXTRA, USERS));
  });

  it("users.max_connections counts a user's connections in every process", async () => {
    const other = { user: "other", password: "other" };
    const full = (e: mysql.QueryError): boolean => e.errno === 1203 && /users.max_connections/.test(e.message);
    const held: mysql.Connection[] = [];
    for (let i = 0; i < 3; i++) held.push(await open(other));
    assert.deepEqual(new Set(held.map(processOf)), new Set([0, 1]));
    await assert.rejects(connectVia(ferry.port, other), full);
    // a place the worker held frees when its client leaves…
    const inWorker = held.find((c) => processOf(c) === 1)!;
    inWorker.destroy();
    conns.splice(conns.indexOf(inWorker), 1);
    let next: mysql.Connection | null = null;
    assert.ok(await waitFor(async () => (next = await connectVia(ferry.port, other).catch(() => null)) !== null, 3000));
    conns.push(next!);
    await assert.rejects(connectVia(ferry.port, other), full);
    // …and when the worker dies with it
    const [pid] = ferry.workerPids();
    assert.ok([...conns].some((c) => processOf(c) === 1 && c.config.user === "other"), "the worker holds a place of user other");
    process.kill(pid, "SIGKILL");
    assert.ok(await waitFor(async () => {
      const c = await connectVia(ferry.port, other).catch(() => null);
      if (c) conns.push(c);
      return c !== null;
    }, 5000), "the dead worker's places are free again");
  });

  it("a primary that did not run for longer than the watchdog's limit keeps its workers", async () => {
    assert.ok(await waitFor(async () => processOf(await open()) === 1, 10_000), "a worker serves clients");
    const [pid] = ferry.workerPids();
    // The primary (this process) stopped for 11 s: the worker's reports wait in the pipe, and the
    // watchdog's timer runs before they are read.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 11_000);
    await new Promise((r) => setTimeout(r, 2500));
    assert.deepEqual(ferry.workerPids(), [pid], "the worker was not replaced");
    assert.ok(alive(pid));
    const c = await open();
    assert.equal((await one(c, "SELECT 1 AS x")).x, 1);
  });

  it("a worker whose event loop stops answering is killed and replaced", async () => {
    // the worker started in place of the last test's is serving once a new client reaches it
    assert.ok(await waitFor(async () => processOf(await open()) === 1, 10_000), "a worker serves clients");
    const [pid] = ferry.workerPids();
    process.kill(pid, "SIGSTOP"); // as a stuck event loop: no messages, no progress
    try {
      assert.ok(await waitFor(() => !alive(pid) || ferry.workerPids()[0] !== pid, 15_000), "the silent worker was killed");
    } finally {
      if (alive(pid)) process.kill(pid, "SIGCONT");
    }
    assert.ok(await waitFor(() => ferry.workerPids().length === 1 && ferry.workerPids()[0] !== pid, 5000), "another took its place");
  });

  it("a server's max_connections counts the backend connections of every process", async () => {
    // the worker started in place of the last test's serves clients once one reaches it
    assert.ok(await waitFor(async () => processOf(await open()) === 1, 10_000), "a worker serves clients");
    for (const c of conns.splice(0)) c.destroy();
    assert.ok(await waitFor(() => ferry.sessions() === 0, 5000));
    // one place on each of the two servers: two sessions in all, whichever process serves them
    ferry.reload(proxyConfig(cluster, EXTRA, USERS, {}, "max_connections = 1"));
    const held: mysql.Connection[] = [];
    assert.ok(await waitFor(async () => {
      const c = await connectVia(ferry.port).catch(() => null);
      if (c) held.push(c);
      return held.length === 2;
    }, 10_000), "two sessions fit");
    conns.push(...held);
    assert.deepEqual(new Set(held.map(processOf)), new Set([0, 1]));
    const full = (e: mysql.QueryError): boolean => e.errno === 9001 && /max_connections/.test(e.message);
    await assert.rejects(connectVia(ferry.port), full);
    // a place a worker's session held is free once its client leaves
    const inWorker = held.find((c) => processOf(c) === 1)!;
    inWorker.destroy();
    conns.splice(conns.indexOf(inWorker), 1);
    let next: mysql.Connection | null = null;
    assert.ok(await waitFor(async () => (next = await connectVia(ferry.port).catch(() => null)) !== null, 3000));
    conns.push(next!);
    await assert.rejects(connectVia(ferry.port), full);
    ferry.reload(proxyConfig(cluster, EXTRA, USERS));
  });
  it("sessions in either process renew their connections by age, and logins in either wait for a server", async () => {
    for (const c of conns.splice(0)) c.destroy();
    assert.ok(await waitFor(() => ferry.sessions() === 0, 5000));
    ferry.reload(proxyConfig(cluster, `${EXTRA}\nbackend_max_age_ms = 1500`, USERS));
    const both: mysql.Connection[] = [];
    assert.ok(await waitFor(async () => {
      const c = await open();
      if (!both.some((x) => processOf(x) === processOf(c))) both.push(c);
      return both.length === 2;
    }, 10_000), "a session in each process");
    const backendId = async (c: mysql.Connection): Promise<number> => Number((await one(c, "SELECT CONNECTION_ID() AS id")).id);
    for (const [i, c] of both.entries()) await c.query("SET @i = ?", [i]);
    const first = await Promise.all(both.map(backendId));
    for (const [i, c] of both.entries()) {
      assert.ok(await waitFor(async () => (await backendId(c)) !== first[i], 5000), `process ${processOf(c)} renewed its session's connection`);
      assert.equal(Number((await one(c, "SELECT @i AS i")).i), i);
    }

    const WAIT = `${EXTRA}\nbackend_wait_ms = 8000`;
    ferry.reload(proxyConfig(cluster, WAIT, USERS, Object.fromEntries(cluster.servers.map((s) => [s.port, "OFFLINE_HARD"]))));
    await new Promise((r) => setTimeout(r, 300)); // the worker learns of it over IPC
    const t0 = performance.now();
    const logins = Array.from({ length: 4 }, () => connectVia(ferry.port).then((c) => ({ c, ms: performance.now() - t0 })));
    await new Promise((r) => setTimeout(r, 700));
    ferry.reload(proxyConfig(cluster, WAIT, USERS));
    const waited = await Promise.all(logins);
    conns.push(...waited.map((w) => w.c));
    for (const w of waited) assert.ok(w.ms >= 650, `a login done after ${w.ms.toFixed(0)} ms, before any server was ONLINE`);
    assert.deepEqual(new Set(waited.map((w) => processOf(w.c))), new Set([0, 1]), "logins waited in both processes");
    const ports = new Set(cluster.servers.map((s) => s.port));
    for (const w of waited) assert.ok(ports.has(await portOf(w.c)));
    ferry.reload(proxyConfig(cluster, EXTRA, USERS));
  });
});
