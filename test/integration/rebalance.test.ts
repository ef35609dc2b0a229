// A server joining a hostgroup receives its share of long-lived sessions, a bounded number per second.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type mysql from "mysql2/promise";
import type { FerryServer } from "../../src/server.js";
import { Cluster, connectVia, proxyConfig, startProxy, waitFor } from "./harness.js";

describe("rebalancing", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  const EXTRA = "rebalance_ratio = 1.25\nrebalance_moves_per_second = 4";

  before(async () => {
    cluster = await Cluster.start(3);
    ({ ferry } = await startProxy(cluster, EXTRA, undefined, { [0]: "ONLINE" }));
  });

  after(async () => {
    await ferry?.close();
    await cluster?.stop();
  });

  it("moves sessions to a server that joins, no more than the configured number per second", async () => {
    const [a, b, c] = cluster.servers;
    ferry.reload(proxyConfig(cluster, EXTRA, undefined, { [c.port]: "OFFLINE_HARD" }));
    const clients: mysql.Connection[] = [];
    for (let i = 0; i < 30; i++) {
      const conn = await connectVia(ferry.port);
      await conn.query(`SET @i = ${i}`);
      clients.push(conn);
    }
    const spread = () => ferry.sessionsByServer();
    assert.equal((spread().get(`127.0.0.1:${a.port}`) ?? 0) + (spread().get(`127.0.0.1:${b.port}`) ?? 0), 30);
    const moved0 = ferry.moveCounts().moved;
    const t0 = Date.now();
    ferry.reload(proxyConfig(cluster, EXTRA)); // c joins
    await new Promise((r) => setTimeout(r, 1500));
    const early = ferry.moveCounts().moved - moved0;
    const seconds = (Date.now() - t0) / 1000;
    assert.ok(early <= 4 * Math.ceil(seconds), `bounded: ${early} moves in ${seconds.toFixed(1)} s`);
    assert.ok(await waitFor(() => (spread().get(`127.0.0.1:${c.port}`) ?? 0) >= 9, 15_000), `c received its share: ${JSON.stringify([...spread()])}`);
    for (const s of [a, b, c]) {
      const n = spread().get(`127.0.0.1:${s.port}`) ?? 0;
      assert.ok(n >= 8 && n <= 12, `server ${s.port} has ${n} of 30 sessions`);
    }
    const answers = await Promise.all(clients.map((conn) => conn.query("SELECT @i AS i")));
    answers.forEach(([rows], i) => assert.equal(Number((rows as { i: number }[])[0].i), i));
    await Promise.all(clients.map((conn) => conn.end()));
  });
});
