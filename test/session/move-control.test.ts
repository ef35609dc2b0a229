import assert from "node:assert/strict";
import { it } from "node:test";
import { MoveControl } from "../../src/session/move-control.js";
import { MoveSlots } from "../../src/session/migrator.js";
import type { Session } from "../../src/session/session.js";

/** A session with no backend and no server to move to: every move fails at once. */
function lostSession(levels: string[] = []) {
  const slots = new MoveSlots(4);
  const log = { warn: () => levels.push("warn"), debug: () => levels.push("debug"), info: () => levels.push("info") };
  // The command loop's part MoveControl uses; its methods are called unbound, as the loop's are bound.
  const loop = {
    atMovableBoundary: true,
    beginBusy: () => { loop.atMovableBoundary = false; },
    endBusy: () => { loop.atMovableBoundary = true; },
  };
  const s = {
    isClosed: false, hasBackend: false, backend: null, backendAddress: null, lostFrom: "10.0.0.1:3306",
    hostgroup: 0, homeHostgroup: 0, labels: null, tracker: { schema: null }, log, loop,
    deps: { moves: slots, router: { candidates: () => [] }, config: () => ({ proxy: { reconnect_timeout_ms: 60_000 } }) },
  };
  return { s, slots, mover: new MoveControl(s as unknown as Session) };
}

const until = async (cond: () => boolean, ms: number): Promise<boolean> => {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  return cond();
};

it("retries a failed move with backoff", async () => {
  const { slots, mover, s } = lostSession();
  mover.request("backend-lost");
  assert.ok(await until(() => slots.failed >= 3, 2000), `three attempts within 2 s (100 + 200 ms backoff), saw ${slots.failed}`);
  s.isClosed = true;
  mover.clear();
});

it("a retry timer that fires before Date.now() reaches the retry time is armed again, not dropped", async (t) => {
  // Node's timers count from the event loop's cached time, which can lag Date.now(): the retry then
  // runs a little early. Simulated here by running the clock 40 ms ahead while the move fails.
  const { slots, mover, s } = lostSession();
  const realNow = Date.now;
  let ahead = 40;
  t.mock.method(Date, "now", () => realNow() + ahead);
  s.loop.beginBusy = () => {
    s.loop.atMovableBoundary = false;
    ahead = 40;
  };
  const endBusy = s.loop.endBusy;
  s.loop.endBusy = () => {
    endBusy();
    ahead = 0; // the clock the timer sees
  };
  mover.request("backend-lost");
  assert.ok(await until(() => slots.failed >= 3, 2000), `the early retries ran again, saw ${slots.failed} attempts`);
  s.isClosed = true;
  mover.clear();
});

it("a long outage logs failed attempts as warnings for the first three, then once every twelve", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const levels: string[] = [];
  const { slots, mover, s } = lostSession(levels);
  mover.request("backend-lost");
  for (let i = 0; i < 200 && slots.failed < 24; i++) {
    await new Promise((r) => setImmediate(r)); // the failed attempt settles
    t.mock.timers.tick(5000);
  }
  assert.equal(slots.failed, 24, "24 attempts, each after its backoff");
  const warned = levels.flatMap((l, i) => (l === "warn" ? [i + 1] : []));
  assert.deepEqual(warned, [1, 2, 3, 12, 24]);
  s.isClosed = true;
  mover.clear();
});
