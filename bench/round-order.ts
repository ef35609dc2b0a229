// Which order the benchmark runs its targets in, round by round.

/**
 * The order of round r: a row of a Williams design, a Latin square in which, over a full cycle,
 * each target runs right after each other target equally often (n rows for an even number of
 * targets; for an odd number, the n rows and their mirrors, taken alternately). A plain rotation
 * keeps every target right after the same one in every round, and what ran just before (the
 * server's threads and caches, the machine's state) can carry over into a run.
 */
export function roundOrder<T>(targets: readonly T[], r: number): T[] {
  const n = targets.length;
  const first = [0];
  for (let lo = 1, hi = n - 1; first.length < n; ) first.push(first.length % 2 === 1 ? lo++ : hi--);
  const row = (j: number): T[] => first.map((i) => targets[(i + j) % n]);
  if (n % 2 === 0) return row(r % n);
  return r % 2 === 0 ? row((r / 2) % n) : row(((r - 1) / 2) % n).reverse();
}
