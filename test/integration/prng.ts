// mulberry32: a small seeded generator, so that a failing random test can be replayed from its seed.

export function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

/** n bytes drawn from `rnd`. */
export function seededBytes(rnd: (n: number) => number, n: number): Buffer {
  return Buffer.from(Array.from({ length: n }, () => rnd(256)));
}
