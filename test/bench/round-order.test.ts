import assert from "node:assert/strict";
import { it } from "node:test";
import { roundOrder } from "../../bench/round-order.js";

/** How often each target runs right after each other one within the rounds (the first of a round follows no one). */
function followCounts(n: number, rounds: number): Map<string, number> {
  const targets = Array.from({ length: n }, (_, i) => i);
  const counts = new Map<string, number>();
  for (let r = 0; r < rounds; r++) {
    const order = roundOrder(targets, r);
    assert.deepEqual([...order].sort((a, b) => a - b), targets, `round ${r} runs every target once`);
    for (let i = 1; i < n; i++) counts.set(`${order[i - 1]}>${order[i]}`, (counts.get(`${order[i - 1]}>${order[i]}`) ?? 0) + 1);
  }
  return counts;
}

it("over a full cycle, every target runs right after every other one equally often", () => {
  for (const n of [2, 4, 6]) {
    const c = followCounts(n, n);
    assert.equal(c.size, n * (n - 1), `n=${n}: every ordered pair occurs`);
    assert.ok([...c.values()].every((v) => v === 1), `n=${n}: each once`);
  }
  for (const n of [3, 5]) {
    const c = followCounts(n, 2 * n);
    assert.equal(c.size, n * (n - 1), `n=${n}: every ordered pair occurs`);
    assert.ok([...c.values()].every((v) => v === 2), `n=${n}: each twice over the rows and their mirrors`);
  }
});

it("two targets alternate which goes first", () => {
  assert.deepEqual([0, 1, 2, 3].map((r) => roundOrder(["a", "b"], r)[0]), ["a", "b", "a", "b"]);
});
