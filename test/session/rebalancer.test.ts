import assert from "node:assert/strict";
import { it } from "node:test";
import pino from "pino";
import { buildRuntimeConfig } from "../../src/config/runtime-config.js";
import { configSchema } from "../../src/config/schema.js";
import { Router } from "../../src/router/router.js";
import { Rebalancer } from "../../src/session/rebalancer.js";
import { SessionRegistry } from "../../src/session/registry.js";
import type { Session } from "../../src/session/session.js";

function setup(perServer: Record<string, number>, latency: Record<string, number>) {
  const rt = buildRuntimeConfig(configSchema.parse({
    proxy: { rebalance_moves_per_second: 100 },
    servers: Object.keys(perServer).map((host) => ({ host, port: 3306 })),
  }));
  const router = new Router(() => rt);
  for (const [host, ms] of Object.entries(latency)) for (let i = 0; i < 50; i++) router.statsOf(`${host}:3306`).observe(ms);
  const registry = new SessionRegistry();
  const asked: string[] = [];
  for (const [host, n] of Object.entries(perServer)) {
    for (let i = 0; i < n; i++) {
      registry.add({
        id: registry.allocateId(), userName: "app", backendThreadId: 1, backendAddress: `${host}:3306`, hostgroup: 0, isClosed: false, pendingMove: null,
        kill: async () => undefined,
        requestMove(_reason: string, target: { address: string }) { asked.push(`${host}->${target.address.split(":")[0]}`); },
      } as never);
    }
  }
  const rebalancer = new Rebalancer(registry as unknown as SessionRegistry<Session>, () => rt, pino({ level: "silent" }), router);
  return { rebalancer, asked };
}

it("evens out sessions by count when servers answer alike", () => {
  const { rebalancer, asked } = setup({ a: 20, b: 0 }, { a: 0.4, b: 0.5 });
  rebalancer.tick();
  assert.equal(asked.length, 10);
  assert.ok(asked.every((x) => x === "a->b"));
});

it("moves sessions off a server whose round trips are clearly slower, and leaves a balanced pair alone", () => {
  const slow = setup({ a: 10, b: 10 }, { a: 0.5, b: 8 });
  slow.rebalancer.tick();
  // b counts 4.25x as loaded (1 + 0.5 x (8 - 0.5 - 1) / 1): its share drops to about 4 of 20
  assert.equal(slow.asked.length, 6);
  assert.ok(slow.asked.every((x) => x === "b->a"));
  const even = setup({ a: 10, b: 10 }, { a: 0.5, b: 1.2 });
  even.rebalancer.tick();
  assert.deepEqual(even.asked, []);
});
