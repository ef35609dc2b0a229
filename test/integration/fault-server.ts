// A fake backend for the faults a real server does not produce on demand: malformed responses,
// data nobody asked for, a connection dropped at a chosen point, a greeting from another
// protocol. It speaks just enough of the protocol for Ferry to log in (any credentials), then
// answers each COM_QUERY by the fault its text names; any other text gets an OK. "fault: random N"
// gets a response built and damaged at random from seed N (see randomAnswer).

import net from "node:net";
import { CLIENT_CONNECT_WITH_DB, CLIENT_DEPRECATE_EOF, CLIENT_MULTI_RESULTS, CLIENT_MULTI_STATEMENTS, CLIENT_PLUGIN_AUTH,
  CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA, CLIENT_PROTOCOL_41, CLIENT_SECURE_CONNECTION, CLIENT_SESSION_TRACK, CLIENT_TRANSACTIONS, COM_QUERY,
  COM_QUIT, SERVER_MORE_RESULTS_EXISTS, SERVER_SESSION_STATE_CHANGED, SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_IN_TRANS } from "../../src/protocol/constants.js";
import { ed25519Sign } from "../../src/protocol/auth/ed25519.js";
import { PacketStream } from "../../src/protocol/packet-stream.js";
import { encodeErr, encodeHandshakeV10, encodeOk, encodePacket } from "../../src/protocol/packets.js";
import { PacketWriter } from "../../src/protocol/writer.js";
import { prng, seededBytes } from "./prng.js";

const CAPS = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA |
  CLIENT_CONNECT_WITH_DB | CLIENT_DEPRECATE_EOF | CLIENT_TRANSACTIONS | CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS;

export type Greeting = "mysql" | "protocol-9" | "garbage";

export class FaultServer {
  /** what new connections are greeted with */
  greeting: Greeting = "mysql";
  /**
   * Switch logins to client_ed25519 with a nonce whose last byte is 0 (a password plugin's
   * scramble ends with a NUL, this nonce does not): the signature must be over all 32 bytes.
   */
  ed25519Password: string | null = null;
  /** offer CLIENT_SESSION_TRACK to new connections (random answers then carry session state changes) */
  sessionTrack = false;
  /** connections accepted so far */
  accepted = 0;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  private constructor() {
    this.server = net.createServer((s) => this.serve(s));
  }

