// How a session reads its client. After login a plain TCP, Unix-socket or TLS client socket is
// re-created for `onread` (frontend/rebind.ts) and read into a reused buffer; other streams (a
// compressing client's) deliver "data" events. Bytes that arrive while the session cannot take a
// command (a response pending, Ferry busy on the connection) are held, and the socket is paused
// until the session replays them. A connection-phase exchange (COM_CHANGE_USER) borrows the socket
// as a PacketStream and hands it back.

import type { Duplex } from "node:stream";
import { copyingSink, SocketReader, type ChunkSink } from "../lib/socket-reader.js";
import type { SocketWriter } from "../lib/socket-writer.js";
import { rebindForForwarding } from "../frontend/rebind.js";
import { PacketStream } from "../protocol/packet-stream.js";

export class ClientInput {
  /** client bytes that arrived while the session could not take them, in order */
  private held: Buffer[] = [];
  /** pause()/resume() on a socket schedule stream work even when nothing changes: only call them on a real change */
  private paused = false;
  /** reads the socket when it could be re-bound for `onread`; else "data" events */
  private reader: SocketReader | null = null;
  private socket: Duplex | null = null;
  private readonly sink: ChunkSink;

  constructor(private readonly onData: (chunk: Buffer) => void) {
    this.sink = { onChunk: onData };
  }

  /**
   * Re-creates the client socket for direct reads, paused until forwarding starts; returns the
   * socket the session uses from now on (the one given when it could not be re-created).
   */
  rebind(socket: Duplex): Duplex {
    const reader = new SocketReader();
    const rebound = rebindForForwarding(socket, reader);
    this.socket = rebound ?? socket;
    if (rebound === null) return socket;
    rebound.pause(); // nothing is read before the login finishes
    this.paused = true;
    this.reader = reader;
    reader.sink = this.sink;
    reader.attach(rebound);
    reader.watchClose(rebound);
    return rebound;
  }

  /** Forwarding starts on `socket` (the compressed protocol's stream replaces the socket here). */
  start(socket: Duplex): void {
    this.socket = socket;
    if (this.reader === null) socket.on("data", this.onData);
  }

  pause(): void {
    if (!this.paused && this.socket !== null) {
      this.paused = true;
      this.socket.pause();
    }
  }

  unpause(): void {
    if (this.paused && this.socket !== null) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /** Keeps bytes the session cannot take now and stops reading more. */
  hold(bytes: Buffer): void {
    this.held.push(bytes);
    this.pause();
  }

  /** Holds a command to run before anything held (a read run again: read-retry.ts). */
  holdFirst(bytes: Buffer): void {
    this.held.unshift(bytes);
    this.pause();
  }

  get holding(): boolean {
    return this.held.length > 0;
  }

  /** The held bytes, for replay; what the replay holds back again goes to a fresh list. */
  takeHeld(): Buffer[] {
    const queue = this.held;
    this.held = [];
    return queue;
  }

  /** Puts back the chunks a replay did not reach, after anything it held back again. */
  putBack(queue: Buffer[], from: number): void {
    for (let i = from; i < queue.length; i++) this.held.push(queue[i]);
  }

  /**
   * After the session processed a chunk read into the reader's buffer. The chunk may live on (held,
   * or queued by the backend socket): then the next read must go to another buffer. One only the
   * backend socket holds is read into again once written.
   */
  afterChunk(backendOut: SocketWriter | null): void {
    const r = this.reader;
    if (r === null) return;
    if (this.held.length > 0) r.renew();
    else if (backendOut !== null && backendOut.queued) r.renew(backendOut);
  }

  /** Hands the client socket to a connection-phase exchange (COM_CHANGE_USER). */
  openPacketStream(): PacketStream {
    const socket = this.socket!;
    let stream: PacketStream;
    if (this.reader !== null) {
      stream = new PacketStream(socket, 1 << 20, true);
      this.reader.sink = copyingSink((c) => stream.push(c));
    } else {
      socket.off("data", this.onData);
      stream = new PacketStream(socket, 1 << 20);
    }
    this.unpause();
    return stream;
  }

  /** Back to forwarding; bytes the exchange read past its last packet are held for the session. */
  closePacketStream(stream: PacketStream): void {
    const leftover = stream.detach();
    if (this.reader !== null) this.reader.sink = this.sink;
    else this.socket!.on("data", this.onData);
    if (leftover.length) this.held.push(leftover);
  }

  /** The session is closing: nothing more is delivered, and no chunk is used again. */
  stop(): void {
    if (this.socket !== null) this.socket.off("data", this.onData);
    if (this.reader !== null) {
      this.reader.sink = null;
      this.reader.release();
    }
  }
}
