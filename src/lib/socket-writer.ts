// Writes forwarded chunks to a socket. On a plain TCP or Unix socket the chunk goes to the libuv handle
// directly (libuv-stream.ts): when the kernel takes it at once, as it does for nearly every chunk,
// nothing is allocated and no callback is scheduled. When the kernel cannot take it all, libuv
// queues the rest, in order, behind anything already queued; the chunk stays referenced until then,
// and `onDrain` runs when the queue is empty. Writes made through the socket's own write() (Ferry's
// own packets, TLS sockets) go to the same libuv queue, so order is kept; while the Writable stream
// holds data of its own, chunks go through it too, behind that data.

import type { Duplex } from "node:stream";
import { getSystemErrorName } from "node:util";
import { streamBinding, streamHandleOf, type StreamHandle, type WriteReq } from "./libuv-stream.js";

export class SocketWriter {
  /** runs when writing may go on after write() returned false */
  onDrain: (() => void) | null = null;
  /** the socket's handle when writes can go to it directly */
  private readonly handle: StreamHandle | null;
  /** reused for every write the kernel completes at once; replaced after one that is queued */
  private req: WriteReq | null = null;
  /** direct writes queued in libuv */
  private pending = 0;

  constructor(private readonly socket: Duplex) {
    this.handle = streamHandleOf(socket);
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
    if (handle === null || s.writableLength > 0 || s.destroyed || s.writableEnded) return s.write(chunk);
    const b = streamBinding!;
    const req = this.req ?? this.newReq(handle);
    const err = handle.writeBuffer(req, chunk);
    if (err !== 0) {
      this.req = req;
      s.destroy(writeError(err));
      return false;
    }
    if (b.streamBaseState[b.kLastWriteWasAsync] === 0) {
      this.req = req;
      return true;
    }
    // The kernel took part of it: libuv owns `req` and the chunk until the write completes.
    req.buffer = chunk;
    this.req = null;
    this.pending++;
    return false;
  }

  /** True while something written is not yet handed to the kernel (its memory must stay as it is). */
  get queued(): boolean {
    return this.pending > 0 || this.socket.writableLength > 0;
  }

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
