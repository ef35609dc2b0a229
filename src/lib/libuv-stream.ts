// Node's stream binding, for reading and writing a plain TCP or Unix socket's libuv handle directly.
//
// net.Socket reads and writes through the Readable/Writable machinery: a WriteWrap object, a
// callback and stream bookkeeping per write, timer and state checks per read. On a proxy's
// forwarding path that machinery costs more user CPU than everything the proxy does with the
// bytes. The handle under a net.Socket offers the same operations natively: `writeBuffer(req,
// buf)` tries a synchronous write first (the common case: the kernel takes the bytes at once and
// `req` is never used), and `onread` receives each read into a buffer of the caller's choosing.
//
// These are Node internals (`process.binding("stream_wrap")`, a socket's `_handle`), stable from
// Node 12 through 22. Everything here checks their shape once at load and per socket; when a check
// fails, callers use the public socket API instead, so a Node release that changes them costs
// speed, not correctness.

import net from "node:net";
import type { Duplex } from "node:stream";

export interface WriteReq {
  handle: unknown;
  oncomplete: (status: number) => void;
  async: boolean;
  bytes: number;
  buffer: Buffer | null;
}

export interface StreamHandle {
  writeBuffer(req: WriteReq, buf: Buffer): number;
  useUserBuffer(buf: Buffer): void;
  onread: (arrayBuffer: unknown) => unknown;
}

interface StreamBinding {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
  kReadBytesOrError: number;
  /** libuv's TCP and Unix-socket handle classes: only their instances are read and written directly */
  TCP: abstract new () => unknown;
  Pipe: abstract new () => unknown;
}

function load(): StreamBinding | null {
  try {
    const binding = (process as unknown as { binding(name: string): Record<string, unknown> }).binding;
    const b = binding("stream_wrap") as Partial<StreamBinding>;
    const { TCP } = binding("tcp_wrap") as { TCP?: unknown };
    const { Pipe } = binding("pipe_wrap") as { Pipe?: unknown };
    if (typeof b.WriteWrap !== "function" || !(b.streamBaseState instanceof Int32Array) || typeof TCP !== "function" || typeof Pipe !== "function") return null;
    if (typeof b.kLastWriteWasAsync !== "number" || typeof b.kReadBytesOrError !== "number") return null;
    return { ...b, TCP, Pipe } as StreamBinding;
  } catch {
    return null;
  }
}

/** The binding, or null when this Node does not offer it in the expected shape. */
export const streamBinding: StreamBinding | null = process.env.FERRY_STREAM_IO === "off" ? null : load();

/**
 * The libuv TCP or Unix-socket handle under a plain connected socket, when direct I/O can use
 * it. Not a TLS socket's handle, nor a socket's re-wrapped around a TLS handle (rebind.ts): TLS
 * allows one write in flight where libuv queues any number.
 */
export function streamHandleOf(socket: Duplex): StreamHandle | null {
  if (streamBinding === null || !(socket instanceof net.Socket)) return null;
  const h = (socket as unknown as { _handle: Partial<StreamHandle> | null })._handle;
  if (!h || !(h instanceof streamBinding.TCP || h instanceof streamBinding.Pipe)) return null;
  if (typeof h.writeBuffer !== "function" || typeof h.useUserBuffer !== "function" || typeof h.onread !== "function") return null;
  return h as StreamHandle;
}

/** The TLS handle class, looked up whether or not direct I/O is on; null on a Node without TLS. */
const TLSWrap = ((): (abstract new () => unknown) | null => {
  try {
    const { TLSWrap: c } = (process as unknown as { binding(name: string): { TLSWrap?: unknown } }).binding("tls_wrap");
    return typeof c === "function" ? (c as abstract new () => unknown) : null;
  } catch {
    return null;
  }
})();

/**
 * A socket whose handle is a TLS stream (tls.TLSSocket, or a socket re-wrapped around a TLS
 * handle). Such a handle encrypts a chunk, or copies it to encrypt later, before write() returns,
 * so the chunk's memory is free then, unless the Writable stream above buffered it behind an
 * earlier write (test/lib/socket-io.test.ts checks this on the Node in use).
 */
export function isTlsHandleSocket(socket: Duplex): boolean {
  if (TLSWrap === null || !(socket instanceof net.Socket)) return false;
  return (socket as unknown as { _handle: unknown })._handle instanceof TLSWrap;
}
