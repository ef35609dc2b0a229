// A 3-node Galera cluster behind Ferry: a rolling restart of every node under a read/write
// workload, with a ledger. Each client inserts unique rows and records those acknowledged;
// afterwards every acknowledged row exists on every node, and no client saw an error. The rows'
// keys are the clients' own (no AUTO_INCREMENT): while the cluster's size changes, Galera gives
// nodes new auto-increment offsets, and two nodes may hand out the same id for a moment. That
// is a certification conflict ("Deadlock found") a direct client would get as well.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import mysql from "mysql2/promise";
import { parseConfig } from "../../src/config/load.js";
import { startFerry, type FerryServer } from "../../src/server.js";
import { GaleraCluster } from "../../src/cli/local-galera.js";
import { APP_PASSWORD, APP_USER, LogSink, MONITOR_PASSWORD, MONITOR_USER, monitorGrants, portOf, waitFor } from "./harness.js";

describe("Galera rolling restart through Ferry", () => {
  let galera: GaleraCluster;
  let ferry: FerryServer;
  const logs = new LogSink();

  const config = (drained: number | null) => parseConfig(`[proxy]\nlisten = "127.0.0.1:0"\nrebalance_ratio = 0\n` +
    `[monitor]\nuser = "${MONITOR_USER}"\npassword = "${MONITOR_PASSWORD}"\ninterval_ms = 200\n` +
    galera.nodes.map((n) => `[[servers]]\nhost = "127.0.0.1"\nport = ${n.port}\nstatus = "${n.port === drained ? "OFFLINE_SOFT" : "ONLINE"}"\n`).join("") +
    `[[users]]\nname = "${APP_USER}"\npassword = "${APP_PASSWORD}"\n`);

  before(async () => {
    galera = await GaleraCluster.start(3);
    await galera.nodes[0].sql(`CREATE USER '${APP_USER}'@'%' IDENTIFIED BY '${APP_PASSWORD}'; GRANT ALL ON *.* TO '${APP_USER}'@'%';
      ${monitorGrants}
      CREATE DATABASE app; CREATE TABLE app.ledger (client INT NOT NULL, seq INT NOT NULL, PRIMARY KEY (client, seq));`);
    for (const n of galera.nodes) await galera.waitSynced(n);
    ferry = await startFerry(config(null), { logLevel: "info", logDestination: logs });
  });

  after(async () => {
    await ferry?.close();
    await galera?.stop();
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
    for (const node of galera.nodes) {
      await galera.waitSynced(node);
      const rows = await node.sql("SELECT client, seq FROM app.ledger");
      const present = new Set(rows.trim().split("\n").map((l) => l.replace("\t", "/")));
      const missing = acked.flatMap((seqs, i) => seqs.filter((s) => !present.has(`${i}/${s}`)).map((s) => `${i}/${s}`));
      assert.deepEqual(missing, [], `node ${node.port} has every acknowledged row`);
    }
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
