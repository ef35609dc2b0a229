// client_ed25519 signatures: RFC 8032's test vectors (a 32-byte password is exactly RFC 8032's
// seed), and Node's own Ed25519 on random seeds and nonces as the oracle.

import assert from "node:assert/strict";
import { createPrivateKey, randomBytes, sign } from "node:crypto";
import { it } from "node:test";
import { ed25519Sign } from "../../src/protocol/auth/ed25519.js";

const hex = (s: string): Buffer => Buffer.from(s, "hex");

it("signs RFC 8032's test vectors 1 and 2 exactly", () => {
  assert.equal(ed25519Sign(Buffer.alloc(0), hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")).toString("hex"),
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
  assert.equal(ed25519Sign(hex("72"), hex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")).toString("hex"),
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00");
});

it("agrees with Node's Ed25519 on 30 random 32-byte seeds and nonces, seeds used again included (cached public keys)", () => {
  const seeds = Array.from({ length: 10 }, () => randomBytes(32));
  for (let i = 0; i < 30; i++) {
    const seed = seeds[i % seeds.length];
    const nonce = randomBytes(32);
    const key = createPrivateKey({ key: Buffer.concat([hex("302e020100300506032b657004220420"), seed]), format: "der", type: "pkcs8" });
    assert.equal(ed25519Sign(nonce, seed).toString("hex"), sign(null, nonce, key).toString("hex"), `seed ${seed.toString("hex")}`);
  }
});
