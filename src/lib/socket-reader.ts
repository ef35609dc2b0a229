// Reads a socket into one reused buffer (net's `onread`), so forwarded responses skip the
// Readable stream and its allocation per chunk. The chunk handed to the sink is a view of that
// buffer: a sink that keeps a reference past the call (a write the socket queued instead of
// completing) must call renew() so the next read goes to a fresh buffer.

export interface ChunkSink {
  onChunk(chunk: Buffer): void;
}

const READ_BUFFER_SIZE = 64 * 1024;

export class SocketReader {
  private buf = Buffer.allocUnsafe(READ_BUFFER_SIZE);
  sink: ChunkSink | null = null;
  readonly onread: { buffer: () => Buffer; callback: (n: number, buf: Buffer) => boolean };

  constructor() {
    // Two closures per connection, bound once; nothing is allocated per read but the chunk view.
    this.onread = {
      buffer: () => this.buf,
      callback: (n: number, buf: Buffer): boolean => {
        const sink = this.sink;
        if (sink) sink.onChunk(n === buf.length ? buf : buf.subarray(0, n));
        return true;
      },
    };
  }

  renew(): void {
    this.buf = Buffer.allocUnsafe(READ_BUFFER_SIZE);
  }
}

/** A sink that keeps what it reads (connection phase): copies, since the read buffer is reused. */
export function copyingSink(push: (chunk: Buffer) => void): ChunkSink {
  return { onChunk: (chunk) => push(Buffer.from(chunk)) };
}
