// Random commands from authenticated clients: well-framed packets with random command bytes and
// payloads, mostly around the commands Ferry parses itself (queries, prepared statements, change
// user); then framing faults: commands split into pieces, pipelined, out of sequence, cut short,
// or bytes that are no packets at all; then random logins: handshake responses with any mix of
// capabilities, users, plugins and fields, some of them damaged, and auth exchanges answered
// rightly or with random bytes. Ferry must answer or refuse each, close only the session concerned, log no error of its
// own, and keep serving. Deterministic: the seed is fixed and printed on failure. A longer campaign
// runs with FERRY_FUZZ_SEED (any integer) and FERRY_FUZZ_MS (how long; the client count is bounded
// at 200 per second; the login test runs 25 logins per second of it, as a count).

import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { sha2EncryptPassword, sha2Token } from "../../src/protocol/auth/caching-sha2.js";
import { nativeToken } from "../../src/protocol/auth/native-password.js";
import {
  CLIENT_COMPRESS, CLIENT_CONNECT_ATTRS, CLIENT_CONNECT_WITH_DB, CLIENT_DEPRECATE_EOF, CLIENT_MULTI_STATEMENTS, CLIENT_PLUGIN_AUTH,
  CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA, CLIENT_PROTOCOL_41, CLIENT_SECURE_CONNECTION, CLIENT_SESSION_TRACK, CLIENT_SSL, CLIENT_TRANSACTIONS,
} from "../../src/protocol/constants.js";
import { decodeHandshakeV10, encodeHandshakeResponse } from "../../src/protocol/packets.js";
import { framePayload } from "../../src/protocol/writer.js";
import type { FerryServer } from "../../src/server.js";
import { prng, seededBytes } from "./prng.js";
import { RawClient } from "./raw-client.js";
import { APP_PASSWORD, APP_USER, Cluster, connectVia, one, startProxy, waitFor, type LogSink } from "./harness.js";

const SQL = [
  "SELECT 1", "SELECT ?", "SET @a = 1", "BEGIN", "COMMIT", "SELECT * FROM information_schema.TABLES LIMIT 3", "CREATE TEMPORARY TABLE t (a INT)",
  "LOAD DATA LOCAL INFILE 'x' INTO TABLE t", "SELECT GET_LOCK('x', 0)", "KILL 1", "KILL QUERY 99999", "USE app", "SET NAMES latin1",
  "SELECT 1; SELECT 2", "PREPARE s FROM 'SELECT 1'", "XA START 'x'", "LOCK TABLES mysql.user READ", "SELECT REPEAT('a', 100000)",
];
// Every command byte a client may send except COM_SHUTDOWN, which the test user is allowed to run
// (through Ferry as directly) and would stop the server.
const COMMANDS = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
  0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x7f, 0xfe, 0xff];
const STATEMENT_COMMANDS = [0x17, 0x18, 0x19, 0x1a, 0x1c];

