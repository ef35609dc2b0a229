// PROXY protocol on both sides, against real servers: a load balancer (a real HAProxy with
// send-proxy / send-proxy-v2, and hand-written headers through mysql2) tells Ferry whom it
// relays; Ferry routes by that address and, to a server marked send_proxy_protocol, passes it on,
// so MariaDB (started with --proxy-protocol-networks) sees the client, not Ferry.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import mysql from "mysql2/promise";
import { parseConfig } from "../../src/config/load.js";
import { startFerry, type FerryServer } from "../../src/server.js";
import { APP_PASSWORD, APP_USER, Cluster, LogSink, MONITOR_PASSWORD, MONITOR_USER, monitorGrants, one, portOf, waitFor } from "./harness.js";

const SIG = "0d0a0d0a000d0a515549540a";

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** A mysql2 connection whose first bytes are `header`, as a load balancer would send them; `split` writes it a byte at a time. */
async function viaHeader(port: number, header: Buffer, split = false, opts: mysql.ConnectionOptions = {}): Promise<mysql.Connection> {
  const sock = net.connect(port, "127.0.0.1");
  if (!split) sock.write(header);
  else {
    await new Promise<void>((resolve) => sock.once("connect", () => resolve()));
    for (const b of header) {
      sock.write(Buffer.from([b]));
      await new Promise((r) => setTimeout(r, 2));
    }
  }
  return mysql.createConnection({ stream: sock, user: APP_USER, password: APP_PASSWORD, database: "app", ...opts });
}

/** How the server serving `c` sees its client: PROCESSLIST.HOST ("address:port"). */
const seenAs = async (c: mysql.Connection): Promise<string> =>
  String((await one(c, "SELECT HOST AS h FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()")).h);

