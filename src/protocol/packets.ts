// Typed messages of the connection phase and the generic response packets, with their codecs.

import {
  CLIENT_CONNECT_ATTRS, COM_STMT_CLOSE, CLIENT_CONNECT_WITH_DB, CLIENT_LONG_PASSWORD, CLIENT_PLUGIN_AUTH, CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
  CLIENT_PROTOCOL_41, CLIENT_SECURE_CONNECTION, CLIENT_SESSION_TRACK, CLIENT_SSL, EOF_HEADER, ERR_HEADER,
  OK_HEADER, SERVER_SESSION_STATE_CHANGED, SESSION_TRACK_SCHEMA, SESSION_TRACK_SYSTEM_VARIABLES,
  SESSION_TRACK_TRANSACTION_STATE, SESSION_TRACK_STATE_CHANGE,
} from "./constants.js";
import { PacketReader, ProtocolError } from "./reader.js";
import { PacketWriter } from "./writer.js";

export interface HandshakeV10 {
  protocolVersion: number;
  serverVersion: string;
  connectionId: number;
  authPluginData: Buffer; // 20 bytes of scramble
  capabilities: number; // lower 32 bits
  mariadbCapabilities: number; // MariaDB's extended capabilities (when CLIENT_MYSQL is unset)
  collation: number;
  statusFlags: number;
  authPluginName: string;
}

export function encodeHandshakeV10(h: HandshakeV10): Buffer {
  const w = new PacketWriter(128);
  w.u8(10).nulString(h.serverVersion).u32(h.connectionId);
  w.bytes(h.authPluginData.subarray(0, 8)).u8(0);
  w.u16(h.capabilities & 0xffff).u8(h.collation).u16(h.statusFlags).u16((h.capabilities >>> 16) & 0xffff);
  w.u8(h.authPluginData.length + 1).zeros(6).u32(h.mariadbCapabilities);
  w.bytes(h.authPluginData.subarray(8)).u8(0);
  w.nulString(h.authPluginName);
  return w.finish(0);
}

export function decodeHandshakeV10(payload: Buffer): HandshakeV10 {
  const r = new PacketReader(payload);
  const protocolVersion = r.u8();
  if (protocolVersion !== 10) throw new ProtocolError(`unsupported handshake protocol version ${protocolVersion}`);
  const serverVersion = r.nulString();
  const connectionId = r.u32();
  const part1 = r.bytes(8);
  r.skip(1);
  let capabilities = r.u16();
  let collation = 0, statusFlags = 0, authDataLen = 0, mariadbCapabilities = 0;
  let part2: Buffer = Buffer.alloc(0);
  let authPluginName = "mysql_native_password";
  if (r.remaining > 0) {
    collation = r.u8();
    statusFlags = r.u16();
    capabilities = (capabilities | (r.u16() << 16)) >>> 0;
    authDataLen = r.u8();
    r.skip(6);
    // MariaDB's extended capabilities, where MySQL has filler: a MariaDB server clears CLIENT_LONG_PASSWORD to say so.
    const extended = r.u32();
    if (!(capabilities & CLIENT_LONG_PASSWORD)) mariadbCapabilities = extended;
    if (capabilities & CLIENT_SECURE_CONNECTION) {
      const n = Math.max(13, authDataLen - 8);
      part2 = r.bytes(Math.min(n, r.remaining));
      if (part2.length && part2[part2.length - 1] === 0) part2 = part2.subarray(0, part2.length - 1);
    }
    if (capabilities & CLIENT_PLUGIN_AUTH && r.remaining > 0) {
      const rest = r.restBytes();
      const nul = rest.indexOf(0);
      authPluginName = (nul >= 0 ? rest.subarray(0, nul) : rest).toString("utf8");
    }
  }
  return {
    protocolVersion, serverVersion, connectionId, authPluginData: Buffer.concat([part1, part2]),
    capabilities, mariadbCapabilities, collation, statusFlags, authPluginName,
  };
}

export interface HandshakeResponse {
  capabilities: number;
  maxPacketSize: number;
  collation: number;
  username: string;
  authResponse: Buffer;
  database: string | null;
  authPluginName: string | null;
  attributes: Map<string, string>;
  mariadbCapabilities: number;
  /** true when this was only an SSLRequest (client wants TLS before the real response) */
  sslRequest: boolean;
}

