// caching_sha2_password: fast path token = SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce);
// full authentication sends the password in clear over TLS, or RSA-OAEP encrypted (XORed with the
// nonce) with the server's public key.

import { constants, privateDecrypt, publicEncrypt, timingSafeEqual } from "node:crypto";
import { digest, xorRepeat } from "./digest.js";

export const FAST_AUTH_SUCCESS = 0x03;
export const PERFORM_FULL_AUTHENTICATION = 0x04;
export const REQUEST_PUBLIC_KEY = 0x02;

const sha256 = (...parts: Buffer[]): Buffer => digest("sha256", ...parts);

export function sha2Token(password: string, nonce: Buffer): Buffer {
  if (password === "") return Buffer.alloc(0);
  const stage1 = sha256(Buffer.from(password, "utf8"));
  const stage2 = sha256(stage1);
  return xorRepeat(stage1, sha256(stage2, nonce.subarray(0, 20)));
}

export function verifySha2Token(token: Buffer, nonce: Buffer, password: string): boolean {
  const expected = sha2Token(password, nonce);
  return token.length === expected.length && timingSafeEqual(token, expected);
}

/** Client side of the RSA exchange: (password + NUL) XOR nonce, encrypted with RSA-OAEP. */
export function sha2EncryptPassword(password: string, nonce: Buffer, publicKeyPem: string): Buffer {
  const plain = xorRepeat(Buffer.from(password + "\0", "utf8"), nonce.subarray(0, 20));
  return publicEncrypt({ key: publicKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING }, plain);
}

/** Server side of the RSA exchange; returns the password. */
export function sha2DecryptPassword(data: Buffer, nonce: Buffer, privateKeyPem: string): string {
  const plain = xorRepeat(privateDecrypt({ key: privateKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING }, data), nonce.subarray(0, 20));
  const nul = plain.indexOf(0);
  return (nul >= 0 ? plain.subarray(0, nul) : plain).toString("utf8");
}

/** A password sent in clear (over TLS) ends with NUL. */
export function clearPassword(data: Buffer): string {
  const nul = data.indexOf(0);
  return (nul >= 0 ? data.subarray(0, nul) : data).toString("utf8");
}
