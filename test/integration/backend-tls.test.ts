// TLS from Ferry to the servers (`use_ssl`), with and without certificate verification (`ssl_ca`),
// against a real mariadbd started with its own certificate.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type tls from "node:tls";
import { after, before, describe, it } from "node:test";
import { generate } from "selfsigned";
import type mysql from "mysql2/promise";
import type { FerryServer } from "../../src/server.js";
import { parseConfig } from "../../src/config/load.js";
import { APP_PASSWORD, APP_USER, Cluster, connectVia, one, proxyConfig, startProxy, waitFor, withTimeout } from "./harness.js";

describe("TLS to the servers", () => {
  let cluster: Cluster;
  let serverCa: string;
  let otherCa: string;
  let dir: string;
  const proxies: FerryServer[] = [];

  before(async () => {
    // The server's certificate is self-signed for "localhost" (and 127.0.0.1): it is its own CA.
    dir = mkdtempSync(join(tmpdir(), "ferry-tls-"));
    const mine = await generate([{ name: "commonName", value: "localhost" }], { keySize: 2048, algorithm: "sha256" });
    const other = await generate([{ name: "commonName", value: "localhost" }], { keySize: 2048, algorithm: "sha256" });
    const cert = join(dir, "server.pem"), key = join(dir, "server.key");
    serverCa = join(dir, "server-ca.pem");
    otherCa = join(dir, "other-ca.pem");
    writeFileSync(cert, mine.cert);
    writeFileSync(key, mine.private);
    writeFileSync(serverCa, mine.cert);
    writeFileSync(otherCa, other.cert);
    cluster = await Cluster.start(1, [`--ssl-cert=${cert}`, `--ssl-key=${key}`]);
  });

  after(async () => {
    for (const p of proxies) await p.close();
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const ferryWith = async (serverExtra: string): Promise<FerryServer> => {
    const { ferry } = await startProxy(cluster, "", undefined, {}, serverExtra);
    proxies.push(ferry);
    return ferry;
  };

  it("encrypts the backend connection with use_ssl, and forwards large results over it", async () => {
    const ferry = await ferryWith("use_ssl = true");
    const c = await connectVia(ferry.port);
    try {
      // Session status as the server sees it: the connection from Ferry to the server.
      const cipher = String((await one(c, "SHOW SESSION STATUS LIKE 'Ssl_cipher'")).Value);
      assert.ok(cipher.length > 0, "the server reports a TLS cipher for Ferry's connection");
      const [rows] = await c.query("SELECT seq, REPEAT('z', 1000) AS r FROM seq_1_to_20000");
      assert.equal((rows as unknown[]).length, 20_000);
      const [exec] = await c.execute("SELECT ? + 1 AS n", [41]);
      assert.equal((exec as { n: number }[])[0].n, 42);
    } finally {
      await c.end();
    }
  });

  it("verifies the server's certificate against ssl_ca", async () => {
    const ferry = await ferryWith(`use_ssl = true\nssl_ca = "${serverCa}"`);
    const c = await connectVia(ferry.port);
    try {
      assert.ok(String((await one(c, "SHOW SESSION STATUS LIKE 'Ssl_version'")).Value).startsWith("TLS"));
    } finally {
      await c.end();
    }
  });

  it("refuses a server whose certificate does not chain to ssl_ca: the client gets 9001 naming the reason", async () => {
    const ferry = await ferryWith(`use_ssl = true\nssl_ca = "${otherCa}"`);
    await assert.rejects(withTimeout(connectVia(ferry.port), 15_000, "login"), (e: Error & { errno?: number }) => {
      assert.equal(e.errno, 9001);
      assert.match(e.message, /TLS certificate refused \(ssl_ca .*other-ca\.pem\)/);
      return true;
    });
  });

  it("reads its own certificate files again on reload: new client connections get the new one, open ones keep theirs", async () => {
    const certFile = join(dir, "ferry.pem"), keyFile = join(dir, "ferry.key");
    const first = await generate([{ name: "commonName", value: "ferry-one" }], { keySize: 2048, algorithm: "sha256" });
    const second = await generate([{ name: "commonName", value: "ferry-two" }], { keySize: 2048, algorithm: "sha256" });
    writeFileSync(certFile, first.cert);
    writeFileSync(keyFile, first.private);
    const tlsSection = `[tls]\ncert = "${certFile}"\nkey = "${keyFile}"\n`;
    const users = `[[users]]\nname = "${APP_USER}"\npassword = "${APP_PASSWORD}"\n${tlsSection}`;
    const { ferry, logs } = await startProxy(cluster, "", users);
    proxies.push(ferry);
    const tlsClient = () => connectVia(ferry.port, { ssl: { rejectUnauthorized: false } });
    const commonName = (c: mysql.Connection): string =>
      String((c as unknown as { connection: { stream: tls.TLSSocket } }).connection.stream.getPeerCertificate().subject.CN);
    const before = await tlsClient();
    assert.equal(commonName(before), "ferry-one");
    writeFileSync(certFile, second.cert);
    writeFileSync(keyFile, second.private);
    ferry.reload(proxyConfig(cluster, "", users));
    assert.ok(await waitFor(() => logs.lines.some((l) => l.includes("TLS material reloaded")), 5000));
    const after = await tlsClient();
    assert.equal(commonName(after), "ferry-two");
    assert.equal(commonName(before), "ferry-one", "the open connection keeps its certificate");
    assert.equal(Number((await one(before, "SELECT 1 AS one")).one), 1);
    // A broken key: logged, and new connections keep the last good certificate.
    writeFileSync(keyFile, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n");
    ferry.reload(proxyConfig(cluster, "", users));
    assert.ok(await waitFor(() => logs.lines.some((l) => l.includes("could not reload TLS material")), 5000));
    const third = await tlsClient();
    assert.equal(commonName(third), "ferry-two");
    for (const c of [before, after, third]) await c.end();
  });

  it("refuses ssl_ca without use_ssl, and a missing ssl_ca file, naming the key", () => {
    const cfg = (extra: string) => `[proxy]\nlisten = "127.0.0.1:0"\n[[servers]]\nhost = "127.0.0.1"\nport = 3306\n${extra}\n[[users]]\nname = "${APP_USER}"\npassword = "${APP_PASSWORD}"\n`;
    assert.throws(() => parseConfig(cfg(`ssl_ca = "${serverCa}"`), "t"), /servers\[0\]\.ssl_ca.*needs use_ssl/);
    assert.throws(() => parseConfig(cfg(`use_ssl = true\nssl_ca = "/nonexistent/ca.pem"`), "t"), /servers\[0\]\.ssl_ca.*no such file/);
  });
});
