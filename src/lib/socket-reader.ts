// Reads a socket into one reused buffer, so forwarded bytes skip the Readable stream and its
// allocation per chunk. The chunk handed to the sink is a view of that buffer: a sink that keeps
// a reference past the call (a write the peer socket queued instead of completing) must call
// renew() so the next read goes to a fresh buffer. Named with the writer that keeps the chunk,
// the old buffer is used again once that writer has written it: a client slower than its server
// then costs no allocation per read.
//
// Sockets are created with net's `onread` option (so pause() and resume() stop and start the
// handle directly); attach() then takes over the handle's read callback for plain TCP and Unix sockets
// (libuv-stream.ts): a read with data goes straight to the sink, and end of stream and errors go
// on to net's own callback. Reads then do not refresh a socket's `setTimeout` timer; Ferry keeps
// its own timers.

import type { Duplex } from "node:stream";
import { streamBinding, streamHandleOf } from "./libuv-stream.js";

export interface ChunkSink {
  onChunk(chunk: Buffer): void;
}

const READ_BUFFER_SIZE = 64 * 1024;

/**
 * Read buffers of closed sockets, for the next sockets to read into. A connection's two 64 KB
 * buffers would otherwise wait for a major garbage collection under connection churn (tens of MB
 * of them at a time), and each new connection would take two fresh allocations from the native heap.
 */
const freeBuffers: Buffer[] = [];
const FREE_BUFFERS_KEPT = 64;

function readBuffer(): Buffer {
  return freeBuffers.pop() ?? Buffer.allocUnsafe(READ_BUFFER_SIZE);
}

/** The writer holding a chunk of the read buffer: says when what it holds is written. */
export interface ChunkKeeper {
  whenWritten(fn: () => void): void;
}

export class SocketReader {
  private buf: Buffer = readBuffer();
  /** a buffer given up by renew() and written since: the next renew() reads into it */
  private spare: Buffer | null = null;
  sink: ChunkSink | null = null;
  private socketClosed = false;
  private releaseWanted = false;
  /** the socket has closed and the owner released the buffers: they went to later sockets */
  private get released(): boolean {
    return this.socketClosed && this.releaseWanted;
  }
  readonly onread: { buffer: () => Buffer; callback: (n: number, buf: Buffer) => boolean };

  constructor() {
    // Closures per connection, made once; nothing is allocated per read but the chunk view.
    this.onread = {
      buffer: () => this.buf,
      callback: (n: number, buf: Buffer): boolean => {
        this.deliver(n, buf);
        return true;
      },
    };
  }

  /** Reads the socket's handle directly from now on (a no-op where direct I/O is unavailable). */
  attach(socket: Duplex): void {
    const handle = streamHandleOf(socket);
    if (handle === null) return;
    const state = streamBinding!.streamBaseState;
    const kNread = streamBinding!.kReadBytesOrError;
    const netOnread = handle.onread;
    // The buffer the handle reads into: renew() may run outside a read (a chunk held later), so the
    // data of a read is always in `target`, and the new buffer becomes the target at the next read.
    let target = this.buf;
    handle.useUserBuffer(target);
    handle.onread = (arrayBuffer: unknown): unknown => {
      const n = state[kNread];
      if (n <= 0) return netOnread.call(handle, arrayBuffer);
      this.deliver(n, target);
      if (this.buf === target) return undefined;
      // Returning a buffer makes it the handle's next read target.
      target = this.buf;
      return target;
    };
  }

  private deliver(n: number, buf: Buffer): void {
    const sink = this.sink;
    if (sink) sink.onChunk(n === buf.length ? buf : this.viewOf(buf, n));
  }

  /**
   * buf[0, n) as a Buffer. Request/response traffic repeats its sizes (the same statement, the same
   * row shape), so the last view is kept and handed out again while buffer and size match: views
   * never change, only the bytes under them do.
   */
  private view: Buffer = this.buf.subarray(0, 0);
  private viewOfBuf: Buffer = this.buf;
  private viewOf(buf: Buffer, n: number): Buffer {
    if (this.viewOfBuf === buf && this.view.length === n) return this.view;
    this.viewOfBuf = buf;
    return (this.view = buf.subarray(0, n));
  }

  /**
   * Reads go to another buffer from now on. `keeper`: the writer holding the old buffer's chunk,
   * after which it is kept as the spare; without one the old buffer is left to whoever holds it.
   */
  renew(keeper: ChunkKeeper | null = null): void {
    if (this.released) {
      // Its buffers went to other sockets (no read comes after a close, so neither should this).
      this.buf = Buffer.allocUnsafe(READ_BUFFER_SIZE);
      return;
    }
    const old = this.buf;
    this.buf = this.spare ?? readBuffer();
    this.spare = null;
    if (keeper !== null) keeper.whenWritten(() => {
      if (this.released) giveBack(old);
      else if (this.spare === null && old !== this.buf) this.spare = old;
    });
  }

  /** Watches `socket` (the one this reads) for its close: its buffers may then go to later sockets. */
  watchClose(socket: Duplex): void {
    socket.once("close", () => {
      this.socketClosed = true;
      if (this.released) this.giveBackBuffers();
    });
  }

  /**
   * The owner refers to no chunk any more (a command's bytes kept for a retry included): once the
   * socket has closed, nothing reads into the buffers either, and they go to later sockets. Only the
   * current buffer and the spare: a chunk still held (which made renew() give up its buffer) keeps
   * its own, and one a writer still holds comes back when written.
   */
  release(): void {
    if (this.releaseWanted) return;
    this.releaseWanted = true;
    if (this.released) this.giveBackBuffers();
  }

  /** Called once, when the second of the socket's close and the owner's release() comes. */
  private giveBackBuffers(): void {
    this.sink = null;
    giveBack(this.buf);
    if (this.spare !== null) giveBack(this.spare);
    this.spare = null;
  }
}

/** Keeps a buffer for later sockets; never twice (two sockets reading into one buffer would mix their bytes). */
function giveBack(buf: Buffer): void {
  if (freeBuffers.length < FREE_BUFFERS_KEPT && !freeBuffers.includes(buf)) freeBuffers.push(buf);
}

/** A sink that keeps what it reads (connection phase): copies, since the read buffer is reused. */
export function copyingSink(push: (chunk: Buffer) => void): ChunkSink {
  return { onChunk: (chunk) => push(Buffer.from(chunk)) };
}
