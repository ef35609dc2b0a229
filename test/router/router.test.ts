import assert from "node:assert/strict";
import { it } from "node:test";
import { performance } from "node:perf_hooks";
import { buildRuntimeConfig } from "../../src/config/runtime-config.js";
import { configSchema } from "../../src/config/schema.js";
import { homeHostgroup, Router } from "../../src/router/router.js";

const servers = (extra: object[] = []) => [
  { host: "10.0.0.1", port: 3306, labels: { zone: "east" } },
  { host: "10.0.0.2", port: 3306, labels: { zone: "west" } },
  { host: "10.0.0.3", port: 3306, weight: 2, labels: { zone: "east", tenant: "t1" } },
  ...extra,
];

function router(config: object) {
  const rt = buildRuntimeConfig(configSchema.parse(config));
  return { rt, router: new Router(() => rt) };
}

const order = (r: Router, hg = 0, labels: Record<string, string> | null = null) => r.candidates(hg, labels).map((s) => s.host);

it("prefers fewer connections per weight", () => {
  const { router: r } = router({ servers: servers() });
  assert.equal(order(r)[0], "10.0.0.3"); // weight 2
  r.acquire("10.0.0.3:3306");
  r.acquire("10.0.0.3:3306");
  r.acquire("10.0.0.1:3306");
  assert.deepEqual(order(r), ["10.0.0.2", "10.0.0.3", "10.0.0.1"]);
});

it("a server clearly slower than the best counts as more loaded; sub-millisecond noise does not", () => {
  const { router: r } = router({ servers: servers().slice(0, 2), balancer: { latency_weight: 1 } });
  r.acquire("10.0.0.2:3306"); // 10.0.0.1 is ahead on connections
  for (let i = 0; i < 50; i++) { r.statsOf("10.0.0.1:3306").observe(0.3); r.statsOf("10.0.0.2:3306").observe(0.9); }
  assert.equal(order(r)[0], "10.0.0.1", "0.6 ms apart: connections decide");
  for (let i = 0; i < 200; i++) r.statsOf("10.0.0.1:3306").observe(12);
  assert.ok(r.statsOf("10.0.0.1:3306").latencyMs > 10);
  assert.equal(order(r)[0], "10.0.0.2", "12 ms vs 0.9 ms: the fast server wins despite more connections");
});

it("a server's latency stops counting 10 s after its last sample, and its next samples start afresh", (t) => {
  let now = 1_000_000;
  t.mock.method(performance, "now", () => now);
  const { router: r } = router({ servers: servers().slice(0, 2), balancer: { latency_weight: 1 } });
  r.acquire("10.0.0.2:3306"); // 10.0.0.1 is ahead on connections
  const slow = r.statsOf("10.0.0.1:3306"), fast = r.statsOf("10.0.0.2:3306");
  for (let i = 0; i < 50; i++) { slow.observe(12); fast.observe(0.9); }
  assert.equal(order(r)[0], "10.0.0.2", "12 ms against 0.9 ms: the slow server is avoided");
  now += 9_000;
  for (let i = 0; i < 50; i++) fast.observe(0.9); // the other server keeps measuring
  assert.equal(order(r)[0], "10.0.0.2", "9 s after its last sample: still avoided");
  now += 2_000;
  for (let i = 0; i < 50; i++) fast.observe(0.9);
  assert.equal(order(r)[0], "10.0.0.1", "11 s without a sample: its old average no longer counts, connections decide");
  slow.observe(0.5);
  assert.equal(slow.latencyMs, 0.5, "the next sample starts a fresh average, not blended with the old one");
  assert.equal(slow.latencyAt(now), null, "which counts once it has 20 samples");
});

it("zone affinity, labels filter, status, max_connections and recent failures", () => {
  const { router: r } = router({ servers: servers([{ host: "10.0.0.4", port: 3306, status: "SHUNNED" }, { host: "10.0.0.5", port: 3306, max_connections: 1 }]), balancer: { zone: "west" } });
  assert.equal(order(r)[0], "10.0.0.2", "same zone first");
  assert.deepEqual(order(r, 0, { tenant: "t1" }), ["10.0.0.3"]);
  assert.ok(!order(r).includes("10.0.0.4"), "shunned servers take no sessions");
  r.acquire("10.0.0.5:3306");
  assert.ok(!order(r).includes("10.0.0.5"), "a full server takes no sessions");
  r.reportFailure("10.0.0.2:3306");
  assert.equal(order(r).at(-1), "10.0.0.2", "a server that just refused goes last");
  r.reportFailure("10.0.0.2:3306", 2000, performance.now() - 2001);
  assert.equal(order(r)[0], "10.0.0.2", "its back-off over, it is first again");
});

it("routes: first match by user, client address and labels, else the user's default hostgroup", () => {
  const { rt } = router({
    users: [{ name: "app", default_hostgroup: 3 }, { name: "etl" }],
    routes: [
      { username: "etl", destination_hostgroup: 8 },
      { client_addr: "192.168.0.0/16", labels: { tier: "batch" }, destination_hostgroup: 9 },
      { client_addr: "192.168.0.0/16", destination_hostgroup: 4 },
    ],
  });
  const app = rt.users.get("app")!, etl = rt.users.get("etl")!;
  assert.equal(homeHostgroup(rt, etl, "192.168.1.1", {}), 8);
  assert.equal(homeHostgroup(rt, app, "192.168.1.1", { tier: "batch" }), 9);
  assert.equal(homeHostgroup(rt, app, "::ffff:192.168.1.1", {}), 4);
  assert.equal(homeHostgroup(rt, app, "10.1.1.1", { tier: "batch" }), 3);
});
