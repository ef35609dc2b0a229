// The client side of a session: a small state machine over the client's byte stream. Idle (next
// bytes start a command), Forward (rest of a command's packets), Wait (command sent, response
// pending: further client bytes are held and the client paused), Infile (client streams LOAD DATA
// LOCAL file packets), Busy (Ferry answers the command itself, or readies the connection it runs
// on). ClientInput reads the client and holds what arrives while the loop cannot take it,
// ClientFraming walks the packet headers, command-dispatch.ts decides what each command is. At each
// command boundary the loop reads back state the tracker cannot see, then lets a pending close or
// move run before the client's next command.
//
// Handlers are bound once; nothing per packet allocates except a Buffer view when a chunk holds
// more than the current command.

import { performance } from "node:perf_hooks";
import { CLIENT_DEPRECATE_EOF, HEADER_SIZE, MARIADB_CLIENT_CACHE_METADATA } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { Shape } from "../protocol/response-scanner.js";
import { framePayload } from "../protocol/writer.js";
import { HandshakeFailure } from "../frontend/client-handshake.js";
import { InFlight } from "./backend-loss.js";
import { ClientFraming, type CommandSink } from "./client-framing.js";
import { ClientInput } from "./client-input.js";
import { dispatchCommand } from "./command-dispatch.js";
import { guarded, internalError } from "./internal-error.js";
import type { Session } from "./session.js";
import type { StatementEffects } from "./statement-effects.js";
import { refreshState, systemVariablesToReadBack } from "./state-refresh.js";

const enum C { Idle, Forward, Wait, Infile, Busy, Closed }

export class CommandLoop implements CommandSink {
  private cstate = C.Idle;
  /** where the client's packet stream stands (command start, rest of a command, file upload) */
  readonly framing = new ClientFraming(this);
  /** reads the client socket, and holds what arrives while a response is pending */
  readonly input: ClientInput;
  private cmdTimer: NodeJS.Timeout | null = null;
  private closeWhenIdleRequested = false;
  /**
   * Where the last command dispatched lies, when it was whole in one buffer: its bytes stay there
   * until the client's next read (the reader reuses its buffer only for a read), so they can be
   * sent again (read-retry.ts) without copying every command.
   */
  private cmdBuf: Buffer | null = null;
  private cmdPos = 0;
  private cmdEnd = 0;

  constructor(private readonly s: Session) {
    this.onClientData = this.onClientData.bind(this);
    this.input = new ClientInput(this.onClientData);
    this.onBackendDrain = this.onBackendDrain.bind(this);
    this.onCommandTimeout = this.onCommandTimeout.bind(this);
    this.resumeClient = this.resumeClient.bind(this);
    this.endBusy = this.endBusy.bind(this);
    this.afterRefresh = this.afterRefresh.bind(this);
  }

  private get deprecateEof(): boolean { return (this.s.auth.capabilities & CLIENT_DEPRECATE_EOF) !== 0; }
  /** backend connections of a session that has it have it too (backend-login.ts) */
  private get cacheMetadata(): boolean { return (this.s.auth.mariadbCapabilities & MARIADB_CLIENT_CACHE_METADATA) !== 0; }

  // ---- client → backend ------------------------------------------------------------------

  /** Client bytes, as read (also the login's leftover, and bytes an exchange read past its end). */
  onClientData(chunk: Buffer): void {
    const s = this.s;
    this.cmdBuf = null;
    try {
      this.processClient(chunk, 0);
      this.input.afterChunk(s.backend !== null ? s.backend.out : null);
    } catch (e) {
      internalError(s, e, true);
    }
  }

  private processClient(chunk: Buffer, pos: number): void {
    const s = this.s;
    const end = chunk.length;
    while (pos < end && !s.isClosed) {
      switch (this.cstate) {
        case C.Wait:
        case C.Busy:
          this.input.hold(pos === 0 ? chunk : chunk.subarray(pos));
          return;
        case C.Idle:
          if (s.backend === null) {
            // The backend was lost while idle: hold the command until the session has reconnected.
            this.input.hold(pos === 0 ? chunk : chunk.subarray(pos));
            s.mover.awaitReconnect();
            return;
          }
          pos = this.framing.readCommandStart(chunk, pos, end);
          break;
        case C.Forward:
        case C.Infile: {
          const next = this.framing.walk(chunk, pos, end, this.cstate === C.Infile);
          if (next > pos) this.writeBackend(pos === 0 && next === chunk.length ? chunk : chunk.subarray(pos, next));
          pos = next;
          if (this.framing.ended) this.commandSent();
          break;
        }
        case C.Closed:
          return;
      }
    }
  }

