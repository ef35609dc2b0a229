// A minimal binary-protocol client built on Ferry's codec, for behaviour the test libraries do not
// show: like libmariadb, it sends parameter types only on a statement's first execute.

import net from "node:net";
import { nativeToken } from "../../src/protocol/auth/native-password.js";
import {
  CLIENT_DEPRECATE_EOF, CLIENT_PLUGIN_AUTH, CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA, CLIENT_PROTOCOL_41, CLIENT_SECURE_CONNECTION,
  CLIENT_TRANSACTIONS, COM_QUERY, COM_QUIT, COM_STMT_BULK_EXECUTE, COM_STMT_EXECUTE, COM_STMT_PREPARE, ERR_HEADER,
} from "../../src/protocol/constants.js";
import { PacketStream } from "../../src/protocol/packet-stream.js";
import { decodeErr, decodeHandshakeV10, encodeCommand, encodeHandshakeResponse } from "../../src/protocol/packets.js";
import { PacketWriter } from "../../src/protocol/writer.js";

export class RawClient {
  private constructor(private readonly socket: net.Socket, private readonly stream: PacketStream) {}

  static async connect(port: number, user: string, password: string, extraCapabilities = 0, mariadbCapabilities = 0): Promise<RawClient> {
    const socket = net.connect(port, "127.0.0.1");
    const stream = new PacketStream(socket);
    const hs = decodeHandshakeV10((await stream.next()).payload);
    const caps = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT_TRANSACTIONS | CLIENT_DEPRECATE_EOF | extraCapabilities;
    socket.write(encodeHandshakeResponse({ capabilities: caps, maxPacketSize: 1 << 24, collation: 45, username: user, authResponse: nativeToken(password, hs.authPluginData),
      database: null, authPluginName: "mysql_native_password", attributes: new Map(), mariadbCapabilities, sslRequest: false }, 1));
    const ok = (await stream.next()).payload;
    if (ok[0] !== 0) throw new Error(`login failed: ${ok[0] === ERR_HEADER ? decodeErr(ok).message : ok[0]}`);
    return new RawClient(socket, stream);
  }

  /** Prepares a statement with one parameter and one column; returns its id. */
  async prepare(sql: string): Promise<number> {
    this.socket.write(encodeCommand(COM_STMT_PREPARE, sql));
    const p = (await this.stream.next()).payload;
    if (p[0] === ERR_HEADER) throw new Error(decodeErr(p).message);
    const params = p.readUInt16LE(7), cols = p.readUInt16LE(5);
    for (let i = 0; i < params + cols; i++) await this.stream.next(); // definitions (no EOF: DEPRECATE_EOF)
    return p.readUInt32LE(1);
  }

  /** Executes with one BIGINT parameter; sends its type only when bindTypes. Returns the single BIGINT result. */
  async executeBigint(id: number, value: bigint, bindTypes: boolean): Promise<bigint> {
    const w = new PacketWriter().u32(id).u8(0).u32(1).u8(0).u8(bindTypes ? 1 : 0);
    if (bindTypes) w.u16(8); // MYSQL_TYPE_LONGLONG, signed
    w.u64(value);
    this.socket.write(encodeCommand(COM_STMT_EXECUTE, w.finish(0).subarray(4)));
    const first = (await this.stream.next()).payload;
    if (first[0] === ERR_HEADER) throw new Error(decodeErr(first).message);
    await this.stream.next(); // column definition
    const row = (await this.stream.next()).payload; // 0x00, null bitmap (1 byte), 8-byte value
    await this.stream.next(); // terminator
    return row.readBigInt64LE(2);
  }

  /**
   * COM_STMT_BULK_EXECUTE of a statement with one BIGINT parameter, a row per value; sends the
   * parameter's type only when sendTypes. Returns the affected rows of the OK (or throws the ERR).
   */
  async bulkBigint(id: number, values: bigint[], sendTypes: boolean): Promise<number> {
    const w = new PacketWriter().u32(id).u16(sendTypes ? 128 : 0);
    if (sendTypes) w.u16(8); // MYSQL_TYPE_LONGLONG, signed
    for (const v of values) w.u8(0).u64(v); // indicator NONE, value
    this.socket.write(encodeCommand(COM_STMT_BULK_EXECUTE, w.finish(0).subarray(4)));
    const p = (await this.stream.next()).payload;
    if (p[0] === ERR_HEADER) throw new Error(decodeErr(p).message);
    if (p[0] !== 0 || p[1] >= 0xfb) throw new Error(`unexpected answer to a bulk execute: ${p.subarray(0, 8).toString("hex")}`);
    return p[1];
  }

  /** The first column of a text query's only row. */
  async queryValue(sql: string): Promise<string> {
    this.sendQuery(sql);
    const first = (await this.stream.next()).payload;
    if (first[0] === ERR_HEADER) throw new Error(decodeErr(first).message);
    for (let i = 0; i < first[0]; i++) await this.stream.next(); // definitions
    const row = (await this.stream.next()).payload;
    await this.stream.next(); // terminator
    return row.toString("utf8", 1, 1 + row[0]); // a lenenc string under 251 bytes
  }

  /** Sends any command (its payload after the command byte) without waiting for the answer. */
  send(cmd: number, payload: Buffer | string = Buffer.alloc(0)): void {
    this.socket.write(encodeCommand(cmd, payload));
  }

  /** Writes bytes as they are, framed or not. */
  sendRaw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Drops the connection without COM_QUIT. */
  destroy(): void {
    this.socket.destroy();
  }

  /** The next packet's payload. */
  async packet(): Promise<Buffer> {
    return (await this.stream.next()).payload;
  }

  /** Sends a COM_QUERY without waiting for its answer. */
  sendQuery(sql: string): void {
    this.socket.write(encodeCommand(COM_QUERY, sql));
  }

  /** Stops reading the socket (what the server sends piles up in the kernel, then in front of it). */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Reads a text-protocol result set to its end: rows and the bytes of their payloads; `onRow` sees each row's payload. */
  async readTextResult(onRow?: (payload: Buffer) => void): Promise<{ rows: number; rowBytes: number }> {
    const first = (await this.stream.next()).payload;
    if (first[0] === ERR_HEADER) throw new Error(decodeErr(first).message);
    const cols = first[0];
    for (let i = 0; i < cols; i++) await this.stream.next(); // definitions (no EOF: DEPRECATE_EOF)
    let rows = 0, rowBytes = 0;
    for (;;) {
      const p = (await this.stream.next()).payload;
      if (p[0] === 0xfe && p.length < 0xffffff) return { rows, rowBytes };
      if (p[0] === ERR_HEADER) throw new Error(decodeErr(p).message);
      rows++;
      rowBytes += p.length;
      if (onRow) onRow(p);
    }
  }

  close(): void {
    this.socket.end(encodeCommand(COM_QUIT));
  }
}