describe("random commands", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  let logs: LogSink;

  before(async () => {
    cluster = await Cluster.start(1);
    ({ ferry, logs } = await startProxy(cluster));
  });

  after(async () => {
    await ferry?.close();
    await cluster?.stop();
  });

  it("never take Ferry down, are answered or refused, and leave no session behind", async () => {
    const seed = Number(process.env.FERRY_FUZZ_SEED ?? 20261123);
    const runMs = Number(process.env.FERRY_FUZZ_MS ?? 10_000);
    const rnd = prng(seed);
    const bytes = (n: number): Buffer => seededBytes(rnd, n);
    const payload = (cmd: number): Buffer => {
      if (cmd === 0x03 || cmd === 0x16) return Buffer.concat([Buffer.from(SQL[rnd(SQL.length)]), rnd(4) === 0 ? bytes(rnd(20)) : Buffer.alloc(0)]);
      if (STATEMENT_COMMANDS.includes(cmd)) {
        const b = bytes(4 + rnd(36));
        b.writeUInt32LE(rnd(5), 0); // statement ids 0..4: some exist, some not
        return rnd(3) === 0 ? b.subarray(0, rnd(5)) : b;
      }
      return bytes(rnd(50));
    };
    const deadline = Date.now() + runMs;
    let clients = 0, commands = 0;
    const history: string[] = [];
    while (Date.now() < deadline && clients < runMs / 5) {
      const c = await RawClient.connect(ferry.port, APP_USER, APP_PASSWORD);
      clients++;
      for (let i = 1 + rnd(5); i > 0; i--) {
        const cmd = rnd(10) < 6 ? [0x03, 0x16, ...STATEMENT_COMMANDS][rnd(7)] : COMMANDS[rnd(COMMANDS.length)];
        const p = payload(cmd);
        history.push(`client ${clients}: command 0x${cmd.toString(16)} ${p.toString("hex").slice(0, 40)}`);
        c.send(cmd, p);
        commands++;
        await Promise.race([c.packet().catch(() => null), new Promise((r) => setTimeout(r, 5 + rnd(60)))]);
      }
      c.close();
    }
    const context = `seed ${seed}, ${clients} clients, ${commands} commands; last: ${history.slice(-3).join(" | ")}`;
    assert.ok(clients > 50, `clients ran (${context})`);
    const c = await connectVia(ferry.port);
    assert.equal(Number((await one(c, "SELECT 1 + 1 AS two")).two), 2, `Ferry still serves (${context})`);
    await c.end();
    assert.ok(await waitFor(() => ferry.sessions() === 0, 5000), `every session ended (${ferry.sessions()} left; ${context})`);
    const errors = logs.lines.filter((l) => /"level":(50|60)/.test(l));
    assert.deepEqual(errors, [], `no error logged by Ferry (${context})`);
  });

  it("framing faults (split, pipelined, out of sequence, truncated, unframed) never take Ferry down", async () => {
    const seed = Number(process.env.FERRY_FUZZ_SEED ?? 20261202);
    const runMs = Number(process.env.FERRY_FUZZ_MS ?? 8_000);
    const rnd = prng(seed);
    const query = (): Buffer => Buffer.concat([Buffer.from([0x03]), Buffer.from(SQL[rnd(SQL.length)])]);
    const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    /** Writes bytes in pieces of 1..maxPiece, pausing 0–2 ms after one in `pauseOneIn`. */
    const writeInPieces = async (c: RawClient, bytes: Buffer, maxPiece: number, pauseOneIn: number): Promise<void> => {
      for (let at = 0; at < bytes.length;) {
        const n = 1 + rnd(Math.min(maxPiece, bytes.length - at));
        c.sendRaw(bytes.subarray(at, at + n));
        at += n;
        if (rnd(pauseOneIn) === 0) await pause(rnd(3));
      }
    };
    const deadline = Date.now() + runMs;
    let clients = 0, steps = 0, splitAnswered = 0;
    const kinds = new Map<string, number>();
    const history: string[] = [];
    const logBefore = logs.lines.length;
    while (Date.now() < deadline && clients < runMs / 10) {
      const c = await RawClient.connect(ferry.port, APP_USER, APP_PASSWORD);
      clients++;
      let open = true;
      if (rnd(2) === 0) {
        // First a command written in pieces (header bytes too), answered like any other: a result set of one column.
        await writeInPieces(c, framePayload(Buffer.from("\x03SELECT 'split'"), 0), 6, 2);
        const first = await Promise.race([c.packet(), pause(5000).then(() => null)]);
        assert.equal(first?.[0], 1, `client ${clients}: a split command is answered with its result set (seed ${seed}): ${first?.toString("latin1")}`);
        splitAnswered++;
        for (let k = 0; k < 3; k++) await c.packet(); // the column definition, the row, the closing OK (CLIENT_DEPRECATE_EOF)
      }
      for (let i = 1 + rnd(4); i > 0 && open; i--) {
        const kind = ["split", "pipelined", "sequence", "truncated", "unframed", "continuation"][rnd(6)];
        kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
        steps++;
        history.push(`client ${clients}: ${kind}`);
        switch (kind) {
          case "split": // one command written in pieces, some after a pause
            await writeInPieces(c, framePayload(query(), 0), 8, 3);
            break;
          case "pipelined": // the next commands before the first answer, in one write or several
            c.sendRaw(Buffer.concat([framePayload(query(), 0), framePayload(query(), 0), framePayload(Buffer.from([0x0e]), 0)]));
            break;
          case "sequence": { // a command packet whose sequence id is not 0
            const seq = 1 + rnd(255);
            c.sendRaw(framePayload(query(), seq));
            open = false;
            break;
          }
          case "truncated": { // a header promising more than ever comes, then the client goes
            const h = Buffer.from([0, 0, 0, 0, 0x03]);
            h.writeUIntLE(10 + rnd(200_000), 0, 3);
            c.sendRaw(Buffer.concat([h, Buffer.from("SELECT ")]));
            open = false;
            break;
          }
          case "unframed": // bytes that are no packet stream at all
            c.sendRaw(seededBytes(rnd, 1 + rnd(64)));
            open = false;
            break;
          case "continuation": { // a 16 MiB - 1 first packet, cut short
            const h = Buffer.from([0xff, 0xff, 0xff, 0, 0x03]);
            c.sendRaw(Buffer.concat([h, Buffer.from("SELECT '"), Buffer.alloc(rnd(70_000), 0x61)]));
            open = false;
            break;
          }
        }
        await Promise.race([c.packet().catch(() => null), pause(5 + rnd(40))]);
      }
      if (open && rnd(2) === 0) c.close();
      else c.destroy();
    }
    const context = `seed ${seed}, ${clients} clients, ${steps} steps (${[...kinds].map(([k, n]) => `${k} ${n}`).join(", ")}); last: ${history.slice(-3).join(" | ")}`;
    assert.ok(clients > 30 && kinds.size === 6 && splitAnswered > 10, `every kind of fault ran, ${splitAnswered} split commands answered (${context})`);
    const c = await connectVia(ferry.port);
    assert.equal(Number((await one(c, "SELECT 1 + 1 AS two")).two), 2, `Ferry still serves (${context})`);
    await c.end();
    assert.ok(await waitFor(() => ferry.sessions() === 0, 5000), `every session ended (${ferry.sessions()} left; ${context})`);
    const errors = logs.lines.slice(logBefore).filter((l) => /"level":(50|60)/.test(l));
    assert.deepEqual(errors, [], `no error logged by Ferry (${context})`);
  });
  it("random handshake responses never take Ferry down: each login ends in OK, a clear ERR or a close", async () => {
    const seed = Number(process.env.FERRY_FUZZ_SEED ?? 20261203);
    // A count, not a time, so that the same logins run on a fast machine and on a busy one; the
    // time bound only stops a run that hangs.
    const logins = Math.round(Number(process.env.FERRY_FUZZ_MS ?? 6_000) / 40);
    const rnd = prng(seed);
    const bytes = (n: number): Buffer => seededBytes(rnd, n);
    const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)];
    // A Ferry of its own: a short handshake timeout, and a caching_sha2_password user besides the native one.
    const own = await startProxy(cluster, "handshake_timeout_ms = 1000\n",
      `[[users]]\nname = "${APP_USER}"\npassword = "${APP_PASSWORD}"\n[[users]]\nname = "other"\npassword = "other"\nauth_plugin = "caching_sha2_password"\n`);
    // Closed whatever happens: an open Ferry or socket would keep the test file running.
    let probe: HandshakeProbe | null = null;
    try {
      const logBefore = own.logs.lines.length;
      const passwords: Record<string, string> = { [APP_USER]: APP_PASSWORD, other: "other" };
      const OPTIONAL = [CLIENT_CONNECT_WITH_DB, CLIENT_CONNECT_ATTRS, CLIENT_PLUGIN_AUTH, CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA, CLIENT_SECURE_CONNECTION,
        CLIENT_DEPRECATE_EOF, CLIENT_MULTI_STATEMENTS, CLIENT_SESSION_TRACK, CLIENT_TRANSACTIONS, CLIENT_COMPRESS, CLIENT_SSL];
      // What a login may end with: Ferry's own refusals (bad handshake, access denied, an auth protocol the client lacks, no
      // server with the tenant labels asked for) and the backend's (a database unknown or not allowed).
      const EXPECTED_ERRORS = new Set([1043, 1044, 1045, 1049, 1251, 9001]);
      const outcomes = new Map<string, number>();
      const history: string[] = [];
      const deadline = Date.now() + logins * 200;
      let clients = 0;
      while (Date.now() < deadline && clients < logins) {
        clients++;
        const conn = await HandshakeProbe.connect(own.ferry.port);
        probe = conn;
        const greeting = await conn.packet(3000);
        assert.ok(greeting !== null && greeting.payload[0] === 10, `client ${clients}: a greeting (seed ${seed})`);
        const salt = decodeHandshakeV10(greeting.payload).authPluginData;
        let nonce = salt;
        const user = pick([APP_USER, APP_USER, "other", "other", "nobody", `${APP_USER}?tier=gold`, `${APP_USER}?tier`, ""]);
        const password = rnd(5) !== 0 ? passwords[user.split("?")[0]] ?? "x" : "wrong";
        const plugin = pick(["mysql_native_password", "mysql_native_password", "caching_sha2_password", "caching_sha2_password", "client_ed25519", "", "dialog"]);
        // Half are what a modern client sends, with more besides; half any mix of capabilities.
        let caps = rnd(2) ? CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA : CLIENT_PROTOCOL_41;
        for (const bit of OPTIONAL) if (rnd(bit === CLIENT_SSL || bit === CLIENT_COMPRESS ? 8 : 2) === 0) caps |= bit;
        const token = plugin === "caching_sha2_password" ? sha2Token(password, salt) : plugin === "mysql_native_password" ? nativeToken(password, salt) : bytes(rnd(40));
        let payload = encodeHandshakeResponse({ capabilities: caps, maxPacketSize: 1 << 24, collation: pick([8, 33, 45, 63, 224, rnd(256)]),
          username: user, authResponse: token, database: pick([null, "app", "nosuchdb", "x".repeat(rnd(300))]), authPluginName: plugin,
          attributes: new Map(Array.from({ length: rnd(4) }, (_, i) => [`k${i}`, "v".repeat(rnd(300))])), mariadbCapabilities: rnd(2) ? 0 : rnd(1 << 30),
          sslRequest: (caps & CLIENT_SSL) !== 0 && rnd(2) === 0 }, 1).subarray(4);
        const mutation = pick(["none", "none", "none", "none", "truncate", "overwrite", "append", "capabilities"]);
        switch (mutation) {
          case "truncate": payload = payload.subarray(0, rnd(payload.length)); break;
          case "overwrite": payload = Buffer.from(payload); for (let k = 1 + rnd(3); k > 0; k--) payload[rnd(payload.length)] = rnd(256); break;
          case "append": payload = Buffer.concat([payload, bytes(1 + rnd(20))]); break;
          case "capabilities": payload = Buffer.from(payload); payload.writeUInt32LE(rnd(2) ? rnd(2 ** 32) >>> 0 : (rnd(2 ** 32) | CLIENT_PROTOCOL_41) >>> 0, 0); break;
        }
        const seq = pick([1, 1, 1, 1, 0, 2, 255]);
        history.push(`client ${clients}: ${mutation}, seq ${seq}, ${payload.toString("hex").slice(0, 80)}`);
        conn.send(framePayload(payload, seq));
        // An SSLRequest (a bare 32 bytes asking for TLS) is followed by bytes that are no TLS: Ferry can only close.
        const sslRequest = payload.length === 32 && (payload.readUInt32LE(0) & (CLIENT_SSL | CLIENT_PROTOCOL_41)) === (CLIENT_SSL | CLIENT_PROTOCOL_41);
        let outcome = "";
        for (let step = 0; step < 5 && outcome === ""; step++) {
          const p = await conn.packet(3000);
          if (p === null) outcome = conn.closed ? "closed" : "stalled";
          else if (p.payload[0] === 0x00) outcome = "ok";
          else if (p.payload[0] === 0xff) {
            const code = p.payload.readUInt16LE(1);
            assert.equal(p.payload[3], 0x23, `client ${clients}: an ERR with a SQLSTATE (seed ${seed})`);
            assert.ok(EXPECTED_ERRORS.has(code), `client ${clients}: ERR ${code} ${p.payload.subarray(9).toString()} (seed ${seed}; ${history.at(-1)})`);
            outcome = `err ${code}`;
          } else if (p.payload[0] === 0xfe) {
            // An auth switch: the right answer two times in three, else random bytes.
            const end = p.payload.indexOf(0, 1);
            const switchTo = p.payload.subarray(1, end).toString();
            nonce = p.payload.subarray(end + 1, p.payload.length - 1);
            const answer = rnd(3) === 0 ? bytes(rnd(40)) : switchTo === "mysql_native_password" ? nativeToken(password, nonce)
              : switchTo === "caching_sha2_password" ? sha2Token(password, nonce) : bytes(rnd(40));
            conn.send(framePayload(answer, p.seq + 1));
          } else if (p.payload[0] === 0x01) {
            // caching_sha2_password: fast-path success (0x03, then the OK), or full authentication: a request for the public key
            // (then the password encrypted with it two times in three), or random bytes.
            if (p.payload[1] === 0x04) conn.send(framePayload(rnd(4) ? Buffer.from([0x02]) : bytes(1 + rnd(300)), p.seq + 1));
            else if (p.payload.subarray(1, 11).toString() === "-----BEGIN") {
              const pem = p.payload.subarray(1).toString("latin1");
              conn.send(framePayload(rnd(3) ? sha2EncryptPassword(password, nonce, pem) : bytes(1 + rnd(300)), p.seq + 1));
            } else if (p.payload.length > 2) conn.send(framePayload(bytes(1 + rnd(300)), p.seq + 1));
          } else outcome = `unexpected 0x${p.payload[0].toString(16)}`;
          if (outcome === "" && sslRequest) conn.send(bytes(1 + rnd(100))); // no TLS after all
        }
        if (outcome === "") outcome = "unfinished";
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        assert.ok(outcome === "ok" || outcome.startsWith("err ") || (outcome === "closed" && sslRequest),
          `client ${clients}: ended with ${outcome}${sslRequest ? " after an SSLRequest" : ""} (seed ${seed}; ${history.at(-1)})`);
        conn.destroy();
      }
      const context = `seed ${seed}, ${clients} clients: ${[...outcomes].map(([k, n]) => `${k} ${n}`).join(", ")}`;
      assert.equal(clients, logins, `every login ran in time (${context})`);
      assert.ok((outcomes.get("ok") ?? 0) > 10 && (outcomes.get("err 1043") ?? 0) > 5 && (outcomes.get("err 1045") ?? 0) > 10, `logins of every kind ran (${context})`);
      const c = await connectVia(own.ferry.port);
      assert.equal(Number((await one(c, "SELECT 1 + 1 AS two")).two), 2, `Ferry still serves (${context})`);
      await c.end();
      assert.ok(await waitFor(() => own.ferry.sessions() === 0, 5000), `every session ended (${own.ferry.sessions()} left; ${context})`);
      const errors = own.logs.lines.slice(logBefore).filter((l) => /"level":(50|60)/.test(l));
      assert.deepEqual(errors, [], `no error logged by Ferry (${context})`);
    } finally {
      probe?.destroy();
      await own.ferry.close();
    }
  });
});