export function decodeHandshakeResponse(payload: Buffer): HandshakeResponse {
  const r = new PacketReader(payload);
  const capabilities = r.u32();
  if (!(capabilities & CLIENT_PROTOCOL_41)) throw new ProtocolError("client does not speak protocol 4.1");
  const maxPacketSize = r.u32();
  const collation = r.u8();
  r.skip(19);
  const mariadbCapabilities = r.u32();
  const base = { capabilities, maxPacketSize, collation, mariadbCapabilities };
  if (r.remaining === 0 && capabilities & CLIENT_SSL) {
    return { ...base, username: "", authResponse: Buffer.alloc(0), database: null, authPluginName: null, attributes: new Map(), sslRequest: true };
  }
  const username = r.nulString();
  let authResponse: Buffer;
  if (capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) authResponse = r.lenencBytes();
  else if (capabilities & CLIENT_SECURE_CONNECTION) authResponse = r.bytes(r.u8());
  else authResponse = r.nulBytes();
  let database: string | null = null;
  if (capabilities & CLIENT_CONNECT_WITH_DB && r.remaining > 0) database = r.nulString() || null;
  let authPluginName: string | null = null;
  if (capabilities & CLIENT_PLUGIN_AUTH && r.remaining > 0) authPluginName = r.nulString();
  const attributes = new Map<string, string>();
  if (capabilities & CLIENT_CONNECT_ATTRS && r.remaining > 0) {
    const len = r.lenenc();
    const end = r.pos + len;
    if (end > r.end) throw new ProtocolError("connection attributes overrun the packet");
    while (r.pos < end) attributes.set(r.lenencString(), r.lenencString());
  }
  return { ...base, username, authResponse, database, authPluginName, attributes, sslRequest: false };
}

export function encodeHandshakeResponse(h: HandshakeResponse, seq: number): Buffer {
  const w = new PacketWriter(256);
  w.u32(h.capabilities).u32(h.maxPacketSize).u8(h.collation).zeros(19).u32(h.mariadbCapabilities);
  if (h.sslRequest) return w.finish(seq);
  w.nulString(h.username);
  if (h.capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) w.lenencBytes(h.authResponse);
  else w.u8(h.authResponse.length).bytes(h.authResponse);
  if (h.capabilities & CLIENT_CONNECT_WITH_DB) w.nulString(h.database ?? "");
  if (h.capabilities & CLIENT_PLUGIN_AUTH) w.nulString(h.authPluginName ?? "");
  if (h.capabilities & CLIENT_CONNECT_ATTRS) {
    const a = new PacketWriter(128);
    for (const [k, v] of h.attributes) a.lenencString(k).lenencString(v);
    const attrs = a.finish(0).subarray(4);
    w.lenencBytes(attrs);
  }
  return w.finish(seq);
}

export interface SessionTrackInfo {
  /** SESSION_TRACK_SYSTEM_VARIABLES name → value, in order */
  systemVariables: [string, string][];
  schema: string | null;
  stateChanged: boolean;
  transactionState: string | null;
}

export interface OkPacket {
  affectedRows: bigint;
  lastInsertId: bigint;
  statusFlags: number;
  warnings: number;
  info: string;
  track: SessionTrackInfo | null;
}

/** Decodes an OK packet (header 0x00, or 0xFE as the CLIENT_DEPRECATE_EOF terminator). */
export function decodeOk(payload: Buffer, capabilities: number, start = 0, end = payload.length): OkPacket {
  const r = new PacketReader(payload, start, end);
  const header = r.u8();
  if (header !== OK_HEADER && header !== EOF_HEADER) throw new ProtocolError(`not an OK packet: 0x${header.toString(16)}`);
  const affectedRows = r.lenencBig();
  const lastInsertId = r.lenencBig();
  const statusFlags = r.u16();
  const warnings = r.u16();
  let info = "";
  let track: SessionTrackInfo | null = null;
  if (capabilities & CLIENT_SESSION_TRACK) {
    if (r.remaining > 0) info = r.lenencString();
    if (statusFlags & SERVER_SESSION_STATE_CHANGED && r.remaining > 0) track = decodeSessionTrack(r.lenencBytes());
  } else {
    info = r.restString();
  }
  return { affectedRows, lastInsertId, statusFlags, warnings, info, track };
}

