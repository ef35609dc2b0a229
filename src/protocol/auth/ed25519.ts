// MariaDB's client_ed25519: the server sends a 32-byte nonce, the client answers with the
// Ed25519 signature of that nonce under a key derived from the password. The derivation is
// RFC 8032's with the password in place of the 32-byte seed: az = SHA-512(password), the scalar
// is az[0..32) clamped, the signing prefix az[32..64). Node's crypto only takes 32-byte seeds, so
// the group arithmetic is done here (BigInt, extended twisted Edwards coordinates, the base point's
// multiples in a table of 4-bit windows, each account's public key cached). It runs once per backend
// login of such a user, about a millisecond; nothing on the forwarding path.

import { createHash } from "node:crypto";

const P = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const mod = (a: bigint, m = P): bigint => {
  const r = a % m;
  return r >= 0n ? r : r + m;
};

function pow(base: bigint, exp: bigint): bigint {
  let result = 1n;
  let b = mod(base);
  for (let e = exp; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
  }
  return result;
}

const inverse = (a: bigint): bigint => pow(a, P - 2n);
const D = mod(-121665n * inverse(121666n));

/** A point in extended coordinates: x = X/Z, y = Y/Z, x·y = T/Z. */
interface Point { X: bigint; Y: bigint; Z: bigint; T: bigint }

const BASE_Y = mod(4n * inverse(5n));
const BASE_X = (() => {
  // x² = (y² − 1) / (d·y² + 1); the base point's x is the even root.
  const y2 = (BASE_Y * BASE_Y) % P;
  const x2 = mod((y2 - 1n) * inverse(D * y2 + 1n));
  let x = pow(x2, (P + 3n) / 8n);
  if (mod(x * x - x2) !== 0n) x = (x * pow(2n, (P - 1n) / 4n)) % P;
  return x & 1n ? P - x : x;
})();
const BASE: Point = { X: BASE_X, Y: BASE_Y, Z: 1n, T: (BASE_X * BASE_Y) % P };
const IDENTITY: Point = { X: 0n, Y: 1n, Z: 1n, T: 0n };

/** Unified addition (add-2008-hwcd-3), valid for doubling too. */
function add(p: Point, q: Point): Point {
  const a = mod((p.Y - p.X) * (q.Y - q.X));
  const b = mod((p.Y + p.X) * (q.Y + q.X));
  const c = mod(2n * D * p.T * q.T);
  const d = mod(2n * p.Z * q.Z);
  const e = b - a, f = d - c, g = d + c, h = b + a;
  return { X: mod(e * f), Y: mod(g * h), Z: mod(f * g), T: mod(e * h) };
}

/** TABLE[i][j] = j·16^i·B: a scalar below 2^256 is then at most 64 additions. Built at first use. */
let TABLE: Point[][] | null = null;

function baseTable(): Point[][] {
  if (TABLE !== null) return TABLE;
  const t: Point[][] = [];
  let base = BASE;
  for (let i = 0; i < 64; i++) {
    const row: Point[] = [IDENTITY, base];
    for (let j = 2; j < 16; j++) row.push(add(row[j - 1], base));
    t.push(row);
    base = add(row[15], base);
  }
  return (TABLE = t);
}

function multiplyBase(k: bigint): Point {
  const t = baseTable();
  let result = IDENTITY;
  for (let i = 0, n = k; n > 0n; i++, n >>= 4n) {
    const j = Number(n & 15n);
    if (j !== 0) result = add(result, t[i][j]);
  }
  return result;
}

/** RFC 8032 encoding: y little-endian, the top bit holding x's parity. */
function encode(p: Point): Buffer {
  const zi = inverse(p.Z);
  const x = (p.X * zi) % P;
  const y = (p.Y * zi) % P;
  const out = littleEndian(y, 32);
  if (x & 1n) out[31] |= 0x80;
  return out;
}

function littleEndian(n: bigint, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0, v = n; i < size; i++, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}

function fromLittleEndian(b: Buffer): bigint {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i]);
  return n;
}

const sha512 = (...parts: Buffer[]): Buffer => {
  const h = createHash("sha512");
  for (const p of parts) h.update(p);
  return h.digest();
};

/** Public keys by their key's digest: the same account logs in again and again (moves included). */
const publicKeys = new Map<string, Buffer>();

/** The 64-byte Ed25519 signature of `message` under the key MariaDB derives from `password`. */
export function ed25519Sign(message: Buffer, password: Buffer): Buffer {
  const az = sha512(password);
  az[0] &= 248;
  az[31] &= 63;
  az[31] |= 64;
  const a = fromLittleEndian(az.subarray(0, 32));
  const cacheKey = sha512(az).toString("base64");
  let publicKey = publicKeys.get(cacheKey);
  if (publicKey === undefined) {
    if (publicKeys.size >= 1024) publicKeys.clear();
    publicKey = encode(multiplyBase(a));
    publicKeys.set(cacheKey, publicKey);
  }
  const r = mod(fromLittleEndian(sha512(az.subarray(32, 64), message)), L);
  const R = encode(multiplyBase(r));
  const k = mod(fromLittleEndian(sha512(R, publicKey, message)), L);
  const S = mod(r + k * a, L);
  return Buffer.concat([R, littleEndian(S, 32)]);
}