/** A client socket read packet by packet, for handshakes no client library would send. */
class HandshakeProbe {
  private buf = Buffer.alloc(0);
  closed = false;
  private wake: (() => void) | null = null;
  private constructor(private readonly socket: net.Socket) {
    socket.on("data", (d: Buffer) => { this.buf = Buffer.concat([this.buf, d]); this.wake?.(); });
    socket.on("close", () => { this.closed = true; this.wake?.(); });
    socket.on("error", () => {});
  }

  static connect(port: number): Promise<HandshakeProbe> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, "127.0.0.1", () => resolve(new HandshakeProbe(s)));
      s.once("error", reject);
    });
  }

  send(b: Buffer): void {
    if (!this.closed) this.socket.write(b);
  }

  /** The next packet; null when the connection closed first, or nothing came within `ms`. */
  async packet(ms: number): Promise<{ seq: number; payload: Buffer } | null> {
    const until = Date.now() + ms;
    for (;;) {
      if (this.buf.length >= 4) {
        const len = this.buf.readUIntLE(0, 3);
        if (this.buf.length >= 4 + len) {
          const p = { seq: this.buf[3], payload: this.buf.subarray(4, 4 + len) };
          this.buf = this.buf.subarray(4 + len);
          return p;
        }
      }
      if (this.closed || Date.now() >= until) return null;
      await new Promise<void>((r) => {
        const t = setTimeout(r, until - Date.now());
        this.wake = () => { clearTimeout(t); this.wake = null; r(); };
      });
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}