export function decodeSessionTrack(data: Buffer): SessionTrackInfo {
  const t: SessionTrackInfo = { systemVariables: [], schema: null, stateChanged: false, transactionState: null };
  const r = new PacketReader(data);
  while (r.remaining > 0) {
    const type = r.u8();
    const entry = new PacketReader(r.lenencBytes());
    switch (type) {
      case SESSION_TRACK_SYSTEM_VARIABLES:
        t.systemVariables.push([entry.lenencString(), entry.lenencString()]);
        break;
      case SESSION_TRACK_SCHEMA:
        t.schema = entryString(entry);
        break;
      case SESSION_TRACK_STATE_CHANGE:
        t.stateChanged = entryString(entry) === "1";
        break;
      case SESSION_TRACK_TRANSACTION_STATE:
        t.transactionState = entryString(entry);
        break;
      default:
        break; // GTIDs, transaction characteristics: not needed
    }
  }
  return t;
}

/**
 * A single-string entry: MySQL wraps the value in a length-encoded string; MariaDB sends the state
 * change flag as the bare byte "1". Accept both: a valid inner length that covers the entry wins.
 */
function entryString(entry: PacketReader): string {
  const data = entry.restBytes();
  if (data.length > 0 && data[0] < 0xfb && data[0] + 1 === data.length) return data.toString("utf8", 1);
  return data.toString("utf8");
}

export function encodeOk(seq: number, o: { affectedRows?: bigint; lastInsertId?: bigint; statusFlags: number; warnings?: number; info?: string }, capabilities: number, header = OK_HEADER): Buffer {
  const w = new PacketWriter(32);
  w.u8(header).lenenc(o.affectedRows ?? 0n).lenenc(o.lastInsertId ?? 0n).u16(o.statusFlags & ~SERVER_SESSION_STATE_CHANGED).u16(o.warnings ?? 0);
  if (o.info) {
    if (capabilities & CLIENT_SESSION_TRACK) w.lenencString(o.info);
    else w.string(o.info);
  }
  return w.finish(seq);
}

export function encodeEof(seq: number, statusFlags: number, warnings = 0): Buffer {
  return new PacketWriter(16).u8(EOF_HEADER).u16(warnings).u16(statusFlags).finish(seq);
}

export interface ErrPacket {
  errno: number;
  sqlState: string;
  message: string;
}

export function encodeErr(seq: number, errno: number, sqlState: string, message: string): Buffer {
  return new PacketWriter(64 + message.length).u8(ERR_HEADER).u16(errno).u8(0x23).string(sqlState.padEnd(5, "0").slice(0, 5)).string(message).finish(seq);
}

export function decodeErr(payload: Buffer, start = 0, end = payload.length): ErrPacket {
  const r = new PacketReader(payload, start, end);
  if (r.u8() !== ERR_HEADER) throw new ProtocolError("not an ERR packet");
  const errno = r.u16();
  let sqlState = "HY000";
  if (r.remaining > 0 && payload[r.pos] === 0x23) {
    r.skip(1);
    sqlState = r.bytes(5).toString("latin1");
  }
  return { errno, sqlState, message: r.restString() };
}

export function encodeAuthSwitchRequest(seq: number, plugin: string, data: Buffer): Buffer {
  return new PacketWriter(64).u8(0xfe).nulString(plugin).bytes(data).u8(0).finish(seq);
}

export function encodeAuthMoreData(seq: number, data: Buffer): Buffer {
  return new PacketWriter(8 + data.length).u8(0x01).bytes(data).finish(seq);
}

/** A single-payload packet with the given sequence id (small payloads only). */
export function encodePacket(seq: number, payload: Buffer): Buffer {
  return new PacketWriter(payload.length + 8).bytes(payload).finish(seq);
}

export function encodeCommand(command: number, body: Buffer | string = Buffer.alloc(0)): Buffer {
  const b = typeof body === "string" ? Buffer.from(body, "utf8") : body;
  return new PacketWriter(b.length + 8).u8(command).bytes(b).finish(0);
}

/** COM_STMT_CLOSE of a server's statement `stmtId` (the server answers nothing). */
export function encodeStmtClose(stmtId: number): Buffer {
  return new PacketWriter(12).u8(COM_STMT_CLOSE).u32(stmtId).finish(0);
}
