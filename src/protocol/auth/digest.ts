// Hash and XOR helpers shared by the auth plugins.

import { createHash } from "node:crypto";

export function digest(algorithm: "sha1" | "sha256", ...parts: Buffer[]): Buffer {
  const h = createHash(algorithm);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** a XOR key, the key repeated as needed. */
export function xorRepeat(a: Buffer, key: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ key[i % key.length];
  return out;
}