  static async start(): Promise<FaultServer> {
    const f = new FaultServer();
    await new Promise<void>((r) => f.server.listen(0, "127.0.0.1", r));
    return f;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Drops every open connection; new ones are still accepted. */
  dropConnections(): void {
    for (const s of this.sockets) s.destroy();
  }

  async stop(): Promise<void> {
    this.dropConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private async serve(s: net.Socket): Promise<void> {
    this.accepted++;
    this.sockets.add(s);
    s.on("close", () => this.sockets.delete(s));
    s.on("error", () => undefined);
    if (this.greeting === "garbage") return void s.end("HTTP/1.1 400 Bad Request\r\n\r\n");
    const hs = encodeHandshakeV10({
      protocolVersion: 10, serverVersion: "5.5.5-10.11.0-MariaDB-fault", connectionId: this.accepted, authPluginData: Buffer.alloc(20, 0x41),
      capabilities: this.sessionTrack ? CAPS | CLIENT_SESSION_TRACK : CAPS, mariadbCapabilities: 0, collation: 45, statusFlags: SERVER_STATUS_AUTOCOMMIT, authPluginName: "mysql_native_password",
    });
    if (this.greeting === "protocol-9") hs[4] = 9;
    s.write(hs);
    const stream = new PacketStream(s);
    try {
      const login = await stream.next();
      const deprecateEof = (login.payload.readUInt32LE(0) & CAPS & CLIENT_DEPRECATE_EOF) !== 0;
      const track = this.sessionTrack && (login.payload.readUInt32LE(0) & CLIENT_SESSION_TRACK) !== 0;
      let seq = login.seq + 1;
      if (this.ed25519Password !== null) {
        const nonce = Buffer.concat([Buffer.alloc(31, 0x5a), Buffer.from([0])]);
        s.write(encodePacket(seq, Buffer.concat([Buffer.from([0xfe]), Buffer.from("client_ed25519\0"), nonce])));
        const answer = await stream.next();
        seq = answer.seq + 1;
        if (!answer.payload.equals(ed25519Sign(nonce, Buffer.from(this.ed25519Password)))) {
          return void s.end(encodeErr(seq, 1045, "28000", "fault server: wrong ed25519 signature"));
        }
      }
      s.write(encodeOk(seq, { statusFlags: SERVER_STATUS_AUTOCOMMIT }, CAPS));
      for (;;) {
        const p = await stream.next();
        if (p.payload[0] === COM_QUIT) return void s.end();
        if (p.payload[0] !== COM_QUERY) {
          s.write(encodeErr(1, 1047, "08S01", "fault server: unknown command"));
          continue;
        }
        const sql = p.payload.toString("utf8", 1);
        if (sql.startsWith("fault: random ")) randomAnswer(s, Number(sql.slice(14)), deprecateEof, track);
        else this.answer(s, sql, deprecateEof);
      }
    } catch {
      s.destroy();
    }
  }

  private answer(s: net.Socket, sql: string, deprecateEof: boolean): void {
    const ok = encodeOk(1, { statusFlags: SERVER_STATUS_AUTOCOMMIT }, CAPS);
    switch (sql) {
      case "fault: truncated ok": // an OK packet of one byte
        return void s.write(encodePacket(1, Buffer.from([0x00])));
      case "fault: begin": // an OK saying a transaction is open
        return void s.write(encodeOk(1, { statusFlags: SERVER_STATUS_AUTOCOMMIT | SERVER_STATUS_IN_TRANS }, CAPS));
      case "fault: bad second result": { // a result of two rows, more to come, then a one-byte OK
        const more = SERVER_STATUS_AUTOCOMMIT | SERVER_MORE_RESULTS_EXISTS;
        const packets = [Buffer.from([0x01]), columnDefinition("a")];
        if (!deprecateEof) packets.push(eof(SERVER_STATUS_AUTOCOMMIT));
        packets.push(Buffer.from([0x01, 0x78]), Buffer.from([0x01, 0x79]));
        packets.push(deprecateEof ? encodeOk(0, { statusFlags: more }, CAPS, 0xfe).subarray(4) : eof(more));
        packets.push(Buffer.from([0x00]));
        return void s.write(Buffer.concat(packets.map((p, i) => encodePacket(i + 1, p))));
      }
      case "fault: unsolicited": // the answer, then a packet nobody asked for
        s.write(ok);
        setTimeout(() => s.write(encodePacket(7, Buffer.from([0x00, 0, 0, 2, 0, 0, 0]))), 100);
        return;
      case "fault: drop before answering":
        return void s.destroy();
      case "fault: drop inside a packet": // a result set header, half a column definition, then gone
        s.write(Buffer.concat([encodePacket(1, Buffer.from([0x01])), encodePacket(2, Buffer.alloc(40, 0x03)).subarray(0, 20)]));
        setTimeout(() => s.destroy(), 50);
        return;
      case "SELECT @@wait_timeout":
        return void s.write(encodeErr(1, 1064, "42000", "fault server: no variables here"));
      default:
        return void s.write(ok);
    }
  }
}

/** A VARCHAR column definition (protocol 4.1). */
function columnDefinition(name: string): Buffer {
  const str = (t: string): Buffer => Buffer.concat([Buffer.from([Buffer.byteLength(t)]), Buffer.from(t)]);
  const fixed = Buffer.alloc(13);
  fixed[0] = 0x0c;
  fixed.writeUInt16LE(45, 1); // utf8mb4_general_ci
  fixed.writeUInt32LE(255, 3);
  fixed[7] = 0xfd; // MYSQL_TYPE_VAR_STRING
  return Buffer.concat([str("def"), str(""), str(""), str(""), str(name), str(name), fixed]);
}

/** An EOF packet's payload: header, no warnings, status flags. */
function eof(status: number): Buffer {
  return Buffer.from([0xfe, 0, 0, status & 0xff, status >> 8]);
}

const TRACKED_VARIABLES = ["autocommit", "sql_mode", "character_set_client", "time_zone", "wait_timeout", "transaction_isolation", "x"];

/**
 * A response built at random from `seed`, then, most of the time, damaged: an OK (perhaps with
 * session state changes of every kind, values sane or not), a result set, two result sets, an
 * OK announcing more results, an ERR, or a LOCAL INFILE request; then bytes changed, a packet cut
 * short, dropped, doubled or made up, a sequence id out of order, or the connection cut inside
 * the response or left silent.
 */
function randomAnswer(s: net.Socket, seed: number, deprecateEof: boolean, track: boolean): void {
  const rnd = prng(seed);
  const bytes = (n: number): Buffer => seededBytes(rnd, n);
  const text = (): string => ["", "1", "0", "ON", "OFF", "app", "x".repeat(rnd(300)), "-1", "99999999999999999999", "é\u0000\u00ff"][rnd(10)];
  const lenenc = (b: Buffer): Buffer => new PacketWriter(8).lenencBytes(b).finish(0).subarray(4);
  const ok = (status: number, header = 0x00): Buffer => {
    const w = new PacketWriter(64).u8(header).lenenc(rnd(3)).lenenc(rnd(1000));
    const changes: Buffer[] = [];
    if (track && rnd(2)) {
      for (let i = 1 + rnd(4); i > 0; i--) {
        const type = rnd(8);
        const body = type === 0 ? Buffer.concat([lenenc(Buffer.from(TRACKED_VARIABLES[rnd(TRACKED_VARIABLES.length)])), lenenc(Buffer.from(text()))])
          : type === 5 ? lenenc(Buffer.from(["________", "T_______", "T___W___", "I_R_____", "bad"][rnd(5)])) : lenenc(Buffer.from(text()));
        changes.push(Buffer.concat([Buffer.from([type]), lenenc(body)]));
      }
    }
    w.u16(status | (changes.length ? SERVER_SESSION_STATE_CHANGED : 0)).u16(rnd(3));
    if (track) {
      w.lenencString(rnd(3) ? "" : "Rows matched: 1");
      if (changes.length) w.lenencBytes(Buffer.concat(changes));
    }
    return w.finish(0).subarray(4);
  };
  const resultSet = (more: boolean): Buffer[] => {
    const status = SERVER_STATUS_AUTOCOMMIT | (more ? SERVER_MORE_RESULTS_EXISTS : 0);
    const cols = 1 + rnd(3);
    const out: Buffer[] = [Buffer.from([cols])];
    for (let i = 0; i < cols; i++) out.push(columnDefinition(`c${i}`));
    if (!deprecateEof) out.push(eof(SERVER_STATUS_AUTOCOMMIT));
    for (let r = rnd(4); r > 0; r--) out.push(Buffer.concat(Array.from({ length: cols }, () => rnd(6) === 0 ? Buffer.from([0xfb]) : lenenc(Buffer.from(text())))));
    out.push(deprecateEof ? ok(status, 0xfe) : eof(status));
    return out;
  };
  const status = SERVER_STATUS_AUTOCOMMIT | (rnd(6) === 0 ? SERVER_STATUS_IN_TRANS : 0);
  const packets = [
    () => [ok(status)],
    () => resultSet(false),
    () => [...resultSet(true), ...resultSet(false)],
    () => [ok(status | SERVER_MORE_RESULTS_EXISTS), ...resultSet(false)],
    () => [new PacketWriter(64).u8(0xff).u16(1000 + rnd(3000)).string("#HY000").string("fault server: random error").finish(0).subarray(4)],
    () => [Buffer.concat([Buffer.from([0xfb]), Buffer.from("/tmp/fault.csv")])],
  ][rnd(6)]();
  const at = rnd(packets.length);
  const seqs = packets.map((_, i) => i + 1);
  switch (["none", "none", "change", "cut", "drop", "double", "invent", "sequence"][rnd(8)]) {
    case "change": packets[at] = Buffer.from(packets[at]); for (let k = 1 + rnd(3); k > 0; k--) packets[at][rnd(packets[at].length)] = rnd(256); break;
    case "cut": packets[at] = packets[at].subarray(0, rnd(packets[at].length)); break;
    case "drop": packets.splice(at, 1); seqs.pop(); break;
    case "double": packets.splice(at, 0, packets[at]); seqs.push(seqs.length + 1); break;
    case "invent": packets.splice(at, 0, bytes(1 + rnd(30))); seqs.push(seqs.length + 1); break;
    case "sequence": seqs[at] = rnd(256); break;
  }
  const wire = Buffer.concat(packets.map((p, i) => encodePacket(seqs[i], p)));
  switch (rnd(10)) {
    case 0: // the connection cut inside the response
      s.write(wire.subarray(0, rnd(wire.length)));
      setTimeout(() => s.destroy(), 20);
      return;
    case 1: // the rest never comes
      s.write(wire.subarray(0, rnd(wire.length)));
      return;
    default:
      s.write(wire);
  }
}
