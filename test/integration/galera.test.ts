// A 3-node Galera cluster behind Ferry: a rolling restart of every node under a read/write
// workload, with a ledger. Each client inserts unique rows and records those acknowledged;
// afterwards every acknowledged row exists on every node, and no client saw an error. The rows'
// keys are the clients' own (no AUTO_INCREMENT): while the cluster's size changes, Galera gives
// nodes new auto-increment offsets, and two nodes may hand out the same id for a moment. That
// is a certification conflict ("Deadlock found") a direct client would get as well. Then a
// single-writer set (galera_hostgroups) through the writer's failure and return. One cluster
// serves both.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import mysql from "mysql2/promise";
import { parseConfig } from "../../src/config/load.js";
import { startFerry, type FerryServer } from "../../src/server.js";
import { GaleraCluster } from "../../src/cli/local-galera.js";
import { APP_PASSWORD, APP_USER, LogSink, MONITOR_PASSWORD, MONITOR_USER, monitorGrants, one, portOf, waitFor, withTimeout } from "./harness.js";

let galera: GaleraCluster;

before(async () => {
  galera = await GaleraCluster.start(3);
  await galera.nodes[0].sql(`CREATE USER '${APP_USER}'@'%' IDENTIFIED BY '${APP_PASSWORD}'; GRANT ALL ON *.* TO '${APP_USER}'@'%';
    ${monitorGrants}
    CREATE DATABASE app; CREATE TABLE app.ledger (client INT NOT NULL, seq INT NOT NULL, PRIMARY KEY (client, seq));`);
  for (const n of galera.nodes) await galera.waitSynced(n);
});

after(async () => {
  await galera?.stop();
});

/** Every row acknowledged to client i (acked[i]: its seq values) is in `table` on every node. */
async function assertEveryNodeHas(table: string, acked: number[][]): Promise<void> {
  for (const node of galera.nodes) {
    await galera.waitSynced(node);
    const rows = await node.sql(`SELECT client, seq FROM ${table}`);
    const present = new Set(rows.trim().split("\n").map((l) => l.replace("\t", "/")));
    const missing = acked.flatMap((seqs, i) => seqs.filter((s) => !present.has(`${i}/${s}`)).map((s) => `${i}/${s}`));
    assert.deepEqual(missing, [], `node ${node.port} has every acknowledged row of ${table}`);
  }
}

