import assert from "node:assert/strict";
import { it } from "node:test";
import { movesShare } from "../../src/workers/data-plane.js";

const shares = (total: number, instances: number): number[] => Array.from({ length: instances }, (_, i) => movesShare(total, i, instances));

it("max_concurrent_moves splits over the processes without exceeding the total, each getting at least one", () => {
  assert.deepEqual(shares(64, 1), [64]);
  assert.deepEqual(shares(64, 3), [22, 21, 21]);
  assert.deepEqual(shares(5, 2), [3, 2]);
  for (const [total, n] of [[64, 3], [7, 4], [100, 64], [10_000, 7]]) {
    assert.equal(shares(total, n).reduce((a, b) => a + b, 0), total, `${total} over ${n}`);
  }
  assert.deepEqual(shares(2, 4), [1, 1, 1, 1], "fewer moves than processes: one each");
});
