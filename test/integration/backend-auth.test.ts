// Ferry logging in to servers whose accounts use other authentication plugins: MariaDB's ed25519
// (signed with the user's plaintext password, on every login, move included), and a plugin Ferry
// does not speak (PAM's dialog), refused with a message that names it.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import mysql from "mysql2/promise";
import { parseConfig } from "../../src/config/load.js";
import { startFerry, type FerryServer } from "../../src/server.js";
import { Cluster, LogSink, one, waitFor } from "./harness.js";

describe("backend authentication plugins", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  const logs = new LogSink();

  /** New sessions go to servers[0] unless it is drained, then to servers[1]. */
  const config = (drainFirst = false) => {
    const [s0, s1] = cluster.servers.map((s) => s.port);
    return parseConfig(`[proxy]\nlisten = "127.0.0.1:0"\n
[[servers]]\nhost = "127.0.0.1"\nport = ${s0}\nstatus = "${drainFirst ? "OFFLINE_SOFT" : "ONLINE"}"\n
[[servers]]\nhost = "127.0.0.1"\nport = ${s1}\nstatus = "${drainFirst ? "ONLINE" : "OFFLINE_SOFT"}"\n
[[users]]\nname = "edu"\npassword = "ed-secret"\ndefault_schema = "app"\n
[[users]]\nname = "edhash"\npassword = "*ED23F67ABEF7B7CEC20DADA9D8549DAB8C40EBB4"\nbackend_user = "edu"\n
[[users]]\nname = "pamu"\npassword = "pam-secret"\n`, "test");
  };

  before(async () => {
    cluster = await Cluster.start(2);
    for (const s of cluster.servers) {
      await s.sql(`INSTALL SONAME 'auth_ed25519'; INSTALL SONAME 'auth_pam';
        CREATE USER 'edu'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('ed-secret'); GRANT ALL ON app.* TO 'edu'@'%';
        CREATE USER 'pamu'@'%' IDENTIFIED VIA pam;`);
    }
    ferry = await startFerry(config(), { logLevel: "debug", logDestination: logs });
  });

  after(async () => {
    await ferry?.close();
    await cluster?.stop();
  });

  const connect = (user: string, password: string) => mysql.createConnection({ host: "127.0.0.1", port: ferry.port, user, password });

  it("logs in to an ed25519 account with the user's password, login after login (each with a new nonce)", async () => {
    for (let i = 0; i < 12; i++) {
      const c = await connect("edu", "ed-secret");
      const r = await one(c, "SELECT CURRENT_USER() AS u, DATABASE() AS d");
      assert.deepEqual([r.u, r.d], ["edu@%", "app"]);
      await c.end();
    }
    const plugin = (await cluster.servers[0].sql("SELECT plugin FROM mysql.user WHERE user = 'edu'")).trim();
    assert.equal(plugin, "ed25519", "the server's account really uses ed25519");
  });

  it("moves an ed25519 session to another server: the new login signs again", async () => {
    const [s0, s1] = cluster.servers.map((s) => s.port);
    const c = await connect("edu", "ed-secret");
    await c.query("SET @keep = 'kept'");
    assert.equal(Number((await one(c, "SELECT @@port AS p")).p), s0);
    ferry.reload(config(true));
    try {
      assert.ok(await waitFor(async () => Number((await one(c, "SELECT @@port AS p")).p) === s1, 10_000), "the session moved");
      assert.equal((await one(c, "SELECT @keep AS k, CURRENT_USER() AS u")).k, "kept");
    } finally {
      ferry.reload(config());
    }
    await c.end();
  });

  it("refuses an ed25519 account when Ferry holds only the native hash: 1045 naming what is missing", async () => {
    await assert.rejects(connect("edhash", "ed-secret"), (e: mysql.QueryError) => {
      assert.equal(e.errno, 1045);
      assert.match(e.message, /^ferry: backend 127\.0\.0\.1:\d+ wants client_ed25519 for 'edu', which needs the plaintext password in Ferry's config \(password or backend_password\)$/);
      return true;
    });
  });

  it("refuses an account whose plugin Ferry does not speak: 1251 naming it, and the server is not blamed", async () => {
    await assert.rejects(connect("pamu", "pam-secret"), (e: mysql.QueryError) => {
      assert.equal(e.errno, 1251);
      assert.match(e.message, /^ferry: backend 127\.0\.0\.1:\d+ wants authentication plugin dialog for 'pamu', which Ferry does not speak \(it speaks mysql_native_password, caching_sha2_password, mysql_clear_password, client_ed25519\)$/);
      return true;
    });
    // One attempt, not one per server: the refusal is the account's, not the server's.
    assert.equal(logs.lines.filter((l) => l.includes("backend connect failed") && l.includes("dialog")).length, 0);
    const c = await connect("edu", "ed-secret");
    await c.end();
  });
});
