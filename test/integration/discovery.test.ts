// Servers found at run time: an etcd prefix (Ferry's layout and TiDB's topology layout) and DNS
// (SRV and A records from a test DNS server). Servers that appear take sessions; servers that
// vanish are drained and their sessions carry on elsewhere.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type mysql from "mysql2/promise";
import { parseConfig } from "../../src/config/load.js";
import { startFerry, type FerryServer } from "../../src/server.js";
import { APP_PASSWORD, APP_USER, Cluster, connectVia, LogSink, portOf, waitFor } from "./harness.js";
import { TestDns } from "./dns-server.js";
import { LocalEtcd } from "./etcd.js";

const users = `[[users]]\nname = "${APP_USER}"\npassword = "${APP_PASSWORD}"\n`;

describe("discovery", () => {
  let cluster: Cluster;
  let etcd: LocalEtcd;
  let dns: TestDns;
  const ferries: FerryServer[] = [];
  const clients: mysql.Connection[] = [];

  before(async () => {
    [cluster, etcd, dns] = await Promise.all([Cluster.start(2), LocalEtcd.start(), TestDns.start()]);
  });

  after(async () => {
    for (const c of clients) c.destroy(); // a teardown that cannot wait on a stuck session
    for (const f of ferries) await f.close();
    dns?.close();
    await etcd?.stop();
    await cluster?.stop();
  });

  async function ferryWith(toml: string, logs = new LogSink()): Promise<FerryServer> {
    const f = await startFerry(parseConfig(`[proxy]\nlisten = "127.0.0.1:0"\nrebalance_ratio = 0\n${toml}\n${users}`, "test"), { logLevel: "info", logDestination: logs });
    ferries.push(f);
    return f;
  }

  const addresses = (f: FerryServer, hg = 0): string[] => f.config().servers.filter((s) => s.hostgroup === hg).map((s) => s.address).sort();

  async function client(f: FerryServer): Promise<mysql.Connection> {
    const c = await connectVia(f.port);
    clients.push(c);
    return c;
  }

  it("etcd (Ferry layout): servers put under the prefix join, deleted ones are drained, bad entries are ignored", async () => {
    const [s0, s1] = cluster.servers.map((s) => `127.0.0.1:${s.port}`);
    const logs = new LogSink();
    const f = await ferryWith(`[discovery.etcd]\nendpoints = ["${etcd.endpoint}"]\nprefix = "/ferry-test"\n`, logs);
    const kv = etcd.client();
    try {
      await kv.put(`/ferry-test/servers/0/${s0}`).value(JSON.stringify({ weight: 1, comment: "first" }));
      assert.ok(await waitFor(() => addresses(f).join() === s0, 5000), `s0 discovered: ${addresses(f)}`);
      const c = await client(f);
      assert.equal(await portOf(c), cluster.servers[0].port);
      await c.query("SET @kept = 'yes'");
      await kv.put(`/ferry-test/servers/0/${s1}`).value(JSON.stringify({ labels: { zone: "z2" } }));
      assert.ok(await waitFor(() => addresses(f).length === 2, 5000));
      assert.deepEqual(f.config().servers.find((s) => s.address === s1)?.labels, { zone: "z2" });
      await kv.delete().key(`/ferry-test/servers/0/${s0}`);
      assert.ok(await waitFor(() => addresses(f).join() === s1, 5000), "s0 removed");
      assert.ok(await waitFor(async () => (await portOf(c)) === cluster.servers[1].port, 5000), "the session moved to s1");
      assert.equal((await (await c.query("SELECT @kept AS k"))[0] as { k: string }[])[0].k, "yes");
      await kv.put("/ferry-test/servers/0/not-an-address").value("{}");
      await kv.put(`/ferry-test/servers/x/${s0}`).value("{}");
      await kv.put(`/ferry-test/servers/1/${s0}`).value("{weight: oops");
      assert.ok(await waitFor(() => logs.lines.filter((l) => l.includes("ignoring an etcd entry")).length >= 2, 5000));
      assert.deepEqual(addresses(f, 1), []);
      assert.deepEqual(addresses(f), [s1]);
    } finally {
      kv.close();
    }
  });

  it("etcd (TiDB topology layout): /topology/tidb/<addr>/info entries become servers with their labels", async () => {
    const [s0] = cluster.servers.map((s) => `127.0.0.1:${s.port}`);
    const kv = etcd.client();
    try {
      await kv.put(`/topology/tidb/${s0}/info`).value(JSON.stringify({ version: "8.1.0", status_port: 10080, labels: { zone: "east" } }));
      await kv.put(`/topology/tidb/${s0}/ttl`).value("1700000000000");
      const f = await ferryWith(`[discovery.etcd]\nendpoints = ["${etcd.endpoint}"]\nlayout = "tidb"\nhostgroup = 3\n`);
      assert.ok(await waitFor(() => addresses(f, 3).join() === s0, 5000), `tidb server discovered: ${addresses(f, 3)}`);
      assert.deepEqual(f.config().servers[0].labels, { zone: "east" });
      assert.equal(f.config().servers[0].source, "etcd");
      // the ttl key expires when TiDB stops: the server goes, and comes back with it
      await kv.delete().key(`/topology/tidb/${s0}/ttl`);
      assert.ok(await waitFor(() => addresses(f, 3).length === 0, 5000), "a TiDB without its ttl key is gone");
      await kv.put(`/topology/tidb/${s0}/ttl`).value("1700000000001");
      assert.ok(await waitFor(() => addresses(f, 3).join() === s0, 5000));
    } finally {
      kv.close();
    }
  });

  it("DNS: SRV targets become servers, a removed record drains its server, an outage keeps the last answer; A records too", async () => {
    const [p0, p1] = cluster.servers.map((s) => s.port);
    dns.srv.set("_mysql._tcp.db.test", [{ priority: 10, weight: 1, port: p0, target: "node1.db.test" }, { priority: 10, weight: 1, port: p1, target: "node2.db.test" }]);
    dns.a.set("node1.db.test", ["127.0.0.1"]);
    dns.a.set("node2.db.test", ["127.0.0.1"]);
    dns.a.set("single.db.test", ["127.0.0.1"]);
    const logs = new LogSink();
    const f = await ferryWith(`[[discovery.dns]]\nname = "_mysql._tcp.db.test"\ntype = "SRV"\nresolvers = ["127.0.0.1:${dns.port}"]\ninterval_ms = 200\n
[[discovery.dns]]\nname = "single.db.test"\nport = ${p1}\nhostgroup = 2\nresolvers = ["127.0.0.1:${dns.port}"]\ninterval_ms = 200\nsend_proxy_protocol = true\n`, logs);
    assert.ok(await waitFor(() => addresses(f).length === 2 && addresses(f, 2).length === 1, 5000), `found ${addresses(f)} / ${addresses(f, 2)}`);
    // a source's server settings go to every server it finds
    assert.deepEqual(f.config().servers.map((s) => [s.hostgroup, s.sendProxyProtocol]).sort(), [[0, false], [0, false], [2, true]]);
    const cs = await Promise.all([1, 2, 3, 4].map(() => client(f)));
    const ports = await Promise.all(cs.map(portOf));
    assert.equal(ports.filter((p) => p === p0).length, 2, `spread ${ports}`);
    dns.srv.set("_mysql._tcp.db.test", [{ priority: 10, weight: 1, port: p1, target: "node2.db.test" }]);
    assert.ok(await waitFor(() => addresses(f).join() === `127.0.0.1:${p1}`, 5000), "node1 removed");
    for (const c of cs) assert.ok(await waitFor(async () => (await portOf(c)) === p1, 5000), "sessions moved to node2");
    dns.a.delete("single.db.test");
    assert.ok(await waitFor(() => addresses(f, 2).length === 0, 5000), "NXDOMAIN removes the A-record server");
    // The SRV record answers but its target's address does not: the poll fails, nothing changes.
    dns.unanswered.add("node2.db.test");
    assert.ok(await waitFor(() => logs.lines.some((l) => l.includes("DNS lookup failed; keeping the last answer")), 10_000), "a target lookup timing out fails the poll");
    assert.deepEqual(addresses(f), [`127.0.0.1:${p1}`], "a target that does not answer keeps its last address");
    dns.unanswered.clear();
    const failures = logs.lines.filter((l) => l.includes("DNS lookup failed")).length;
    dns.silent = true;
    const queries = dns.queries;
    assert.ok(await waitFor(() => logs.lines.filter((l) => l.includes("DNS lookup failed; keeping the last answer")).length > failures, 10_000));
    assert.deepEqual(addresses(f), [`127.0.0.1:${p1}`], "an outage does not remove servers");
    assert.equal(dns.queries, queries, "no answers were given during the outage");
    dns.silent = false;
  });
});
