// Faults of a backend, from a fake server (test/integration/fault-server.ts), next to a real one:
// each costs at most the session on the faulty server, with a clear error, never Ferry or the
// sessions on the real server.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as mariadb from "mariadb";
import mysql from "mysql2/promise";
import { parseConfig } from "../../src/config/load.js";
import { startFerry, type FerryServer } from "../../src/server.js";
import { CLIENT_MULTI_RESULTS, CLIENT_SESSION_TRACK, ERR_HEADER } from "../../src/protocol/constants.js";
import { FaultServer } from "./fault-server.js";
import { APP_PASSWORD, APP_USER, Cluster, connectVia, LogSink, one, waitFor } from "./harness.js";
import { prng } from "./prng.js";
import { RawClient } from "./raw-client.js";

describe("backend faults", () => {
  let cluster: Cluster;
  let fault: FaultServer;
  let ferry: FerryServer;
  const logs = new LogSink();
  let control: mysql.Connection;

  before(async () => {
    cluster = await Cluster.start(1);
    await cluster.servers[0].sql("CREATE USER 'mixed'@'%' IDENTIFIED BY 'mixed'; GRANT ALL ON *.* TO 'mixed'@'%';");
    fault = await FaultServer.start();
    ferry = await startFerry(parseConfig(`[proxy]\nlisten = "127.0.0.1:0"\nreconnect_timeout_ms = 3000\nbackend_wait_ms = 0\n
[[servers]]\nhost = "127.0.0.1"\nport = ${cluster.servers[0].port}\nhostgroup = 0\n
[[servers]]\nhost = "127.0.0.1"\nport = ${fault.port}\nhostgroup = 1\n
[[servers]]\nhost = "127.0.0.1"\nport = ${fault.port}\nhostgroup = 2\nweight = 10\n
[[servers]]\nhost = "127.0.0.1"\nport = ${cluster.servers[0].port}\nhostgroup = 2\n
[[users]]\nname = "${APP_USER}"\npassword = "${APP_PASSWORD}"\n
[[users]]\nname = "faulty"\npassword = "faulty"\ndefault_hostgroup = 1\n
[[users]]\nname = "mixed"\npassword = "mixed"\ndefault_hostgroup = 2\n`, "test"), { logLevel: "debug", logDestination: logs });
    control = await connectVia(ferry.port);
  });

  after(async () => {
    await control?.end().catch(() => undefined);
    await ferry?.close();
    await fault?.stop();
    await cluster?.stop();
  });

  const faulty = () => mysql.createConnection({ host: "127.0.0.1", port: ferry.port, user: "faulty", password: "faulty" });

  /** The session on the real server is untouched. */
  const controlStillServes = async (): Promise<void> => assert.equal(Number((await one(control, "SELECT 6 * 7 AS n")).n), 42);

  it("a malformed response: the statement gets 2013 naming the fault, in place of the bad packet, and the session goes on", async () => {
    const c = await faulty();
    await c.query("SELECT 1");
    const before = fault.accepted;
    for (const q of ["fault: truncated ok", "fault: bad second result"]) {
      await assert.rejects(c.query(q), (e: mysql.QueryError) => {
        assert.equal(e.errno, 2013, e.message);
        assert.equal(e.sqlState, "HY000");
        assert.match(e.message, /^ferry: lost connection to the backend 127\.0\.0\.1:\d+: malformed response \(truncated OK packet\); the session continues on another server$/);
        return true;
      }, q);
      // The first result reached the client whole: the error took the bad packet's place, at a packet boundary.
      await c.query("SELECT 'next'");
    }
    assert.equal(fault.accepted, before + 2, "a new backend connection after each fault");
    await c.end();
    await controlStillServes();
  });

  it("a malformed response inside a transaction ends the session with 2013, as a lost connection would", async () => {
    const c = await faulty();
    c.on("error", () => undefined);
    await c.query("fault: begin");
    await assert.rejects(c.query("fault: truncated ok"), (e: mysql.QueryError) => e.errno === 2013 && !e.message.includes("continues"));
    await assert.rejects(c.query("SELECT 1"));
    await controlStillServes();
  });

  it("a packet the server sends with no command in flight is logged and dropped; the session goes on", async () => {
    const c = await faulty();
    await c.query("fault: unsolicited");
    assert.ok(await waitFor(() => logs.lines.some((l) => l.includes("unsolicited data from backend")), 3000));
    await c.query("SELECT 'still here'");
    await c.end();
    await controlStillServes();
  });

  it("a server that drops the connection before answering: that statement gets 2013, the session reconnects and goes on", async () => {
    const c = await faulty();
    const before = fault.accepted;
    await assert.rejects(c.query("fault: drop before answering"), (e: mysql.QueryError) => {
      assert.equal(e.errno, 2013);
      assert.match(e.message, /^ferry: lost connection to backend 127\.0\.0\.1:\d+ during the statement; the session continues on another server$/);
      return true;
    });
    await c.query("SELECT 'after the loss'");
    assert.ok(fault.accepted > before, "the session logged in again");
    await c.end();
    await controlStillServes();
  });

  it("a server that drops the connection inside a packet: the client's connection is closed, as a direct one would be", async () => {
    const c = await faulty();
    c.on("error", () => undefined);
    await assert.rejects(c.query("fault: drop inside a packet"), (e: Error & { code?: string }) => e.code === "PROTOCOL_CONNECTION_LOST");
    await controlStillServes();
  });

  it("signs a client_ed25519 nonce whose last byte is 0 over all its 32 bytes", async () => {
    fault.ed25519Password = "faulty";
    try {
      const c = await faulty();
      await c.query("SELECT 1");
      await c.end();
    } finally {
      fault.ed25519Password = null;
    }
  });

  it("a server greeting with another protocol version, or with garbage, is refused: 9001 naming the reason", async () => {
    for (const [greeting, why] of [["protocol-9", /protocol/], ["garbage", /./]] as const) {
      fault.greeting = greeting;
      try {
        await assert.rejects(faulty(), (e: mysql.QueryError) => {
          assert.equal(e.errno, 9001, e.message);
          assert.match(e.message, /^ferry: no backend available in hostgroup 1: /);
          assert.match(e.message, why);
          return true;
        });
      } finally {
        fault.greeting = "mysql";
      }
    }
    await controlStillServes();
    assert.ok(!logs.lines.some((l) => /"level":60/.test(l)), "nothing fatal logged");
  });

  it("a client that negotiated metadata caching is not given a server without it: 9001 naming why", async () => {
    // Ferry announces the real server (listed first), which offers MARIADB_CLIENT_CACHE_METADATA;
    // the MariaDB connector takes it, and the fault server in hostgroup 1 does not offer it.
    await assert.rejects(mariadb.createConnection({ host: "127.0.0.1", port: ferry.port, user: "faulty", password: "faulty" }), (e: mariadb.SqlError) => {
      assert.equal(e.errno, 9001, e.message);
      assert.match(e.message, /no backend available in hostgroup 1: .*the client uses metadata caching, which 5\.5\.5-10\.11\.0-MariaDB-fault does not offer/);
      return true;
    });
    // mysql2 does not know the capability: the same server serves it
    const c = await faulty();
    await c.query("SELECT 1");
    await c.end();
    await controlStillServes();
  });

  it("a server passed over for lacking metadata caching keeps its place for sessions that do not use it", async () => {
    // Hostgroup 2: the fault server first (weight 10), then the real one.
    const tried = fault.accepted;
    const m = await mariadb.createConnection({ host: "127.0.0.1", port: ferry.port, user: "mixed", password: "mixed" });
    try {
      assert.equal(fault.accepted, tried + 1, "the fault server was tried first");
      assert.doesNotMatch(String((await m.query("SELECT @@version AS v"))[0].v), /fault/, "the real server serves the caching client");
      // Not a failure of the server: the next session without caching still gets it first.
      const c = await mysql.createConnection({ host: "127.0.0.1", port: ferry.port, user: "mixed", password: "mixed" });
      await c.query("SELECT 1");
      await c.end();
      assert.equal(fault.accepted, tried + 2, "mysql2 went to the fault server, which keeps its place");
    } finally {
      await m.end();
    }
    await controlStillServes();
  });
  it("random responses, damaged or not, cost at most the session concerned: Ferry stays up and logs no error of its own", async () => {
    const seed = Number(process.env.FERRY_FUZZ_SEED ?? 20261203);
    // A count of clients, not a time, so that the same responses go out on a fast machine and on a
    // busy one; the time bound only stops a run that hangs.
    const runs = Math.round(Number(process.env.FERRY_FUZZ_MS ?? 8_000) / 100);
    const rnd = prng(seed);
    const pause = (ms: number): Promise<null> => new Promise((r) => setTimeout(() => r(null), ms));
    fault.sessionTrack = true;
    const logBefore = logs.lines.length;
    const outcomes = new Map<string, number>();
    const count = (k: string): void => void outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
    const deadline = Date.now() + runs * 500;
    let clients = 0, lastQuery = "";
    try {
      while (Date.now() < deadline && clients < runs) {
        clients++;
        const c = await RawClient.connect(ferry.port, "faulty", "faulty", rnd(2) ? CLIENT_SESSION_TRACK | CLIENT_MULTI_RESULTS : 0);
        let silent = false;
        for (let i = 1 + rnd(3); i > 0 && !silent; i--) {
          lastQuery = `fault: random ${rnd(2 ** 31)}`;
          c.sendQuery(lastQuery);
          // Whatever comes within 150 ms: what Ferry made of the response.
          const first = await Promise.race([c.packet().catch(() => "closed" as const), pause(150)]);
          if (first === "closed") { count("closed"); break; }
          if (first === null) { count("silent"); silent = true; break; }
          if (first.length > 9 && first[0] === ERR_HEADER && first.readUInt16LE(1) === 2013 && first.toString("utf8", 9).startsWith("ferry: ")) count("ferry 2013");
          else count("answered");
          while ((await Promise.race([c.packet().catch(() => null), pause(50)])) !== null);
        }
        if (!silent && rnd(2)) c.close();
        else c.destroy();
      }
    } finally {
      fault.sessionTrack = false;
    }
    const context = `seed ${seed}, ${clients} clients: ${[...outcomes].map(([k, n]) => `${k} ${n}`).join(", ")}; last: ${lastQuery}`;
    assert.equal(clients, runs, `every client ran in time (${context})`);
    assert.ok((outcomes.get("answered") ?? 0) > 20 && (outcomes.get("ferry 2013") ?? 0) + (outcomes.get("closed") ?? 0) > 2,
      `responses of every kind came back (${context})`);
    await controlStillServes();
    // A client that sent more (COM_QUIT too) while a response was still owed has it held, as a
    // server holds what a client pipelined, and its session lasts until the response ends, as the
    // server's would. A response the fault server never finishes leaves such sessions waiting
    // (a lost connection's statement is even run again on a new one: read-retry.ts). They must end
    // once the server is gone for good.
    fault.greeting = "garbage";
    try {
      fault.dropConnections();
      assert.ok(await waitFor(() => ferry.sessions() === 1, 10_000), `every session but the control one ended (${ferry.sessions()} left; ${context})`);
    } finally {
      fault.greeting = "mysql";
    }
    // Errors logged: only the server's faults, none of Ferry's own.
    const errors = logs.lines.slice(logBefore).filter((l) => /"level":(50|60)/.test(l) && !/"level":50.*"msg":"backend sent a malformed response"/.test(l));
    assert.deepEqual(errors, [], `no error of Ferry's own logged (${context})`);
  });
});
