// Cursor over one packet payload. Reads are bounds-checked: a short or malformed payload
// throws ProtocolError instead of yielding garbage.

export class ProtocolError extends Error {
  override name = "ProtocolError";
}

export class PacketReader {
  buf: Buffer;
  pos: number;
  end: number;

  constructor(buf: Buffer, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number): void {
    if (this.pos + n > this.end) throw new ProtocolError(`packet truncated: need ${n} bytes at offset ${this.pos}, have ${this.end - this.pos}`);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++];
  }

  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }

  u24(): number {
    this.need(3);
    const v = this.buf.readUIntLE(this.pos, 3);
    this.pos += 3;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    return v;
  }

  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }

  /** Length-encoded integer as a number; values above 2^53 lose precision (only lengths and counts use this). Returns null for 0xFB (SQL NULL). */
  lenencOrNull(): number | null {
    const first = this.u8();
    if (first < 0xfb) return first;
    if (first === 0xfb) return null;
    if (first === 0xfc) return this.u16();
    if (first === 0xfd) return this.u24();
    if (first === 0xfe) return Number(this.u64());
    throw new ProtocolError("invalid length-encoded integer prefix 0xff");
  }

  lenenc(): number {
    const v = this.lenencOrNull();
    if (v === null) throw new ProtocolError("unexpected NULL length-encoded integer");
    return v;
  }

  /** Length-encoded integer exactly, as a bigint (affected rows, last insert id). */
  lenencBig(): bigint {
    const first = this.u8();
    if (first < 0xfb) return BigInt(first);
    if (first === 0xfc) return BigInt(this.u16());
    if (first === 0xfd) return BigInt(this.u24());
    if (first === 0xfe) return this.u64();
    throw new ProtocolError(`invalid length-encoded integer prefix 0x${first.toString(16)}`);
  }

  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  lenencBytes(): Buffer {
    return this.bytes(this.lenenc());
  }

  lenencString(): string {
    return this.lenencBytes().toString("utf8");
  }

  nulBytes(): Buffer {
    const i = this.buf.indexOf(0, this.pos);
    if (i < 0 || i >= this.end) throw new ProtocolError("unterminated string");
    const b = this.buf.subarray(this.pos, i);
    this.pos = i + 1;
    return b;
  }

  nulString(): string {
    return this.nulBytes().toString("utf8");
  }

  /** Rest of the payload; a trailing NUL, if any, is dropped (auth plugin data quirks). */
  restBytes(): Buffer {
    const b = this.buf.subarray(this.pos, this.end);
    this.pos = this.end;
    return b;
  }

  restString(): string {
    return this.restBytes().toString("utf8");
  }
}