describe("Galera rolling restart through Ferry", () => {
  let ferry: FerryServer;
  const logs = new LogSink();

  const config = (drained: number | null) => parseConfig(`[proxy]\nlisten = "127.0.0.1:0"\nrebalance_ratio = 0\n` +
    `[monitor]\nuser = "${MONITOR_USER}"\npassword = "${MONITOR_PASSWORD}"\ninterval_ms = 200\n` +
    galera.nodes.map((n) => `[[servers]]\nhost = "127.0.0.1"\nport = ${n.port}\nstatus = "${n.port === drained ? "OFFLINE_SOFT" : "ONLINE"}"\n`).join("") +
    `[[users]]\nname = "${APP_USER}"\npassword = "${APP_PASSWORD}"\n`);

  before(async () => {
    ferry = await startFerry(config(null), { logLevel: "info", logDestination: logs });
  });

  after(async () => {
    await ferry?.close();
  });

  it("keeps every acknowledged write and shows no client an error", async () => {
    const CLIENTS = 8;
    const clients = await Promise.all(Array.from({ length: CLIENTS }, () => mysql.createConnection({ host: "127.0.0.1", port: ferry.port, user: APP_USER, password: APP_PASSWORD, database: "app" })));
    const acked: number[][] = clients.map(() => []);
    const errors: string[] = [];
    let stop = false;
    const loops = clients.map(async (c, i) => {
      const deadline = Date.now() + 180_000;
      for (let seq = 0; !stop && Date.now() < deadline; seq++) {
        try {
          await c.query("INSERT INTO ledger (client, seq) VALUES (?, ?)", [i, seq]);
          acked[i].push(seq);
          if (seq % 5 === 0) await c.query("SELECT COUNT(*) AS n FROM ledger WHERE client = ?", [i]);
        } catch (e) {
          errors.push(`client ${i} seq ${seq}: ${(e as Error).message}`);
        }
      }
    });
    await new Promise((r) => setTimeout(r, 500));
    for (const node of galera.nodes) {
      ferry.reload(config(node.port));
      assert.ok(await waitFor(() => !ferry.sessionsByServer().has(`127.0.0.1:${node.port}`), 15_000), `sessions left ${node.port}`);
      await galera.restart(node);
      ferry.reload(config(null));
      await new Promise((r) => setTimeout(r, 300));
    }
    stop = true;
    await Promise.all(loops);
    await Promise.all(clients.map((c) => c.end()));
    assert.deepEqual(errors, []);
    const total = acked.reduce((n, a) => n + a.length, 0);
    assert.ok(total > 200, `the workload ran (${total} acknowledged inserts)`);
    await assertEveryNodeHas("app.ledger", acked);
    assert.ok(logs.lines.filter((l) => l.includes('"result":"moved"')).length >= CLIENTS, "sessions moved during the restart");
  });

  it("shuns a desynced node: its sessions move and new sessions avoid it until it is synced again", async () => {
    const statusOf = (port: number): string | undefined => ferry.config().servers.find((s) => s.address === `127.0.0.1:${port}`)?.status;
    assert.ok(await waitFor(() => galera.nodes.every((n) => statusOf(n.port) === "ONLINE"), 10_000), "all nodes ONLINE after the restarts");
    const clients = await Promise.all(Array.from({ length: 6 }, () => mysql.createConnection({ host: "127.0.0.1", port: ferry.port, user: APP_USER, password: APP_PASSWORD, database: "app" })));
    try {
      // The node to desync is one holding sessions: the balancer weighs nodes by their recent round
      // trips too, and the restarts just before can leave one node's average high for a while.
      const before = await Promise.all(clients.map(portOf));
      const node = galera.nodes.find((n) => n.port === before[0])!;
      const address = `127.0.0.1:${node.port}`;
      await node.sql("SET GLOBAL wsrep_desync = ON");
      assert.ok(await waitFor(() => statusOf(node.port) === "SHUNNED", 5000), "the desynced node is shunned");
      assert.match(ferry.config().servers.find((s) => s.address === address)?.statusReason ?? "", /^galera: desynced/);
      assert.equal(ferry.health().find((h) => h.address === address)?.galera?.desync, true);
      for (const c of clients) assert.ok(await waitFor(async () => (await portOf(c)) !== node.port, 5000), "sessions left the node");
      const fresh = await Promise.all(Array.from({ length: 4 }, () => mysql.createConnection({ host: "127.0.0.1", port: ferry.port, user: APP_USER, password: APP_PASSWORD })));
      assert.ok((await Promise.all(fresh.map(portOf))).every((p) => p !== node.port), "new sessions avoid it");
      await Promise.all(fresh.map((c) => c.end()));
      await node.sql("SET GLOBAL wsrep_desync = OFF");
      assert.ok(await waitFor(() => statusOf(node.port) === "ONLINE", 10_000), "back ONLINE once synced");
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });
});

describe("Galera single-writer hostgroups", () => {
  let ferry: FerryServer;
  const logs = new LogSink();
  const READER = "reporting";
  const READER_PASSWORD = "reporting-secret";
  // node1 is preferred (weight 3); node0 comes before node2 in the config.
  const config = (failback: boolean) => parseConfig(`[proxy]\nlisten = "127.0.0.1:0"\nrebalance_ratio = 0\n` +
    `[monitor]\nuser = "${MONITOR_USER}"\npassword = "${MONITOR_PASSWORD}"\ninterval_ms = 200\n` +
    galera.nodes.map((n, i) => `[[servers]]\nhost = "127.0.0.1"\nport = ${n.port}\nhostgroup = 0\nweight = ${i === 1 ? 3 : 1}\n`).join("") +
    `[[galera_hostgroups]]\nwriter_hostgroup = 0\nreader_hostgroup = 1\nfailback = ${failback}\n` +
    `[[users]]\nname = "${APP_USER}"\npassword = "${APP_PASSWORD}"\ndefault_hostgroup = 0\n` +
    `[[users]]\nname = "${READER}"\npassword = "${READER_PASSWORD}"\ndefault_hostgroup = 1\nbackend_user = "${APP_USER}"\nbackend_password = "${APP_PASSWORD}"\n`);
  const address = (i: number): string => `127.0.0.1:${galera.nodes[i].port}`;
  const writers = (): readonly string[] => ferry.config().galeraWriters.get(0) ?? [];
  const connect = (user = APP_USER, password = APP_PASSWORD) => mysql.createConnection({ host: "127.0.0.1", port: ferry.port, user, password, database: "app" });

  before(async () => {
    for (const n of galera.nodes) await galera.waitSynced(n);
    await galera.nodes[0].sql("CREATE TABLE app.writes (client INT NOT NULL, seq INT NOT NULL, PRIMARY KEY (client, seq))");
    ferry = await startFerry(config(false), { logLevel: "info", logDestination: logs });
  });

  after(async () => {
    await ferry?.close();
  });

  it("sends every session to one writer; when it fails, another takes over, and the sessions follow with their state", async () => {
    assert.deepEqual(writers(), [address(1)], "the highest weight writes");
    const clients = await Promise.all(Array.from({ length: 6 }, () => connect()));
    const reporting = await connect(READER, READER_PASSWORD);
    const acked: number[][] = clients.map(() => []);
    const write = async (round: number): Promise<void> => {
      await Promise.all(clients.map(async (c, i) => {
        await c.query("INSERT INTO writes (client, seq) VALUES (?, ?)", [i, round]);
        acked[i].push(round);
      }));
    };
    try {
      for (const [i, c] of clients.entries()) {
        assert.equal(await portOf(c), galera.nodes[1].port, `client ${i} writes through the writer`);
        await c.query("SET @who = ?", [i]);
      }
      assert.notEqual(await portOf(reporting), galera.nodes[1].port, "the reader hostgroup holds the other nodes");
      await write(0);

      // The writer fails: the monitor shuns it, node0 (first in the config) takes over.
      await galera.nodes[1].crash();
      // A login before the monitor has shunned the writer waits for its successor (backend_wait_ms).
      const early = connect();
      assert.ok(await waitFor(() => writers()[0] === address(0), 15_000), `node0 writes now (writers: ${writers()})`);
      const late = await withTimeout(early, 15_000, "a login during the failover");
      assert.equal(await portOf(late), galera.nodes[0].port, "the login during the failover reached the new writer");
      await late.end();
      for (const [i, c] of clients.entries()) {
        const row = await withTimeout(one(c, "SELECT @who AS who, @@port AS port"), 30_000, `client ${i} after the failover`);
        assert.deepEqual([Number(row.who), Number(row.port)], [i, galera.nodes[0].port], `client ${i} kept its session on the new writer`);
      }
      assert.ok(await waitFor(async () => (await portOf(reporting)) === galera.nodes[2].port, 10_000), "the reading session left node0 for node2");
      await write(1);
      assert.ok(logs.lines.some((l) => l.includes('"msg":"galera: writers changed"') && l.includes(`"from":["${address(1)}"]`) && l.includes(`"to":["${address(0)}"]`)), "the change is logged");

      // The old writer comes back and serves reads; without failback it does not write again. The
      // node that sends it the missing writes (the donor, node0 or node2) is not Synced meanwhile,
      // so writing may pass to node2 for that while: then it stays there.
      await galera.restart(galera.nodes[1]);
      const inReaders = (): boolean => ferry.config().servers.some((s) => s.address === address(1) && s.hostgroup === 1 && s.status === "ONLINE");
      assert.ok(await waitFor(inReaders, 15_000), "node1 is back, in the reader hostgroup");
      const writer = writers()[0];
      assert.ok(writers().length === 1 && writer !== address(1), `one writer, not node1 (writers: ${writers()})`);
      const writerPort = galera.nodes.find((_, i) => address(i) === writer)!.port;
      for (const [i, c] of clients.entries()) {
        assert.ok(await waitFor(async () => (await portOf(c)) === writerPort, 10_000), `client ${i} is on the writer`);
      }
      await write(2);

      // With failback, the preferred node takes writing back, and the sessions move to it.
      ferry.reload(config(true));
      assert.deepEqual(writers(), [address(1)]);
      for (const [i, c] of clients.entries()) {
        assert.ok(await waitFor(async () => (await portOf(c)) === galera.nodes[1].port, 10_000), `client ${i} moved to node1`);
        assert.equal(Number((await one(c, "SELECT @who AS who")).who), i);
      }
      await write(3);
    } finally {
      await Promise.all([...clients, reporting].map((c) => c.end().catch(() => undefined)));
    }
    await assertEveryNodeHas("app.writes", acked);
  });
});