describe("PROXY protocol", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  const logs = new LogSink();
  let haproxy: ChildProcess | null = null;
  const hap = { v1: 0, v2: 0, plain: 0 };
  const open: mysql.Connection[] = [];
  const keep = (c: mysql.Connection): mysql.Connection => (open.push(c), c);

  const configText = (networks: string): string => {
    const [s0, s1] = cluster.servers.map((s) => s.port);
    return `[proxy]\nlisten = "127.0.0.1:0"\nproxy_protocol_networks = ${networks}\n
[monitor]\nuser = "${MONITOR_USER}"\npassword = "${MONITOR_PASSWORD}"\ninterval_ms = 200\n
[[servers]]\nhost = "127.0.0.1"\nport = ${s0}\nhostgroup = 0\n
[[servers]]\nhost = "127.0.0.1"\nport = ${s1}\nhostgroup = 1\nsend_proxy_protocol = true\n
[[users]]\nname = "${APP_USER}"\npassword = "${APP_PASSWORD}"\n
[[routes]]\nclient_addr = "10.20.0.0/16"\ndestination_hostgroup = 1\n
[[routes]]\nclient_addr = "127.0.0.2"\ndestination_hostgroup = 1\n`;
  };

  before(async () => {
    // Both servers trust Ferry's address for PROXY headers; only servers[1] gets them.
    cluster = await Cluster.start(2, ["--proxy-protocol-networks=127.0.0.1"]);
    for (const s of cluster.servers) await s.sql(monitorGrants);
    ferry = await startFerry(parseConfig(configText(`["127.0.0.1", "::1"]`), "test"), { logLevel: "debug", logDestination: logs });
    // HAProxy in TCP mode in front of Ferry, as a load balancer: v1, v2 and no header.
    hap.v1 = await freePort();
    hap.v2 = await freePort();
    hap.plain = await freePort();
    const cfg = join(cluster.dir, "haproxy.cfg");
    writeFileSync(cfg, `global\n  maxconn 200\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1m\n  timeout server 1m\n
listen v1\n  bind 127.0.0.1:${hap.v1}\n  server ferry 127.0.0.1:${ferry.port} send-proxy\n
listen v2\n  bind 127.0.0.1:${hap.v2}\n  server ferry 127.0.0.1:${ferry.port} send-proxy-v2\n
listen plain\n  bind 127.0.0.1:${hap.plain}\n  server ferry 127.0.0.1:${ferry.port}\n`);
    haproxy = spawn("haproxy", ["-db", "-f", cfg], { stdio: "ignore" });
    const up = await waitFor(() => new Promise<boolean>((resolve) => {
      const s = net.connect(hap.plain, "127.0.0.1", () => { s.destroy(); resolve(true); });
      s.on("error", () => resolve(false));
    }), 10_000);
    assert.ok(up, "haproxy did not start listening");
  });

  after(async () => {
    await Promise.all(open.map((c) => c.end().catch(() => undefined)));
    haproxy?.kill();
    await ferry?.close();
    await cluster?.stop();
  });

  it("routes a relayed client by the address in its header and passes it on to the server", async () => {
    const [s0, s1] = cluster.servers.map((s) => s.port);
    const c = keep(await viaHeader(ferry.port, Buffer.from(`PROXY TCP4 10.20.30.40 127.0.0.1 40001 ${ferry.port}\r\n`)));
    assert.equal(await portOf(c), s1, "routed by the header's 10.20.30.40 to hostgroup 1");
    assert.equal(await seenAs(c), "10.20.30.40:40001", "servers[1] sees the client named in Ferry's own header");
    assert.ok(logs.lines.some((l) => l.includes('"client":"10.20.30.40"') && l.includes('"via":"127.0.0.1"') && l.includes("session started")), "session log names client and proxy");
    // The same address in a version 2 header, IPv6-mapped, cut into single bytes on the wire.
    const v2 = Buffer.from(`${SIG}2121002400000000000000000000ffff0a14ffee00000000000000000000ffff7f000001a4111a2b`, "hex");
    const d = keep(await viaHeader(ferry.port, v2, true));
    assert.equal(await portOf(d), s1);
    assert.equal(await seenAs(d), "10.20.255.238:42001");
    // A TLS client behind the header: the header comes first, then the SSL request.
    const t = keep(await viaHeader(ferry.port, Buffer.from(`PROXY TCP4 10.20.0.9 127.0.0.1 40002 ${ferry.port}\r\n`), false, { ssl: { rejectUnauthorized: false } }));
    assert.equal(await seenAs(t), "10.20.0.9:40002");
    assert.equal((t as unknown as { connection: { stream: { encrypted?: boolean } } }).connection.stream.encrypted, true, "TLS to Ferry");
    // Without a header a local client is itself: hostgroup 0, whose server gets no header.
    const e = keep(await mysql.createConnection({ host: "127.0.0.1", port: ferry.port, user: APP_USER, password: APP_PASSWORD, database: "app" }));
    assert.equal(await portOf(e), s0);
    assert.match(await seenAs(e), /^127\.0\.0\.1:\d+$/);
  });

  it("takes HAProxy's send-proxy and send-proxy-v2 headers", async () => {
    const [s0, s1] = cluster.servers.map((s) => s.port);
    // The client connects from 127.0.0.2 (routed to hostgroup 1); HAProxy connects to Ferry from 127.0.0.1.
    const from2 = (port: number) => mysql.createConnection({
      stream: net.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.2" }), user: APP_USER, password: APP_PASSWORD, database: "app",
    });
    for (const port of [hap.v1, hap.v2]) {
      const c = keep(await from2(port));
      assert.equal(await portOf(c), s1, `via HAProxy port ${port}`);
      const seen = await seenAs(c);
      assert.match(seen, /^127\.0\.0\.2:\d+$/, "the server sees the client, not HAProxy or Ferry");
      const local = (c as unknown as { connection: { stream: net.Socket } }).connection.stream.localPort;
      assert.equal(seen, `127.0.0.2:${local}`, "with the client's own port");
    }
    // Through HAProxy without a header, Ferry sees HAProxy's 127.0.0.1: hostgroup 0.
    assert.equal(await portOf(keep(await from2(hap.plain))), s0);
  });

  it("takes a v1 UNKNOWN or v2 LOCAL header as no relayed address", async () => {
    const [s0] = cluster.servers.map((s) => s.port);
    for (const h of [Buffer.from("PROXY UNKNOWN\r\n"), Buffer.from(`${SIG}20000000`, "hex")]) {
      const c = keep(await viaHeader(ferry.port, h));
      assert.equal(await portOf(c), s0);
    }
  });

  it("refuses a malformed header with 1043 and the reason, and goes on serving", async () => {
    const refused = async (header: Buffer, why: RegExp): Promise<void> => {
      await assert.rejects(viaHeader(ferry.port, header), (e: mysql.QueryError) => {
        assert.equal(e.errno, 1043);
        assert.equal(e.sqlState, "08S01");
        assert.match(e.message, /^ferry: refused PROXY protocol header from 127\.0\.0\.1: /);
        assert.match(e.message, why);
        return true;
      });
    };
    await refused(Buffer.from("PROXY TCP4 10.20.30.40 127.0.0.1 99999 6033\r\n"), /malformed port "99999"/);
    await refused(Buffer.from(`PROXY TCP4 ${"1".repeat(200)}\r\n`), /without CRLF in its first 107 bytes/);
    await refused(Buffer.from(`${SIG}31110000`, "hex"), /announcing version 3/);
    assert.equal(await portOf(keep(await viaHeader(ferry.port, Buffer.from(`PROXY TCP4 10.20.0.1 127.0.0.1 1 2\r\n`)))), cluster.servers[1].port);
  });

  it("survives random bytes behind PROXY signatures at connection start", async () => {
    let seed = 99;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const heads = [Buffer.from("PROXY "), Buffer.from(SIG, "hex"), Buffer.from("PROX"), Buffer.alloc(0)];
    const replies: Buffer[] = [];
    const before = ferry.sessions();
    for (let batch = 0; batch < 15; batch++) {
      await Promise.all(Array.from({ length: 10 }, () => new Promise<void>((resolve) => {
        const tail = Buffer.alloc(rand(300));
        for (let j = 0; j < tail.length; j++) tail[j] = rand(256);
        const s = net.connect(ferry.port, "127.0.0.1");
        const got: Buffer[] = [];
        s.on("data", (c: Buffer) => got.push(c));
        s.on("error", () => undefined);
        s.on("close", () => { replies.push(Buffer.concat(got)); resolve(); });
        s.write(Buffer.concat([heads[rand(heads.length)], tail]));
        setTimeout(() => s.destroy(), 150);
      })));
    }
    assert.equal(replies.length, 150);
    assert.ok(replies.every((r) => r.length > 0 && r[4] === 10), "each got Ferry's greeting");
    const refusals = replies.filter((r) => r.length > r.readUIntLE(0, 3) + 4 + 6 && r[r.readUIntLE(0, 3) + 8] === 0xff);
    assert.ok(refusals.length > 20, `${refusals.length} refused with an ERR`);
    assert.ok(await waitFor(() => ferry.sessions() === before, 2000), "no session left behind");
    assert.ok(!logs.lines.some((l) => /"level":(50|60)/.test(l)), "nothing logged as an error");
    assert.equal(await portOf(keep(await viaHeader(ferry.port, Buffer.from("PROXY TCP4 10.20.1.1 127.0.0.1 1 2\r\n")))), cluster.servers[1].port);
  });

  it("refuses a header from an address not in proxy_protocol_networks with 1130, after a reload", async () => {
    ferry.reload(parseConfig(configText(`["10.0.0.0/8"]`), "test"));
    try {
      await assert.rejects(viaHeader(ferry.port, Buffer.from("PROXY TCP4 10.20.30.40 127.0.0.1 40001 6033\r\n")), (e: mysql.QueryError) => {
        assert.equal(e.errno, 1130);
        assert.equal(e.sqlState, "HY000");
        assert.equal(e.message, "ferry: refused PROXY protocol header from 127.0.0.1: the address is not in proxy.proxy_protocol_networks");
        return true;
      });
      // Clients without a header are not affected.
      assert.equal(await portOf(keep(await mysql.createConnection({ host: "127.0.0.1", port: ferry.port, user: APP_USER, password: APP_PASSWORD }))), cluster.servers[0].port);
    } finally {
      ferry.reload(parseConfig(configText(`["127.0.0.1", "::1"]`), "test"));
    }
    assert.equal(await portOf(keep(await viaHeader(ferry.port, Buffer.from("PROXY TCP4 10.20.30.40 127.0.0.1 40001 6033\r\n")))), cluster.servers[1].port);
  });

  it("sends the monitor's connections to a send_proxy_protocol server with a LOCAL header, which the server accepts", async () => {
    const s1 = `127.0.0.1:${cluster.servers[1].port}`;
    const t0 = Date.now();
    assert.ok(await waitFor(() => ferry.health().some((h) => h.address === s1 && h.lastCheck > t0 + 300), 5000), "monitor checked servers[1]");
    const h = ferry.health().find((x) => x.address === s1)!;
    assert.equal(h.lastError, null);
    assert.equal(h.consecutiveFailures, 0);
    assert.ok(h.pingMs !== null);
    assert.equal(ferry.config().servers.find((s) => s.address === s1)!.status, "ONLINE");
  });
});
