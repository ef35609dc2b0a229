// Unix sockets on both sides. proxy.socket: Ferry listens on a Unix socket as well as on TCP, for
// local clients (the way a MariaDB server offers both). A server whose host is a path: Ferry
// reaches it over its socket. Real clients (mysql2, the mariadb CLI) against real servers.

import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { statSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import mysql from "mysql2/promise";
import { parseConfig } from "../../src/config/load.js";
import { startFerry, type FerryServer } from "../../src/server.js";
import { APP_PASSWORD, APP_USER, Cluster, connectVia, LogSink, one, portOf, proxyConfig, startProxy, waitFor } from "./harness.js";

const run = promisify(execFile);

describe("Unix socket listener", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  let sock: string;
  let logs: LogSink;
  const extra = () => `socket = "${sock}"\nproxy_protocol_networks = ["localhost"]\n[[routes]]\nclient_addr = "0.0.0.0/0"\ndestination_hostgroup = 7`;

  before(async () => {
    cluster = await Cluster.start(1);
    sock = join(cluster.dir, "ferry.sock");
    ({ ferry, logs } = await startProxy(cluster, extra()));
  });

  after(async () => {
    await ferry?.close();
    await cluster?.stop();
  });

  const viaSocket = (opts: mysql.ConnectionOptions = {}) =>
    mysql.createConnection({ socketPath: sock, user: APP_USER, password: APP_PASSWORD, database: "app", ...opts });

  it("serves mysql2 over the socket with the same results as over TCP, large rows both ways included", async () => {
    // The route sends every TCP client (any IPv4 address) to the empty hostgroup 7; socket clients are 'localhost'.
    await assert.rejects(connectVia(ferry.port), (e: mysql.QueryError) => e.errno === 9001);
    const c = await viaSocket();
    assert.equal(Number((await one(c, "SELECT @@port AS p")).p), cluster.servers[0].port);
    await c.query("CREATE TABLE IF NOT EXISTS blobs (id INT PRIMARY KEY, b LONGBLOB)");
    const big = Buffer.alloc(6 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    await c.execute("REPLACE INTO blobs VALUES (1, ?)", [big]);
    const [text] = (await c.query("SELECT b FROM blobs WHERE id = 1")) as unknown as [{ b: Buffer }[]];
    const [binary] = (await c.execute("SELECT b, LENGTH(b) AS n FROM blobs WHERE id = ?", [1])) as unknown as [{ b: Buffer; n: number }[]];
    assert.ok(text[0].b.equals(big), "text protocol row");
    assert.ok(binary[0].b.equals(big), "binary protocol row");
    assert.equal(Number(binary[0].n), big.length);
    await c.end();
  });

  it("serves the mariadb CLI over the socket", async () => {
    const { stdout } = await run("mariadb", ["--no-defaults", "-S", sock, `-u${APP_USER}`, `-p${APP_PASSWORD}`, "app", "-N", "-B", "-e", "SELECT 1 + 1, @@port"]);
    assert.equal(stdout.trim(), `2\t${cluster.servers[0].port}`);
  });

  it("names socket clients 'localhost', and any local user may connect", async () => {
    await assert.rejects(viaSocket({ password: "wrong" }), (e: mysql.QueryError) =>
      e.errno === 1045 && e.message === `ferry: Access denied for user '${APP_USER}'@'localhost' (using password: YES)`);
    const mode = statSync(sock).mode & 0o777;
    assert.equal(mode, 0o777, `socket mode ${mode.toString(8)}: any local user may connect, as to the server's socket`);
  });

  it("takes a PROXY header on the socket from a balancer trusted as \"localhost\"", async () => {
    const stream = net.connect(sock);
    stream.write("PROXY TCP4 10.9.9.9 127.0.0.1 5555 6033\r\n");
    await assert.rejects(mysql.createConnection({ stream, user: APP_USER, password: "wrong" }), (e: mysql.QueryError) =>
      e.errno === 1045 && e.message === `ferry: Access denied for user '${APP_USER}'@'10.9.9.9' (using password: YES)`);
    // The relayed address is a TCP client's: the route for every IPv4 address applies (hostgroup 7, empty).
    const routed = net.connect(sock);
    routed.write("PROXY TCP4 10.9.9.9 127.0.0.1 5556 6033\r\n");
    await assert.rejects(mysql.createConnection({ stream: routed, user: APP_USER, password: APP_PASSWORD }), (e: mysql.QueryError) => e.errno === 9001);
  });

  it("keeps its listeners on a reload that moves them, and says they change at restart", async () => {
    ferry.reload(proxyConfig(cluster, `socket = "${join(cluster.dir, "elsewhere.sock")}"`));
    try {
      assert.ok(logs.lines.some((l) => l.includes("proxy.listen and proxy.socket take effect at restart")));
      const c = await viaSocket();
      assert.equal(Number((await one(c, "SELECT 3 AS n")).n), 3);
      await c.end();
    } finally {
      ferry.reload(proxyConfig(cluster, extra()));
    }
  });

  it("replaces a socket file left by a process that died, and refuses one a live process listens on", async () => {
    const logs = new LogSink();
    // Another Ferry on the same socket: refused, and nothing of it keeps running.
    await assert.rejects(startFerry(proxyConfig(cluster, `socket = "${sock}"`), { logLevel: "silent", logDestination: logs }),
      (e: Error) => e.message === `ferry: refused proxy.socket ${sock}: another process is listening on it`);
    // A regular file in the way: refused.
    const file = join(cluster.dir, "not-a-socket");
    writeFileSync(file, "x");
    await assert.rejects(startFerry(proxyConfig(cluster, `socket = "${file}"`), { logLevel: "silent", logDestination: logs }),
      (e: Error) => e.message === `ferry: refused proxy.socket ${file}: the path exists and is not a socket`);
    // A socket file whose listener was killed: replaced.
    const stale = join(cluster.dir, "stale.sock");
    const child = spawn(process.execPath, ["-e", `require("net").createServer().listen(${JSON.stringify(stale)}, () => console.log("up"))`], { stdio: ["ignore", "pipe", "ignore"] });
    await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()));
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    assert.ok(statSync(stale).isSocket(), "the dead process left its socket file");
    const second = await startFerry(proxyConfig(cluster, `socket = "${stale}"`), { logLevel: "silent", logDestination: logs });
    try {
      const c = await mysql.createConnection({ socketPath: stale, user: APP_USER, password: APP_PASSWORD });
      assert.equal(Number((await one(c, "SELECT 7 AS n")).n), 7);
      await c.end();
    } finally {
      await second.close();
    }
    assert.ok(await waitFor(() => ferry.sessions() === 0, 2000));
  });
});

