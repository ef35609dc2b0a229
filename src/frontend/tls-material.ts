// TLS certificate for client connections (configured, or self-signed at start) and the RSA key
// pair caching_sha2_password uses to receive passwords on connections without TLS.

import { generateKeyPairSync } from "node:crypto";
import { readFileSync } from "node:fs";
import tls from "node:tls";
import { generate } from "selfsigned";

export interface TlsMaterial {
  context: tls.SecureContext | null;
  rsaPublicKey: string;
  rsaPrivateKey: string;
}

export interface TlsSettings {
  enabled: boolean;
  cert?: string;
  key?: string;
  rsa_private_key?: string;
  rsa_public_key?: string;
}

export async function loadTlsMaterial(s: TlsSettings): Promise<TlsMaterial> {
  let context: tls.SecureContext | null = null;
  if (s.enabled) {
    let cert: string, key: string;
    if (s.cert && s.key) {
      cert = readFileSync(s.cert, "utf8");
      key = readFileSync(s.key, "utf8");
    } else {
      const pems = await generate([{ name: "commonName", value: "ferry" }], { keySize: 2048, algorithm: "sha256", notAfterDate: new Date(Date.now() + 3650 * 86_400_000) });
      cert = pems.cert;
      key = pems.private;
    }
    context = tls.createSecureContext({ cert, key, minVersion: "TLSv1.2" });
  }
  let rsaPublicKey: string, rsaPrivateKey: string;
  if (s.rsa_private_key && s.rsa_public_key) {
    rsaPrivateKey = readFileSync(s.rsa_private_key, "utf8");
    rsaPublicKey = readFileSync(s.rsa_public_key, "utf8");
  } else {
    const kp = generateKeyPairSync("rsa", { modulusLength: 2048, publicKeyEncoding: { type: "spki", format: "pem" }, privateKeyEncoding: { type: "pkcs8", format: "pem" } });
    rsaPublicKey = kp.publicKey;
    rsaPrivateKey = kp.privateKey;
  }
  return { context, rsaPublicKey, rsaPrivateKey };
}
