// Authentication, TLS, connection limits and bad input, with real servers behind Ferry.

import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import mysql from "mysql2/promise";
import { nativeHash } from "../../src/protocol/auth/native-password.js";
import { decodeErr } from "../../src/protocol/packets.js";
import type { FerryServer } from "../../src/server.js";
import { readFileSync } from "node:fs";
import { APP_PASSWORD, APP_USER, Cluster, connectVia, LogSink, startProxy, waitFor } from "./harness.js";
import { RawClient } from "./raw-client.js";

const USERS = `
[[users]]
name = "${APP_USER}"
password = "${APP_PASSWORD}"
[[users]]
name = "hashed"
password = "${nativeHash(APP_PASSWORD)}"
backend_user = "${APP_USER}"
[[users]]
name = "limited"
password = "${APP_PASSWORD}"
backend_user = "${APP_USER}"
max_connections = 2
[[users]]
name = "sha2"
password = "${APP_PASSWORD}"
auth_plugin = "caching_sha2_password"
backend_user = "${APP_USER}"
`;

/**
 * The kernel's timer on the established IPv4 socket bound locally to `local` and connected to
 * `remote` (/proc/net/tcp "tr": 0 none, 1 retransmit, 2 keepalive, …); -1 when there is none.
 */
function tcpTimer(local: number, remote: number): number {
  const hex = (n: number): string => n.toString(16).toUpperCase().padStart(4, "0");
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 5 && f[3] === "01" && f[1].endsWith(`:${hex(local)}`) && f[2].endsWith(`:${hex(remote)}`)) return parseInt(f[5].split(":")[0], 16);
  }
  return -1;
}

function rawExchange(port: number, send: Buffer | null, waitMs = 1500): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = net.connect(port, "127.0.0.1");
    s.on("data", (c) => {
      chunks.push(c);
      if (send && chunks.length === 1) s.write(send);
    });
    s.on("error", () => undefined);
    s.on("close", () => resolve(Buffer.concat(chunks)));
    setTimeout(() => s.destroy(), waitMs);
  });
}

