// Connection ids per process (proxy.workers) and KILL's lookups.

import assert from "node:assert/strict";
import { it } from "node:test";
import { SessionRegistry, type Killable } from "../../src/session/registry.js";

const session = (id: number, backendThreadId: number, backendAddress: string | null): Killable =>
  ({ id, userName: "app", backendThreadId, backendAddress, kill: async () => undefined });

it("process k of n hands out k+1, k+1+n, …; an id says which process owns it", () => {
  const regs = [0, 1, 2].map((k) => new SessionRegistry(k, 3));
  assert.deepEqual(regs.map((r) => [r.allocateId(), r.allocateId(), r.allocateId()]), [[1, 4, 7], [2, 5, 8], [3, 6, 9]]);
  for (let id = 1; id <= 30; id++) assert.deepEqual(regs.map((r) => r.owns(id)), [0, 1, 2].map((k) => (id - 1) % 3 === k), `id ${id}`);
  assert.equal(regs[0].owns(0), false);
  const one = new SessionRegistry();
  assert.deepEqual([one.allocateId(), one.allocateId()], [1, 2]);
  assert.equal(one.owns(12345), true);
});

it("finds sessions by Ferry id, by backend thread id, and by thread id on one server", () => {
  const r = new SessionRegistry();
  const a = session(1, 50, "127.0.0.1:3306"), b = session(2, 50, "127.0.0.1:3307"), c = session(3, 60, null);
  for (const s of [a, b, c]) r.add(s);
  assert.equal(r.byId(2), b);
  assert.equal(r.byId(50), null);
  assert.equal(r.byThreadOn(50, "127.0.0.1:3307"), b);
  assert.equal(r.byThreadOn(50, "127.0.0.1:3308"), null);
  assert.equal(r.byThreadId(60), c);
  r.remove(b);
  assert.equal(r.byThreadOn(50, "127.0.0.1:3307"), null);
  assert.equal(r.size, 2);
});
