// Backend → client: the ResponseScanner walks each chunk of a response in place and the chunk goes
// to the client as it arrives, unchanged (the scanner only holds back a status packet split across
// chunks, and hands it over whole in `emit`). A client that cannot take more pauses the backend
// socket until it drains. The chunk is a view of the backend reader's buffer: when the client
// socket keeps it, the reader moves on to another buffer and takes this one back once written.

import type { Duplex } from "node:stream";
import type { BackendConnection } from "../backend/backend-connection.js";
import type { ChunkSink } from "../lib/socket-reader.js";
import { SocketWriter } from "../lib/socket-writer.js";
import { ProtocolError } from "../protocol/reader.js";
import { ResponseScanner } from "../protocol/response-scanner.js";
import { failStatement } from "./backend-loss.js";
import { internalError } from "./internal-error.js";
import type { ResponseEffects } from "./response-effects.js";
import type { Session } from "./session.js";

export class ResponseForwarder implements ChunkSink {
  readonly scanner: ResponseScanner;
  /** writes forwarded chunks to the client (made once the client socket is final) */
  private out!: SocketWriter;
  private backendPaused = false;

  constructor(private readonly s: Session, effects: ResponseEffects) {
    this.scanner = new ResponseScanner(effects);
    this.onChunk = this.onChunk.bind(this);
    this.onClientDrain = this.onClientDrain.bind(this);
  }

  /** Responses go to `client` from now on (a compressing client's stream replaces its socket after login). */
  useClient(client: Duplex): void {
    if (this.out !== undefined) this.out.onDrain = null; // the socket under the new stream drains for it
    this.out = new SocketWriter(client);
    this.out.onDrain = this.onClientDrain;
  }

  /** Forwarding reads on `b` start (or resume after Ferry ran its own statements there). */
  listen(b: BackendConnection): void {
    if (b.reader) b.reader.sink = this;
    else b.socket.on("data", this.onChunk);
  }

  /** Forwarding reads on `b` stop. */
  unlisten(b: BackendConnection): void {
    if (b.reader) b.reader.sink = null;
    else b.socket.off("data", this.onChunk);
  }

  onChunk(chunk: Buffer): void {
    try {
      this.forward(chunk);
    } catch (e) {
      internalError(this.s, e);
    }
  }

  private forward(chunk: Buffer): void {
    const sc = this.scanner;
    if (!sc.active) {
      this.unsolicited(chunk);
      return;
    }
    let r: number;
    try {
      r = sc.scan(chunk, 0, chunk.length);
    } catch (e) {
      // The response broke the protocol; any other fault is Ferry's own, not the server's.
      if (!(e instanceof ProtocolError || e instanceof RangeError)) throw e;
      this.malformed(chunk, e.message);
      return;
    }
    const from = sc.forwardFrom;
    const until = r >= 0 ? r : sc.forwardUntil;
    let more = true;
    const out = this.out;
    if (sc.emit !== null) more = out.write(sc.emit);
    if (until > from) more = out.write(from === 0 && until === chunk.length ? chunk : chunk.subarray(from, until));
    const b = this.s.backend;
    // The client socket queued the chunk instead of writing it: the read buffer must not be reused.
    if (b && b.reader && out.queued) b.reader.renew(out);
    if (!more && b) {
      b.socket.pause();
      this.backendPaused = true;
    }
    if (r >= 0) {
      this.s.loop.responseDone();
      if (r < chunk.length) this.unsolicited(chunk.subarray(r));
    }
  }

  /**
   * The backend sent a packet that breaks the protocol. The whole packets before it go to the
   * client, the bad one and the connection do not: in its place the statement gets 2013, as for a
   * connection lost between packets, and the session carries on elsewhere when it can.
   */
  private malformed(chunk: Buffer, why: string): void {
    const where = this.s.backendAddress;
    this.s.log.error({ err: why, server: where }, "backend sent a malformed response");
    const sc = this.scanner;
    if (sc.emit !== null) this.out.write(sc.emit);
    if (sc.goodUntil > sc.forwardFrom) this.out.write(chunk.subarray(sc.forwardFrom, sc.goodUntil));
    this.s.dropBackend();
    failStatement(this.s, where, sc.lastSeq, `lost connection to the backend ${where}: malformed response (${why})`);
  }

  private onClientDrain(): void {
    const b = this.s.backend;
    if (this.backendPaused && b) {
      this.backendPaused = false;
      b.socket.resume();
    }
  }

  /** Data from a backend with no command in flight: an error before it disconnects us. */
  private unsolicited(chunk: Buffer): void {
    this.s.log.warn({ server: this.s.backendAddress, bytes: chunk.length, first: chunk[4] }, "unsolicited data from backend");
  }
}
