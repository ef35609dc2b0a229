// After login, a client socket is re-created around the same handle with net's `onread`, so
// commands are read into a reused buffer instead of through the Readable stream (Node has no
// `onread` option for accepted sockets). A TLS socket's handle is its TLS stream (TLSWrap), which
// reads decrypted bytes the same way; only a plain TCP or Unix-socket handle is also written directly
// (lib/libuv-stream.ts).
// `_handle` is Node's long-standing internal field for a socket's libuv handle.

import net from "node:net";
import type { Duplex } from "node:stream";
import type { SocketReader } from "../lib/socket-reader.js";

interface WithHandle {
  _handle: unknown;
}

export function rebindForForwarding(socket: Duplex, reader: SocketReader): net.Socket | null {
  if (!(socket instanceof net.Socket)) return null;
  const handle = (socket as unknown as WithHandle)._handle;
  // Anything still buffered on the old stream would be lost: then keep the stream.
  if (!handle || socket.readableLength > 0 || socket.writableLength > 0 || socket.destroyed) return null;
  socket.pause();
  socket.removeAllListeners("data");
  (socket as unknown as WithHandle)._handle = null;
  socket.removeAllListeners("close");
  socket.on("error", () => undefined);
  socket.destroy(); // releases the old object only: it no longer owns the handle
  return new net.Socket({ handle: handle as never, onread: reader.onread, readable: true, writable: true } as net.SocketConstructorOpts);
}
