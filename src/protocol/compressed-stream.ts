// The MySQL compressed protocol (CLIENT_COMPRESS) between a client and Ferry, as a stream of
// plain protocol bytes over the compressed connection. Each compressed packet has a 7-byte header
// (3 bytes compressed length, 1 byte sequence id, 3 bytes uncompressed length, 0 when the payload
// is stored as is) and a zlib payload. Compressed packets do not follow MySQL packet boundaries:
// a packet may span several, one may carry several.
//
// Sequence ids count separately from the packets inside: a client restarts at 0 with each
// command, and the server's compressed packets continue from the client's last one, as MariaDB's
// do. Payloads under 50 bytes, or that deflate does not shrink, go stored.
//
// Compression runs synchronously on the event loop (a MySQL compressed packet is at most 16 MiB);
// it costs CPU only for the clients that ask for it. Ferry's connections to servers stay
// uncompressed.

import type { Duplex as DuplexType } from "node:stream";
import { Duplex } from "node:stream";
import { deflateSync, inflateSync } from "node:zlib";
import type { CopyingStream } from "../lib/socket-writer.js";

const HEADER = 7;
const MAX_PAYLOAD = 0xffffff;
const MIN_COMPRESS_LENGTH = 50;

export class CompressedStream extends Duplex implements CopyingStream {
  /** _write frames each chunk into new memory before it returns (a forwarded read buffer may be reused) */
  readonly copiesWrites = true as const;
  private pending: Buffer = Buffer.alloc(0);
  /** sequence id of Ferry's next compressed packet */
  private seq = 0;
  private readonly socket: DuplexType;

  /** `leftover`: compressed bytes already read from the socket (they come first). */
  constructor(socket: DuplexType, leftover: Buffer = Buffer.alloc(0)) {
    super({ allowHalfOpen: false });
    this.socket = socket;
    socket.on("data", (c: Buffer) => this.onCompressed(c));
    socket.on("end", () => this.push(null));
    socket.on("close", () => this.destroy());
    socket.on("error", (e: Error) => this.destroy(e));
    if (leftover.length) this.onCompressed(leftover);
  }

  private onCompressed(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let pos = 0;
    while (this.pending.length - pos >= HEADER) {
      const len = this.pending.readUIntLE(pos, 3);
      if (this.pending.length - pos < HEADER + len) break;
      const seq = this.pending[pos + 3];
      const plain = this.pending.readUIntLE(pos + 4, 3);
      const body = this.pending.subarray(pos + HEADER, pos + HEADER + len);
      pos += HEADER + len;
      let data: Buffer;
      try {
        data = plain === 0 ? Buffer.from(body) : inflateSync(body, { maxOutputLength: plain });
      } catch (e) {
        this.destroy(new Error(`malformed compressed packet: ${(e as Error).message}`));
        return;
      }
      if (plain !== 0 && data.length !== plain) {
        this.destroy(new Error(`malformed compressed packet: ${data.length} bytes inflated, ${plain} announced`));
        return;
      }
      this.seq = (seq + 1) & 0xff;
      if (!this.push(data)) this.socket.pause();
    }
    this.pending = pos === this.pending.length ? Buffer.alloc(0) : this.pending.subarray(pos);
  }

  override _read(): void {
    this.socket.resume();
  }

  /** Frames, compresses and writes; the chunk is copied or deflated, never kept. */
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (chunk.length === 0) return cb();
    const frames: Buffer[] = [];
    for (let off = 0; off < chunk.length; off += MAX_PAYLOAD) frames.push(this.frame(chunk.subarray(off, Math.min(chunk.length, off + MAX_PAYLOAD))));
    if (this.socket.write(frames.length === 1 ? frames[0] : Buffer.concat(frames))) cb();
    else this.socket.once("drain", () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy(err ?? undefined);
    cb(err);
  }

  private frame(payload: Buffer): Buffer {
    let body = payload;
    let plain = 0;
    if (payload.length >= MIN_COMPRESS_LENGTH) {
      const deflated = deflateSync(payload);
      if (deflated.length < payload.length) {
        body = deflated;
        plain = payload.length;
      }
    }
    const out = Buffer.allocUnsafe(HEADER + body.length);
    out.writeUIntLE(body.length, 0, 3);
    out[3] = this.seq;
    out.writeUIntLE(plain, 4, 3);
    body.copy(out, HEADER);
    this.seq = (this.seq + 1) & 0xff;
    return out;
  }
}
