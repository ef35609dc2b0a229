// Builds packets into a growing buffer. Used on the control side of the protocol (handshakes,
// errors, injected commands); forwarded traffic is never re-encoded.

import { HEADER_SIZE, MAX_PACKET_PAYLOAD } from "./constants.js";

export class PacketWriter {
  private buf: Buffer;
  private pos: number;

  constructor(initial = 256) {
    this.buf = Buffer.allocUnsafe(initial);
    this.pos = HEADER_SIZE; // header filled in by finish()
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): this {
    this.ensure(1);
    this.buf[this.pos++] = v;
    return this;
  }

  u16(v: number): this {
    this.ensure(2);
    this.buf.writeUInt16LE(v, this.pos);
    this.pos += 2;
    return this;
  }

  u24(v: number): this {
    this.ensure(3);
    this.buf.writeUIntLE(v, this.pos, 3);
    this.pos += 3;
    return this;
  }

  u32(v: number): this {
    this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.pos += 4;
    return this;
  }

  u64(v: bigint): this {
    this.ensure(8);
    this.buf.writeBigUInt64LE(v, this.pos);
    this.pos += 8;
    return this;
  }

  zeros(n: number): this {
    this.ensure(n);
    this.buf.fill(0, this.pos, this.pos + n);
    this.pos += n;
    return this;
  }

  lenenc(v: number | bigint): this {
    const n = typeof v === "bigint" ? v : BigInt(v);
    if (n < 0xfbn) return this.u8(Number(n));
    if (n <= 0xffffn) return this.u8(0xfc).u16(Number(n));
    if (n <= 0xffffffn) return this.u8(0xfd).u24(Number(n));
    return this.u8(0xfe).u64(n);
  }

  bytes(b: Buffer | Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  string(s: string): this {
    return this.bytes(Buffer.from(s, "utf8"));
  }

  nulString(s: string): this {
    return this.string(s).u8(0);
  }

  lenencBytes(b: Buffer | Uint8Array): this {
    return this.lenenc(b.length).bytes(b);
  }

  lenencString(s: string): this {
    return this.lenencBytes(Buffer.from(s, "utf8"));
  }

  get payloadLength(): number {
    return this.pos - HEADER_SIZE;
  }

  /** The finished packet(s) with headers; payloads of 0xFFFFFF bytes or more are split as the protocol requires. */
  finish(seq: number): Buffer {
    const len = this.pos - HEADER_SIZE;
    if (len < MAX_PACKET_PAYLOAD) {
      this.buf.writeUIntLE(len, 0, 3);
      this.buf[3] = seq & 0xff;
      return this.buf.subarray(0, this.pos);
    }
    return framePayload(this.buf.subarray(HEADER_SIZE, this.pos), seq);
  }
}

/** Frames a payload of any length into one or more packets starting at sequence id `seq`. */
export function framePayload(payload: Buffer, seq: number): Buffer {
  const parts: Buffer[] = [];
  let off = 0;
  for (;;) {
    const n = Math.min(MAX_PACKET_PAYLOAD, payload.length - off);
    const h = Buffer.allocUnsafe(HEADER_SIZE);
    h.writeUIntLE(n, 0, 3);
    h[3] = seq++ & 0xff;
    parts.push(h, payload.subarray(off, off + n));
    off += n;
    if (n < MAX_PACKET_PAYLOAD) break;
  }
  return Buffer.concat(parts);
}
