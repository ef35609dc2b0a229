// mysql_native_password: token = SHA1(pw) XOR SHA1(salt + SHA1(SHA1(pw))).
// The stored hash "*HEX" is SHA1(SHA1(pw)); a valid token therefore reveals SHA1(pw) ("stage 1"),
// which is enough to log in to a backend with the same password (DESIGN §4).

import { timingSafeEqual } from "node:crypto";
import { digest, xorRepeat as xor } from "./digest.js";

const sha1 = (...parts: Buffer[]): Buffer => digest("sha1", ...parts);

export function nativeStage1(password: string): Buffer {
  return sha1(Buffer.from(password, "utf8"));
}

/** The token a client sends for a password it knows as SHA1(password). */
export function nativeTokenFromStage1(stage1: Buffer, salt: Buffer): Buffer {
  return xor(stage1, sha1(salt.subarray(0, 20), sha1(stage1)));
}

export function nativeToken(password: string, salt: Buffer): Buffer {
  if (password === "") return Buffer.alloc(0);
  return nativeTokenFromStage1(nativeStage1(password), salt);
}

/** "*" + upper-case hex of SHA1(SHA1(password)), as stored by the server and accepted in Ferry's config. */
export function nativeHash(password: string): string {
  return "*" + sha1(nativeStage1(password)).toString("hex").toUpperCase();
}

export function parseNativeHash(hash: string): Buffer | null {
  if (!/^\*[0-9A-Fa-f]{40}$/.test(hash)) return null;
  return Buffer.from(hash.slice(1), "hex");
}

/**
 * Checks a client token against the stored SHA1(SHA1(pw)). Returns SHA1(pw) when it matches, else null.
 * An empty stored password accepts only an empty token.
 */
export function verifyNativeToken(token: Buffer, salt: Buffer, stage2: Buffer | null): Buffer | null {
  if (stage2 === null) return token.length === 0 ? Buffer.alloc(0) : null;
  if (token.length !== 20) return null;
  const stage1 = xor(token, sha1(salt.subarray(0, 20), stage2));
  return timingSafeEqual(sha1(stage1), stage2) ? stage1 : null;
}
