import assert from "node:assert/strict";
import { it } from "node:test";
import pino from "pino";
import { MoveControl } from "../../src/session/move-control.js";
import { MoveSlots } from "../../src/session/migrator.js";
import type { Session } from "../../src/session/session.js";

/** A session with no backend and no server to move to: every move fails at once. */
function lostSession() {
  const slots = new MoveSlots(4);
  const s = {
    isClosed: false, atMovableBoundary: true, hasBackend: false, backend: null, backendAddress: null, lostFrom: "10.0.0.1:3306",
    hostgroup: 0, homeHostgroup: 0, labels: null, tracker: { schema: null }, log: pino({ level: "silent" }),
    deps: { moves: slots, router: { candidates: () => [] }, config: () => ({ proxy: { reconnect_timeout_ms: 60_000 } }) },
    beginBusy() { this.atMovableBoundary = false; },
    endBusy() { this.atMovableBoundary = true; },
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
  s.beginBusy = function () {
    this.atMovableBoundary = false;
    ahead = 40;
  };
  const endBusy = s.endBusy;
  s.endBusy = function () {
    endBusy.call(this);
    ahead = 0; // the clock the timer sees
  };
  mover.request("backend-lost");
  assert.ok(await until(() => slots.failed >= 3, 2000), `the early retries ran again, saw ${slots.failed} attempts`);
  s.isClosed = true;
  mover.clear();
});
