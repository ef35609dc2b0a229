import assert from "node:assert/strict";
import { it } from "node:test";
import { performance } from "node:perf_hooks";
import { buildRuntimeConfig, type RuntimeConfig } from "../../src/config/runtime-config.js";
import { configSchema } from "../../src/config/schema.js";
import { LocalSlots } from "../../src/lib/slots.js";
import { homeHostgroup, Router } from "../../src/router/router.js";

const servers = (extra: object[] = []) => [
  { host: "10.0.0.1", port: 3306, labels: { zone: "east" } },
  { host: "10.0.0.2", port: 3306, labels: { zone: "west" } },
  { host: "10.0.0.3", port: 3306, weight: 2, labels: { zone: "east", tenant: "t1" } },
  ...extra,
];

function router(config: object, shared: LocalSlots | null = null) {
  const rt = buildRuntimeConfig(configSchema.parse(config));
  return { rt, router: new Router(() => rt, shared) };
}

/** Takes a place on the server at `address`, as a backend connection opened there does. */
function take(r: Router, rt: RuntimeConfig, address: string): Promise<boolean> {
  return r.acquire(rt.servers.find((x) => x.address === address)!);
}

const order = (r: Router, hg = 0, labels: Record<string, string> | null = null) => r.candidates(hg, labels).map((s) => s.host);

it("prefers fewer connections per weight", async () => {
  const { rt, router: r } = router({ servers: servers() });
  assert.equal(order(r)[0], "10.0.0.3"); // weight 2
  await take(r, rt, "10.0.0.3:3306");
  await take(r, rt, "10.0.0.3:3306");
  await take(r, rt, "10.0.0.1:3306");
  assert.deepEqual(order(r), ["10.0.0.2", "10.0.0.3", "10.0.0.1"]);
});

it("a server clearly slower than the best counts as more loaded; sub-millisecond noise does not", async () => {
  const { rt, router: r } = router({ servers: servers().slice(0, 2), balancer: { latency_weight: 1 } });
  await take(r, rt, "10.0.0.2:3306"); // 10.0.0.1 is ahead on connections
  for (let i = 0; i < 50; i++) { r.statsOf("10.0.0.1:3306").observe(0.3); r.statsOf("10.0.0.2:3306").observe(0.9); }
  assert.equal(order(r)[0], "10.0.0.1", "0.6 ms apart: connections decide");
  for (let i = 0; i < 200; i++) r.statsOf("10.0.0.1:3306").observe(12);
  assert.ok(r.statsOf("10.0.0.1:3306").latencyMs > 10);
  assert.equal(order(r)[0], "10.0.0.2", "12 ms vs 0.9 ms: the fast server wins despite more connections");
});

it("a server's latency stops counting 10 s after its last sample, and its next samples start afresh", async (t) => {
  let now = 1_000_000;
  t.mock.method(performance, "now", () => now);
  const { rt, router: r } = router({ servers: servers().slice(0, 2), balancer: { latency_weight: 1 } });
  await take(r, rt, "10.0.0.2:3306"); // 10.0.0.1 is ahead on connections
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

it("zone affinity, labels filter, status, max_connections and recent failures", async () => {
  const { rt, router: r } = router({ servers: servers([{ host: "10.0.0.4", port: 3306, status: "SHUNNED" }, { host: "10.0.0.5", port: 3306, max_connections: 1 }]), balancer: { zone: "west" } });
  assert.equal(order(r)[0], "10.0.0.2", "same zone first");
  assert.deepEqual(order(r, 0, { tenant: "t1" }), ["10.0.0.3"]);
  assert.ok(!order(r).includes("10.0.0.4"), "shunned servers take no sessions");
  assert.equal(await take(r, rt, "10.0.0.5:3306"), true);
  assert.ok(!order(r).includes("10.0.0.5"), "a full server takes no sessions");
  assert.equal(await take(r, rt, "10.0.0.5:3306"), false, "nor a place past its max_connections");
  assert.equal(r.full(0), false, "other servers have room");
  const one = router({ servers: [{ host: "10.0.0.9", port: 3306, max_connections: 1 }] });
  assert.equal(one.router.full(0), false);
  await take(one.router, one.rt, "10.0.0.9:3306");
  assert.equal(one.router.full(0), true, "its only server holds its max_connections");
  r.reportFailure("10.0.0.2:3306");
  assert.equal(order(r).at(-1), "10.0.0.2", "a server that just refused goes last");
  r.reportFailure("10.0.0.2:3306", 2000, performance.now() - 2001);
  assert.equal(order(r)[0], "10.0.0.2", "its back-off over, it is first again");
});

it("max_connections shared by several processes' routers: one count for the server", async () => {
  const config = { servers: [{ host: "10.0.0.1", port: 3306, max_connections: 3 }, { host: "10.0.0.2", port: 3306, status: "OFFLINE_SOFT" }] };
  const shared = new LocalSlots();
  const a = router(config, shared), b = router(config, shared);
  const addr = "10.0.0.1:3306";
  assert.equal(await take(a.router, a.rt, addr), true);
  assert.equal(await take(b.router, b.rt, addr), true);
  assert.equal(await take(b.router, b.rt, addr), true);
  assert.deepEqual(order(a.router), ["10.0.0.1"], "by its own count, process a still sees room");
  assert.equal(await take(a.router, a.rt, addr), false, "the shared count says no");
  assert.equal(a.router.connectionCount(addr), 1, "and a refused place is not counted");
  b.router.release(addr);
  assert.equal(await take(a.router, a.rt, addr), true, "a place b gave back is a's to take");
  a.router.release("10.0.0.2:3306"); // never taken: nothing to give back
  assert.equal(await take(b.router, b.rt, addr), false);
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

it("scores connections being replaced (renewals) as gone until endLeaving", async () => {
  const { rt, router: r } = router({ servers: servers().slice(0, 2) });
  for (let i = 0; i < 3; i++) await take(r, rt, "10.0.0.1:3306");
  await take(r, rt, "10.0.0.2:3306");
  assert.deepEqual(order(r), ["10.0.0.2", "10.0.0.1"]); // 3 against 1
  r.beginLeaving("10.0.0.1:3306");
  r.beginLeaving("10.0.0.1:3306");
  assert.deepEqual(order(r), ["10.0.0.1", "10.0.0.2"]); // 1 against 1: config order
  r.beginLeaving("10.0.0.2:3306");
  assert.deepEqual(order(r), ["10.0.0.2", "10.0.0.1"]); // 1 against 0
  r.endLeaving("10.0.0.2:3306");
  r.endLeaving("10.0.0.1:3306");
  r.endLeaving("10.0.0.1:3306");
  r.endLeaving("10.0.0.1:3306"); // one more than begun: no effect
  assert.deepEqual(order(r), ["10.0.0.2", "10.0.0.1"]);
  assert.equal(r.connectionCount("10.0.0.1:3306"), 3); // the connections themselves still count for max_connections
});