describe("servers reached over their Unix socket", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  let logs: LogSink;
  let viaSocket: number, viaTcp: number;

  /** Server 0 by its socket's path (host starting with "/"), server 1 over TCP; `status` of server 0. */
  const config = (status = "ONLINE") => parseConfig(`[proxy]\nlisten = "127.0.0.1:0"\nbackend_wait_ms = 0\nrebalance_ratio = 0\n[monitor]\nuser = "${APP_USER}"\npassword = "${APP_PASSWORD}"\ninterval_ms = 200\n
[[servers]]\nhost = "${cluster.servers[0].socket}"\nstatus = "${status}"\nmax_connections = 2\n
[[servers]]\nhost = "127.0.0.1"\nport = ${cluster.servers[1].port}\nstatus = "OFFLINE_SOFT"\n
[[users]]\nname = "${APP_USER}"\npassword = "${APP_PASSWORD}"\n`, "test config");

  /** How the server sees the connection: 'localhost' over its socket, an address and port over TCP. */
  const transportOf = async (c: mysql.Connection): Promise<string> =>
    String((await one(c, "SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()")).host);

  before(async () => {
    cluster = await Cluster.start(2);
    [viaSocket, viaTcp] = cluster.servers.map((s) => s.port);
    logs = new LogSink();
    ferry = await startFerry(config(), { logLevel: "debug", logDestination: logs });
  });

  after(async () => {
    await ferry?.close();
    await cluster?.stop();
  });

  it("forwards sessions over the socket (a 6 MB row, prepared statements); the address is the path, the monitor checks it there", async () => {
    const c = await connectVia(ferry.port);
    assert.equal(await portOf(c), viaSocket);
    assert.equal(await transportOf(c), "localhost");
    const big = Buffer.alloc(6 << 20, 7);
    await c.query("CREATE TABLE IF NOT EXISTS sock_blobs (id INT PRIMARY KEY, b LONGBLOB)");
    await c.execute("REPLACE INTO sock_blobs VALUES (1, ?)", [big]);
    const [rows] = (await c.execute("SELECT b FROM sock_blobs WHERE id = ?", [1])) as unknown as [{ b: Buffer }[]];
    assert.ok(rows[0].b.equals(big));
    assert.deepEqual([...ferry.sessionsByServer().keys()], [cluster.servers[0].socket]);
    // the health monitor checks it over the socket too
    assert.ok(await waitFor(() => ferry.health().some((h) => h.address === cluster.servers[0].socket && h.pingMs !== null && h.lastError === null), 5000),
      JSON.stringify(ferry.health()));
    await c.end();
  });

  it("counts max_connections by the path, and moves a session from the socket server to a TCP one", async () => {
    assert.ok(await waitFor(() => ferry.sessions() === 0, 2000));
    const a = await connectVia(ferry.port);
    const b = await connectVia(ferry.port);
    await assert.rejects(connectVia(ferry.port), (e: mysql.QueryError) => e.errno === 9001 && e.message.includes(`every ONLINE server of hostgroup 0 holds its max_connections`));
    await a.query("SET @kept = 'over the socket'");
    // drain the socket server toward the TCP one
    ferry.reload(parseConfig(`[proxy]\nlisten = "127.0.0.1:0"\nbackend_wait_ms = 0\nrebalance_ratio = 0\n
[[servers]]\nhost = "${cluster.servers[0].socket}"\nstatus = "OFFLINE_SOFT"\nmax_connections = 2\n
[[servers]]\nhost = "127.0.0.1"\nport = ${viaTcp}\n
[[users]]\nname = "${APP_USER}"\npassword = "${APP_PASSWORD}"\n`, "test config"));
    for (const c of [a, b]) assert.ok(await waitFor(async () => (await portOf(c)) === viaTcp, 5000), `session ${c.threadId} left the socket server`);
    assert.equal((await one(a, "SELECT @kept AS k")).k, "over the socket");
    assert.match(await transportOf(a), /^127\.0\.0\.1:\d+$/);
    assert.ok(logs.lines.some((l) => l.includes('"msg":"session moved"') && l.includes(`"from":"${cluster.servers[0].socket}"`)), "the move names the socket's path");
    await a.end();
    await b.end();
    ferry.reload(config());
  });
});
