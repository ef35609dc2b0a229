// TLS certificate for client connections (configured, or self-signed at start) and the RSA key
// pair caching_sha2_password uses to receive passwords on connections without TLS. A reload
// (SIGHUP) reads configured files again, so rotated certificates take effect for new
// connections; connections already encrypted keep theirs.

import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import tls from "node:tls";

export interface TlsMaterial extends TlsPems {
  context: tls.SecureContext | null;
}

/** TLS material as text, as Ferry's processes pass it to each other (a SecureContext cannot cross). */
export interface TlsPems {
  /** the certificate and key clients get (null: TLS off) */
  cert: string | null;
  key: string | null;
  rsaPublicKey: string;
  rsaPrivateKey: string;
  /** what it was made from: the settings and the configured files' contents */
  source: string;
  /** the RSA key pair was generated at start (no files configured) */
  rsaGenerated: boolean;
  /** the keys of TLS session tickets (48 bytes, base64): the same in every Ferry process, so a client resumes in any */
  ticketKeys: string;
}

export interface TlsSettings {
  enabled: boolean;
  cert?: string;
  key?: string;
  rsa_private_key?: string;
  rsa_public_key?: string;
}

/** The settings with the contents of the files they name: equal sources make equal material. */
function sourceOf(s: TlsSettings): string {
  const h = createHash("sha256").update(JSON.stringify(s));
  for (const f of [s.cert, s.key, s.rsa_private_key, s.rsa_public_key]) if (f) h.update(readFileSync(f));
  return h.digest("hex");
}

/** `previous`: a reload keeps its generated RSA key pair, which clients may have fetched already. */
export async function loadTlsMaterial(s: TlsSettings, previous: TlsMaterial | null = null): Promise<TlsMaterial> {
  const source = sourceOf(s);
  let cert: string | null = null, key: string | null = null;
  if (s.enabled) {
    if (s.cert && s.key) {
      cert = readFileSync(s.cert, "utf8");
      key = readFileSync(s.key, "utf8");
    } else {
      // Loaded here: only a process that generates a certificate needs it (workers receive PEMs).
      const { generate } = await import("selfsigned");
      const pems = await generate([{ name: "commonName", value: "ferry" }], { keySize: 2048, algorithm: "sha256", notAfterDate: new Date(Date.now() + 3650 * 86_400_000) });
      cert = pems.cert;
      key = pems.private;
    }
  }
  let rsaPublicKey: string, rsaPrivateKey: string;
  const rsaGenerated = !(s.rsa_private_key && s.rsa_public_key);
  if (s.rsa_private_key && s.rsa_public_key) {
    rsaPrivateKey = readFileSync(s.rsa_private_key, "utf8");
    rsaPublicKey = readFileSync(s.rsa_public_key, "utf8");
    createPrivateKey(rsaPrivateKey); // refused here, not at a client's first full authentication
    createPublicKey(rsaPublicKey);
  } else if (previous?.rsaGenerated) {
    rsaPublicKey = previous.rsaPublicKey;
    rsaPrivateKey = previous.rsaPrivateKey;
  } else {
    const kp = generateKeyPairSync("rsa", { modulusLength: 2048, publicKeyEncoding: { type: "spki", format: "pem" }, privateKeyEncoding: { type: "pkcs8", format: "pem" } });
    rsaPublicKey = kp.publicKey;
    rsaPrivateKey = kp.privateKey;
  }
  const ticketKeys = previous?.ticketKeys ?? randomBytes(48).toString("base64");
  return tlsMaterialOf({ cert, key, rsaPublicKey, rsaPrivateKey, source, rsaGenerated, ticketKeys });
}

export function tlsMaterialOf(p: TlsPems): TlsMaterial {
  const context = p.cert !== null && p.key !== null
    ? tls.createSecureContext({ cert: p.cert, key: p.key, minVersion: "TLSv1.2", ticketKeys: Buffer.from(p.ticketKeys, "base64") })
    : null;
  return { ...pemsOf(p), context };
}

/** The sendable part of `m`. */
export function pemsOf(m: TlsPems): TlsPems {
  return { cert: m.cert, key: m.key, rsaPublicKey: m.rsaPublicKey, rsaPrivateKey: m.rsaPrivateKey, source: m.source, rsaGenerated: m.rsaGenerated, ticketKeys: m.ticketKeys };
}

/**
 * Makes `current` what `s` and its files describe now, in place (the listener and sessions hold
 * it): returns false when nothing changed. Throws, leaving `current` as it was, when a file
 * cannot be read or does not hold a usable certificate or key.
 */
export async function reloadTlsMaterial(current: TlsMaterial, s: TlsSettings): Promise<boolean> {
  if (sourceOf(s) === current.source) return false;
  Object.assign(current, await loadTlsMaterial(s, current));
  return true;
}
