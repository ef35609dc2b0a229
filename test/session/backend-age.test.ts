import assert from "node:assert/strict";
import { it } from "node:test";
import { renewalAgeMs } from "../../src/session/backend-age.js";

it("spreads each session's renewal age over the last tenth of backend_max_age_ms", () => {
  const buckets = new Array<number>(10).fill(0);
  for (let id = 1; id <= 200; id++) {
    const ms = renewalAgeMs(id, 60_000);
    assert.ok(ms > 54_000 && ms <= 60_000, `session ${id}: ${ms}`);
    buckets[Math.min(9, Math.floor((60_000 - ms) / 600))]++;
  }
  // 200 consecutive ids: every 600 ms slice of the tenth gets its share (20), give or take a few.
  for (const n of buckets) assert.ok(n >= 15 && n <= 25, `slices: ${buckets.join(" ")}`);
  assert.equal(renewalAgeMs(7, 60_000), renewalAgeMs(7, 60_000)); // the same for a session every time
});
