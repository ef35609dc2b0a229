// Whole-packet reading for the connection phase only (handshake, authentication, the few
// statements Ferry runs itself). The command phase never uses this: it forwards chunks.

import type { Duplex } from "node:stream";
import { HEADER_SIZE, MAX_PACKET_PAYLOAD } from "./constants.js";
import { ProtocolError } from "./reader.js";

export interface Packet {
  seq: number;
  payload: Buffer;
}

export class PacketStream {
  private socket: Duplex;
  private buffered: Buffer[] = [];
  private bufferedLen = 0;
  private waiter: { resolve: (p: Packet) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;
  private readonly maxPayload: number;

  /** With `fed` set, bytes come through push() instead of the socket's "data" events. */
  constructor(socket: Duplex, maxPayload = 16 * 1024 * 1024, fed = false) {
    this.socket = socket;
    this.maxPayload = maxPayload;
    this.onData = this.onData.bind(this);
    this.onEnd = this.onEnd.bind(this);
    this.onError = this.onError.bind(this);
    if (!fed) socket.on("data", this.onData);
    socket.on("end", this.onEnd);
    socket.on("close", this.onEnd);
    socket.on("error", this.onError);
  }

  /** Stops listening and returns bytes read past the last packet handed out. */
  detach(): Buffer {
    this.socket.off("data", this.onData);
    this.socket.off("end", this.onEnd);
    this.socket.off("close", this.onEnd);
    this.socket.off("error", this.onError);
    const rest = Buffer.concat(this.buffered, this.bufferedLen);
    this.buffered = [];
    this.bufferedLen = 0;
    return rest;
  }

  next(): Promise<Packet> {
    const p = this.tryTake();
    if (p) return Promise.resolve(p);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  push(chunk: Buffer): void {
    this.onData(chunk);
  }

  private onData(chunk: Buffer): void {
    this.buffered.push(chunk);
    this.bufferedLen += chunk.length;
    this.wake();
  }

  private onEnd(): void {
    this.fail(new ProtocolError("connection closed during the connection phase"));
  }

  private onError(err: Error): void {
    this.fail(err);
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err;
    this.wake();
  }

  private wake(): void {
    if (!this.waiter) return;
    let p: Packet | null;
    try {
      p = this.tryTake();
    } catch (e) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(e as Error);
      return;
    }
    if (p) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(p);
    } else if (this.failure) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(this.failure);
    }
  }

  private tryTake(): Packet | null {
    if (this.bufferedLen < HEADER_SIZE) return null;
    if (this.buffered.length > 1) this.buffered = [Buffer.concat(this.buffered, this.bufferedLen)];
    const buf = this.buffered[0];
    // A logical packet may span several physical packets of 0xFFFFFF bytes.
    let off = 0;
    const parts: Buffer[] = [];
    let seq = 0;
    for (;;) {
      if (buf.length - off < HEADER_SIZE) return null;
      const len = buf.readUIntLE(off, 3);
      seq = buf[off + 3];
      if (buf.length - off - HEADER_SIZE < len) {
        if (parts.reduce((n, p) => n + p.length, 0) + len > this.maxPayload) throw new ProtocolError("packet larger than allowed in the connection phase");
        return null;
      }
      parts.push(buf.subarray(off + HEADER_SIZE, off + HEADER_SIZE + len));
      off += HEADER_SIZE + len;
      if (len < MAX_PACKET_PAYLOAD) break;
    }
    const rest = buf.subarray(off);
    this.buffered = rest.length ? [rest] : [];
    this.bufferedLen = rest.length;
    return { seq, payload: parts.length === 1 ? parts[0] : Buffer.concat(parts) };
  }
}