  /** CommandSink: a command's first packet is in buf. */
  dispatch(buf: Buffer, pos: number, end: number, len: number, seq: number): number {
    this.s.activeSinceSweep = true;
    this.cmdBuf = end - pos >= HEADER_SIZE + len ? buf : null;
    this.cmdPos = pos;
    this.cmdEnd = pos + HEADER_SIZE + len;
    return dispatchCommand(this.s, buf, pos, end, len, seq);
  }

  /** Holds a command while Ferry readies the connection it runs on, then replays it (not routed again). */
  holdWhile(command: Buffer, work: Promise<void>): void {
    const s = this.s;
    this.input.hold(command);
    this.cstate = C.Busy;
    s.routeDecided = true;
    void work.finally(() => {
      if (s.isClosed) return;
      this.cstate = C.Idle;
      guarded(s, this.resumeClient);
    });
  }

  private onCommandTimeout(): void {
    const s = this.s;
    this.cmdTimer = null;
    s.log.info({ timeoutMs: s.route.timeoutMs }, "statement over its query rule timeout: killing it");
    s.kill(true).catch((e: Error) => s.log.warn({ err: e.message }, "could not kill a statement over its timeout"));
  }

  /** Forwards a command's first packet: whatever of it is in this buffer now, the rest as it comes. */
  forwardCommand(buf: Buffer, pos: number, end: number, len: number, shape: Shape): number {
    const s = this.s;
    s.command.startedAt = performance.now();
    if (s.route.timeoutMs > 0) this.cmdTimer = setTimeout(this.onCommandTimeout, s.route.timeoutMs);
    const stop = Math.min(end, pos + HEADER_SIZE + len);
    this.writeBackend(pos === 0 && stop === buf.length ? buf : buf.subarray(pos, stop));
    s.tracker.inCommand = true;
    s.scanner.begin(shape, this.deprecateEof, this.cacheMetadata);
    if (this.framing.expect(len, stop - pos - HEADER_SIZE)) this.cstate = C.Forward;
    else this.commandSent();
    return stop;
  }

  /** The whole command is on its way to the backend. */
  private commandSent(): void {
    if (this.s.scanner.active) {
      this.cstate = C.Wait;
    } else {
      // no response expected (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA)
      this.s.tracker.inCommand = false;
      this.cstate = C.Idle;
    }
  }

  private writeBackend(bytes: Buffer): void {
    const b = this.s.backend;
    if (b && !b.out.write(bytes)) this.input.pause();
  }

  /** The backend socket took everything written to it (set as its writer's onDrain). */
  onBackendDrain(): void {
    if (this.cstate !== C.Wait && this.cstate !== C.Busy) this.input.unpause();
  }

  /** Sends a command Ferry rewrote (whole, in `payload`) in place of the client's; returns `next`. */
  sendRebuilt(payload: Buffer, next: number): number {
    const s = this.s;
    this.writeBackend(framePayload(payload, 0));
    s.command.startedAt = performance.now();
    s.tracker.inCommand = true;
    s.scanner.begin(Shape.Result, this.deprecateEof, this.cacheMetadata);
    this.commandSent();
    return next;
  }

  // ---- backend → client ------------------------------------------------------------------

  /** The bytes of the command in flight, when no client read came since it was dispatched. */
  sentCommand(): Buffer | null {
    return this.cmdBuf === null ? null : this.cmdBuf.subarray(this.cmdPos, this.cmdEnd);
  }

  /** The statement in flight is given up (its backend is gone): the session is between commands. */
  abandonStatement(): void {
    this.s.tracker.inCommand = false;
    this.clearCommandTimer();
    this.s.scanner.begin(Shape.None, this.deprecateEof);
    this.cstate = C.Idle;
  }

  /** Where the command stands, for what losing the backend means to it (backend-loss.ts). */
  get inFlight(): InFlight {
    switch (this.cstate) {
      case C.Wait: return this.s.scanner.atPacketBoundary ? InFlight.AtBoundary : InFlight.Midway;
      case C.Forward:
      case C.Infile: return InFlight.Midway;
      default: return InFlight.None;
    }
  }

  /** The sequence id an ERR replacing the rest of the response carries. */
  get nextResponseSeq(): number {
    const sc = this.s.scanner;
    return sc.started ? (sc.lastSeq + 1) & 0xff : 1;
  }

  /** The response ended (ResponseForwarder): the session is between commands. */
  responseDone(): void {
    const s = this.s;
    if (s.serverStats !== null) {
      const now = performance.now();
      s.serverStats.observe(now - s.command.startedAt, now);
    }
    this.clearCommandTimer();
    s.readRetries = 0;
    const ok = s.effects.finish();
    this.cstate = C.Idle;
    this.atBoundary(ok ? s.command.effects : null);
  }

  private clearCommandTimer(): void {
    if (this.cmdTimer !== null) {
      clearTimeout(this.cmdTimer);
      this.cmdTimer = null;
    }
  }

