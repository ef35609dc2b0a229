// Writes forwarded chunks to a socket. On a plain TCP or Unix socket the chunk goes to the libuv handle
// directly (libuv-stream.ts): when the kernel takes it at once, as it does for nearly every chunk,
// nothing is allocated and no callback is scheduled. When the kernel cannot take it all, libuv
// queues the rest, in order, behind anything already queued; the chunk stays referenced until then,
// and `onDrain` runs when the queue is empty. Writes made through the socket's own write() (Ferry's
// own packets, TLS sockets) go to the same libuv queue, so order is kept; while the Writable stream
// holds data of its own, chunks go through it too, behind that data.
//
// `queued` tells the caller whether a chunk's memory may still be referenced after write(), so
// that a read buffer is only replaced when it must be. A TLS socket takes its own copy of a chunk
// inside write() (libuv-stream.ts), and a stream that declares `copiesWrites` (the compressed
// protocol's) frames it into new memory there: such a socket keeps a chunk only when its Writable
// buffers it behind an earlier write, which needs bytes already counted in writableLength, and
// the chunk is then out of Ferry's memory when that write finishes. Any other socket on the
// stream path may hold the chunk until its write completes. `whenWritten` tells when everything
// written so far is out of Ferry's memory, so that a replaced read buffer can be used again.

import type { Duplex } from "node:stream";
import { getSystemErrorName } from "node:util";
import { isTlsHandleSocket, streamBinding, streamHandleOf, type StreamHandle, type WriteReq } from "./libuv-stream.js";

/** A Duplex that copies or transforms each chunk inside write() and keeps no reference to it. */
export interface CopyingStream {
  readonly copiesWrites: true;
}

export class SocketWriter {
  /** runs when writing may go on after write() returned false */
  onDrain: (() => void) | null = null;
  /** the socket's handle when writes can go to it directly */
  private readonly handle: StreamHandle | null;
  /** reused for every write the kernel completes at once; replaced after one that is queued */
  private req: WriteReq | null = null;
  /** direct writes queued in libuv */
  private pending = 0;
  /** the socket copies a chunk unless its Writable buffers it (see the top of this file) */
  private readonly copies: boolean;
  /**
   * Writes handed over, and how many of them have left Ferry's memory. Writes finish in the order
   * they were made (one libuv queue, which the Writable feeds in order, and a direct write only
   * completes at once when nothing is queued before it), so the first `finished` writes are done.
   */
  private issued = 0;
  private finished = 0;
  private waiters: { at: number; fn: () => void }[] = [];

  constructor(private readonly socket: Duplex) {
    this.handle = streamHandleOf(socket);
    this.copies = isTlsHandleSocket(socket) || (socket as Partial<CopyingStream>).copiesWrites === true;
    socket.on("drain", () => {
      if (this.onDrain !== null) this.onDrain();
    });
  }

  /**
   * Writes a chunk. False: it was queued, not written — the caller pauses what feeds this socket
   * until onDrain, and must not reuse the chunk's memory (see `queued`).
   */
  write(chunk: Buffer): boolean {
    const s = this.socket;
    const handle = this.handle;
    // A destroyed socket has closed its handle; an ended one has shut it down; data the stream
    // holds must go first: in each case the stream decides.
    this.issued++;
    if (handle === null || s.writableLength > 0 || s.destroyed || s.writableEnded) {
      if (s.writableLength > 0 || !this.copies) return s.write(chunk, this.afterStreamWrite);
      // Copied before write() returns: the chunk's memory is free at once.
      const more = s.write(chunk);
      this.writeFinished();
      return more;
    }
    const b = streamBinding!;
    const req = this.req ?? this.newReq(handle);
    const err = handle.writeBuffer(req, chunk);
    if (err !== 0) {
      this.req = req;
      this.writeFinished();
      s.destroy(writeError(err));
      return false;
    }
    if (b.streamBaseState[b.kLastWriteWasAsync] === 0) {
      this.req = req;
      this.writeFinished();
      return true;
    }
    // The kernel took part of it: libuv owns `req` and the chunk until the write completes.
    req.buffer = chunk;
    this.req = null;
    this.pending++;
    return false;
  }

  /** True when a chunk written may still be referenced by the socket (its memory must stay as it is). */
  get queued(): boolean {
    if (this.copies) return this.finished < this.issued;
    return this.pending > 0 || this.socket.writableLength > 0;
  }

  /**
   * Runs `fn` once every chunk written so far has left Ferry's memory (at once when nothing is
   * pending). Writes that fail count as finished: their chunks are dropped.
   */
  whenWritten(fn: () => void): void {
    if (this.finished >= this.issued) fn();
    else this.waiters.push({ at: this.issued, fn });
  }

  private writeFinished(): void {
    this.finished++;
    const w = this.waiters;
    while (w.length > 0 && w[0].at <= this.finished) w.shift()!.fn();
  }

  private readonly afterStreamWrite = (): void => this.writeFinished();

  private newReq(handle: StreamHandle): WriteReq {
    const req = new streamBinding!.WriteWrap();
    req.handle = handle;
    req.oncomplete = this.afterQueuedWrite;
    req.async = false;
    req.bytes = 0;
    req.buffer = null;
    return req;
  }

  private readonly afterQueuedWrite = (status: number): void => {
    this.pending--;
    this.writeFinished();
    if (status < 0) {
      this.socket.destroy(writeError(status));
      return;
    }
    if (!this.queued && this.onDrain !== null) this.onDrain();
  };
}

function writeError(status: number): Error {
  const code = getSystemErrorName(status);
  return Object.assign(new Error(`write ${code}`), { code, errno: status, syscall: "write" });
}