describe("authentication, limits and bad input", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  let logs: LogSink;

  before(async () => {
    cluster = await Cluster.start(1);
    ({ ferry, logs } = await startProxy(cluster, "max_connections = 5\nhandshake_timeout_ms = 1000\ntcp_keepalive_ms = 30000", USERS));
  });

  after(async () => {
    await ferry?.close();
    await cluster?.stop();
  });

  it("refuses a wrong password and an unknown user with 1045 / 28000", async () => {
    await assert.rejects(connectVia(ferry.port, { password: "wrong" }), (e: mysql.QueryError) => e.errno === 1045 && e.sqlState === "28000" && /^ferry: Access denied/.test(e.message));
    await assert.rejects(connectVia(ferry.port, { user: "nobody" }), (e: mysql.QueryError) => e.errno === 1045 && e.sqlState === "28000");
  });

  it("logs in with only the mysql_native_password hash stored, and reaches the backend with it", async () => {
    const c = await connectVia(ferry.port, { user: "hashed" });
    const [[r]] = (await c.query("SELECT CURRENT_USER() AS u")) as unknown as [[{ u: string }]];
    assert.equal(r.u, `${APP_USER}@%`);
    await c.end();
  });

  it("caching_sha2_password: full authentication over RSA, then over TLS, then the fast path", async () => {
    // first login without TLS: full authentication with the RSA public key
    const a = await connectVia(ferry.port, { user: "sha2", ssl: undefined, authPlugins: undefined });
    const [[x]] = (await a.query("SELECT 1 AS one")) as unknown as [[{ one: number }]];
    assert.equal(x.one, 1);
    await a.end();
    // later logins take the fast path; with TLS as well
    const b = await connectVia(ferry.port, { user: "sha2", ssl: { rejectUnauthorized: false } });
    const [[y]] = (await b.query("SELECT 2 AS two")) as unknown as [[{ two: number }]];
    assert.equal(y.two, 2);
    await b.end();
    await assert.rejects(connectVia(ferry.port, { user: "sha2", password: "bad" }), (e: mysql.QueryError) => e.errno === 1045);
  });

  it("serves clients over TLS", async () => {
    const c = await connectVia(ferry.port, { ssl: { rejectUnauthorized: false } });
    const [[r]] = (await c.query("SELECT 5 AS five")) as unknown as [[{ five: number }]];
    assert.equal(r.five, 5);
    await c.end();
  });

  it("refuses connections over max_connections with 1040 and keeps serving the others", async () => {
    const held: mysql.Connection[] = [];
    for (let i = 0; i < 5; i++) held.push(await connectVia(ferry.port));
    await assert.rejects(connectVia(ferry.port), (e: mysql.QueryError) => e.errno === 1040);
    const [[r]] = (await held[0].query("SELECT 1 AS ok")) as unknown as [[{ ok: number }]];
    assert.equal(r.ok, 1);
    await Promise.all(held.map((c) => c.end()));
    // the slots free up as Ferry sees the connections close
    for (let i = 0; i < 100 && ferry.sessions() > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(ferry.sessions(), 0);
    const again = await connectVia(ferry.port);
    await again.end();
    for (let i = 0; i < 100 && ferry.sessions() > 0; i++) await new Promise((r) => setTimeout(r, 20));
  });

  it("answers garbage instead of a handshake response with 1043, and stays up", async () => {
    const reply = await rawExchange(ferry.port, Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    const err = reply.subarray(reply.readUIntLE(0, 3) + 4);
    assert.equal(err[4], 0xff);
    assert.equal(err.readUInt16LE(5), 1043);
    const c = await connectVia(ferry.port);
    await c.query("SELECT 1");
    await c.end();
  });

  it("drops a client that never finishes the handshake", async () => {
    const t0 = Date.now();
    const reply = await rawExchange(ferry.port, null, 5000);
    assert.ok(reply.length > 0 && reply[4] === 10, "greeting was sent");
    assert.ok(Date.now() - t0 < 3000, "closed by the handshake timeout");
  });

  it("answers a command packet with a wrong sequence id with 1156 and closes only that client", async () => {
    const other = await connectVia(ferry.port);
    const victim = await connectVia(ferry.port);
    const stream = (victim as unknown as { connection: { stream: net.Socket } }).connection.stream;
    const closed = new Promise<void>((resolve) => stream.once("close", () => resolve()));
    const got: Buffer[] = [];
    stream.on("data", (c: Buffer) => got.push(c));
    stream.write(Buffer.from([0x09, 0, 0, 0x05, 0x03, ...Buffer.from("SELECT 1")]));
    await closed;
    const reply = Buffer.concat(got);
    assert.equal(reply[4], 0xff);
    assert.equal(reply.readUInt16LE(5), 1156);
    const [[r]] = (await other.query("SELECT 7 AS seven")) as unknown as [[{ seven: number }]];
    assert.equal(r.seven, 7);
    await other.end();
    victim.destroy();
  });

  it("refuses unsupported commands with 1047 and keeps the session", async () => {
    const c = await connectVia(ferry.port);
    const stream = (c as unknown as { connection: { stream: net.Socket } }).connection.stream;
    const got = new Promise<Buffer>((resolve) => stream.prependOnceListener("data", (b: Buffer) => resolve(b)));
    stream.write(Buffer.from([0x01, 0, 0, 0, 0x12])); // COM_BINLOG_DUMP
    const reply = await got;
    assert.equal(reply[4], 0xff);
    assert.equal(reply.readUInt16LE(5), 1047);
    assert.match(reply.subarray(13).toString(), /^ferry: refused command 0x12 \(COM_BINLOG_DUMP\)/);
    c.destroy();
  });

  it("refuses a command too short for the id it must carry with 1835, as the server does, and keeps the session", async () => {
    const c = await RawClient.connect(ferry.port, APP_USER, APP_PASSWORD);
    // A short COM_STMT_CLOSE or COM_STMT_SEND_LONG_DATA has no response (the server ignores it):
    // the next packet the client reads must be its next command's answer.
    c.send(0x19, Buffer.from([1]));
    c.send(0x18, Buffer.from([1, 0]));
    assert.equal(await c.queryValue("SELECT 'after close'"), "after close");
    const cases: [number, Buffer, RegExp][] = [
      [0x17, Buffer.from([1, 0]), /^ferry: refused command 0x17 \(COM_STMT_EXECUTE\): malformed packet of 3 bytes, too short to hold a statement id$/],
      [0x1c, Buffer.from([1]), /^ferry: refused command 0x1c \(COM_STMT_FETCH\): malformed packet of 2 bytes, too short to hold a statement id$/],
      [0x1a, Buffer.alloc(0), /^ferry: refused command 0x1a \(COM_STMT_RESET\): malformed packet of 1 byte,/],
      [0xfa, Buffer.from([1, 0, 0, 0, 0]), /^ferry: refused command 0xfa \(COM_STMT_BULK_EXECUTE\): malformed packet of 6 bytes,/],
      [0x0c, Buffer.from([7]), /^ferry: refused command 0x0c \(COM_PROCESS_KILL\): malformed packet of 2 bytes, too short to hold a connection id$/],
    ];
    for (const [cmd, payload, message] of cases) {
      c.send(cmd, payload);
      const err = decodeErr(await c.packet());
      assert.equal(err.errno, 1835);
      assert.equal(err.sqlState, "HY000");
      assert.match(err.message, message);
      assert.equal(await c.queryValue(`SELECT 'after ${cmd}'`), `after ${cmd}`);
    }
    c.close();
  });

  it("sets TCP keepalive on the client's and the backend's connection, unless tcp_keepalive_ms = 0", async () => {
    const off = (await startProxy(cluster, "tcp_keepalive_ms = 0", USERS)).ferry;
    try {
      const timers: number[][] = [];
      for (const f of [ferry, off]) {
        const c = await connectVia(f.port, { enableKeepAlive: false });
        const clientPort = (c as unknown as { connection: { stream: net.Socket } }).connection.stream.localPort!;
        // The server names the backend connection's address: Ferry's end of it.
        const [[row]] = (await c.query("SELECT HOST AS h FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()")) as unknown as [[{ h: string }]];
        const backendPort = Number(row.h.split(":")[1]);
        // Just after a reply the retransmission timer (1) runs until the peer's (delayed) ACK.
        const read = (): number[] => [tcpTimer(f.port, clientPort), tcpTimer(backendPort, cluster.servers[0].port)];
        await waitFor(() => !read().includes(1), 2000);
        timers.push(read());
        await c.end();
      }
      assert.deepEqual(timers, [[2, 2], [0, 0]], "keepalive timer (2) with the default and none (0) with tcp_keepalive_ms = 0: [client side, backend side]");
    } finally {
      await off.close();
    }
  });

  it("refuses a user's connections over its users.max_connections with 1203, COM_CHANGE_USER counted", async () => {
    const limited = { user: "limited", password: APP_PASSWORD };
    const full = (e: mysql.QueryError): boolean =>
      e.errno === 1203 && e.sqlState === "42000" && /^ferry: refused login of user 'limited': it already has 2 connections, its users.max_connections$/.test(e.message);
    const a = await connectVia(ferry.port, limited);
    const b = await connectVia(ferry.port, limited);
    await assert.rejects(connectVia(ferry.port, limited), full);
    // another user is not limited by it, and cannot become that user while it is full
    const other = await connectVia(ferry.port);
    await assert.rejects(other.changeUser(limited), full);
    other.destroy();
    // a place frees when a connection ends, and when a session changes to another user
    await a.end();
    let c: mysql.Connection | null = null;
    assert.ok(await waitFor(async () => (c = await connectVia(ferry.port, limited).catch(() => null)) !== null, 3000));
    await assert.rejects(connectVia(ferry.port, limited), full);
    await b.changeUser({ user: APP_USER, password: APP_PASSWORD });
    const d = await connectVia(ferry.port, limited);
    assert.equal((await b.query("SELECT CURRENT_USER() AS u") as unknown as [[{ u: string }]])[0][0].u.split("@")[0], APP_USER);
    for (const x of [b, c!, d]) await x.end();
    for (let i = 0; i < 100 && ferry.sessions() > 0; i++) await new Promise((r) => setTimeout(r, 20));
  });

  it("re-authenticates COM_CHANGE_USER and refuses a wrong password for it", async () => {
    const c = await connectVia(ferry.port);
    await c.changeUser({ user: "hashed", password: APP_PASSWORD, database: "mysql" });
    const [[r]] = (await c.query("SELECT DATABASE() AS d")) as unknown as [[{ d: string }]];
    assert.equal(r.d, "mysql");
    await assert.rejects(c.changeUser({ user: APP_USER, password: "wrong" }), (e: mysql.QueryError) => e.errno === 1045);
    c.destroy();
  });

  it("never writes passwords or scrambles to the log", () => {
    const all = logs.lines.join("\n");
    assert.ok(logs.lines.length > 5);
    assert.ok(!all.includes(APP_PASSWORD));
    assert.ok(!all.includes(nativeHash(APP_PASSWORD).slice(1)));
  });
});