  /**
   * Between commands: read back state the tracker cannot see in OK packets, then honour a pending
   * close or move, then go on with the client's next command.
   */
  private atBoundary(fx: StatementEffects | null): void {
    const s = this.s;
    if (this.closedOnRequest()) return;
    const userVars = s.tracker.userVariablesUnseen || (fx !== null && fx.userVars.length > 0);
    const needsRefresh = s.trackingReset || userVars || s.command.unresolvedCalls !== null ||
      (fx !== null && systemVariablesToReadBack(fx, s.backendTracksState).length > 0);
    if (needsRefresh && s.backend) {
      s.tracker.userVariablesStale = userVars;
      this.cstate = C.Busy;
      this.input.pause();
      refreshState(s, fx).catch((e: Error) => {
        s.log.warn({ err: e.message }, "could not read back session state; the session stays pinned until the next read succeeds");
      }).finally(() => {
        if (s.isClosed) return;
        this.cstate = C.Idle;
        guarded(s, this.afterRefresh);
      });
      return;
    }
    this.afterRefresh();
  }

  private afterRefresh(): void {
    this.s.mover.maybe();
    if (!this.s.mover.moving) this.resumeClient();
  }

  /** Between commands, Ferry not busy on the session's connections. */
  get atCommandBoundary(): boolean {
    return this.cstate === C.Idle;
  }

  /** At a command boundary, with nothing in flight and nothing pinning the session. */
  get atMovableBoundary(): boolean {
    return this.cstate === C.Idle && !this.s.scanner.active && this.s.tracker.movable;
  }

  /** Between commands with nothing in flight or waiting: the idle clock runs (idle-sweep.ts). */
  get idle(): boolean {
    return this.cstate === C.Idle && !this.s.scanner.active && !this.input.holding;
  }

  /** Ferry works on the session's connections (a move): the client's commands wait. */
  beginBusy(): void {
    this.cstate = C.Busy;
    this.input.pause();
  }

  endBusy(): void {
    this.cstate = C.Idle;
    if (!this.closedOnRequest()) this.resumeClient();
  }

  /** Closes the session at its next boundary outside a transaction (graceful shutdown). */
  closeWhenIdle(): void {
    const s = this.s;
    this.closeWhenIdleRequested = true;
    if (this.cstate === C.Idle && !s.scanner.active && !s.mover.moving) this.closedOnRequest();
  }

  /** At a boundary: closes the session if closeWhenIdle() asked for it and no transaction is open. */
  private closedOnRequest(): boolean {
    if (!this.closeWhenIdleRequested || this.s.tracker.inTransaction) return false;
    this.s.close();
    return true;
  }

  /**
   * Replays bytes held while a response was pending, then lets the client socket flow again.
   * Without a backend (lost, the move not done yet) a held command waits for one, for at most
   * reconnect_timeout_ms; with nothing held the client may send its next command, which then waits
   * the same way.
   */
  resumeClient(): void {
    const s = this.s;
    if (s.isClosed) return;
    if (this.input.holding && this.cstate === C.Idle && s.backend === null) return s.mover.awaitReconnect();
    if (this.input.holding && this.cstate === C.Idle) {
      // What a replayed chunk holds back again is kept ahead of the chunks not replayed yet.
      const queue = this.input.takeHeld();
      let i = 0;
      while (i < queue.length && this.cstate === C.Idle && !s.isClosed && s.backend !== null) this.processClient(queue[i++], 0);
      this.input.putBack(queue, i);
    }
    if (this.cstate !== C.Wait && this.cstate !== C.Busy && !s.isClosed) this.input.unpause();
  }

  /** The server asked for a LOAD DATA LOCAL file: the client's next packets are the file. */
  startFileUpload(): void {
    this.cstate = C.Infile;
    this.framing.startFile();
    this.resumeClient();
  }

  // ---- commands Ferry answers itself --------------------------------------------------------

  runFerryCommand(work: () => Promise<Buffer>): void {
    const s = this.s;
    this.cstate = C.Busy;
    this.input.pause();
    work().then((reply) => {
      if (s.isClosed) return;
      s.client.write(reply);
      this.cstate = C.Idle;
      // a boundary like any other: COM_CHANGE_USER ends every pin, and a waiting move may run now
      guarded(s, this.afterRefresh);
    }, (e: Error) => {
      if (e instanceof HandshakeFailure) return s.fatal(e.error, e.seq);
      const err = e instanceof FerryError ? e : new FerryError(1105, "HY000", e.message);
      s.fatal(err, 1);
    });
  }

  /** The session closed: nothing more is read, replayed or timed. */
  stop(): void {
    this.cstate = C.Closed;
    this.clearCommandTimer();
    this.input.stop();
  }
}
