// One client session: the command loop between a client socket and its backend connection.
//
// Client side, a small state machine: Idle (next bytes start a command), Forward (rest of a
// command's packets), Wait (command sent, response pending: further client bytes are held and the
// client paused), Infile (client streams LOAD DATA LOCAL file packets), Busy (Ferry answers the
// command itself, or readies the connection it runs on). ClientInput reads the client and holds
// what arrives while the session cannot take it, ClientFraming walks the packet headers,
// command-dispatch.ts decides what each command is. Server side, the ResponseForwarder walks the
// response in place and sends the chunks on unchanged, ResponseEffects tells the StateTracker what
// it changed; backend-loss.ts decides what a lost connection means to the session, and
// internal-error.ts what a fault in Ferry's own code does (it ends this session alone). Handlers
// are bound once; nothing per packet allocates except a Buffer view when a chunk holds more than
// the current command.

import { performance } from "node:perf_hooks";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import type { RuntimeConfig, ServerConfig } from "../config/runtime-config.js";
import type { BackendConnection } from "../backend/backend-connection.js";
import { openBackend } from "./backend-login.js";
import { CLIENT_COMPRESS, CLIENT_DEPRECATE_EOF, FERRY_NO_BACKEND, HEADER_SIZE, SERVER_STATUS_AUTOCOMMIT } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { encodeErr, encodeOk } from "../protocol/packets.js";
import { framePayload } from "../protocol/writer.js";
import { Shape } from "../protocol/response-scanner.js";
import { homeHostgroup, type Router, type ServerStats } from "../router/router.js";
import type { RouteExtras } from "./statement-routing.js";
import { HandshakeFailure, type AuthenticatedClient } from "../frontend/client-handshake.js";
import type { TlsMaterial } from "../frontend/tls-material.js";
import type { StatementEffects } from "./statement-effects.js";
import { StateTracker } from "./state-tracker.js";
import type { PacketStream } from "../protocol/packet-stream.js";
import { CompressedStream } from "../protocol/compressed-stream.js";
import type { SessionRegistry } from "./registry.js";
import { runOnServer } from "./ferry-commands.js";
import { abandonBackend, type MoveSlots } from "./migrator.js";
import { MoveControl } from "./move-control.js";
import { refreshState, systemVariablesToReadBack } from "./state-refresh.js";
import { ParkedConnections } from "./parked-connections.js";
import { ClientFraming, type CommandSink } from "./client-framing.js";
import { ClientInput } from "./client-input.js";
import { CommandInFlight } from "./command-in-flight.js";
import { dispatchCommand } from "./command-dispatch.js";
import { ResponseEffects } from "./response-effects.js";
import { ResponseForwarder } from "./response-forwarder.js";
import { backendClosed, InFlight } from "./backend-loss.js";
import { guarded, internalError } from "./internal-error.js";

const enum C { Idle, Forward, Wait, Infile, Busy, Closed }

export interface SessionDeps {
  config(): RuntimeConfig;
  router: Router;
  registry: SessionRegistry<Session>;
  log: Logger;
  tls: TlsMaterial;
  sha2Cache: Set<string>;
  moves: MoveSlots;
}

export class Session implements CommandSink {
  readonly id: number;
  client: Duplex;
  auth: AuthenticatedClient;
  backend: BackendConnection | null = null;
  readonly tracker = new StateTracker();
  private readonly effects = new ResponseEffects(this);
  /** forwards the backend's responses to the client */
  private readonly response = new ResponseForwarder(this, this.effects);
  private readonly scanner = this.response.scanner;
  readonly deps: SessionDeps;
  readonly log: Logger;

  private cstate = C.Idle;
  /** where the client's packet stream stands (command start, rest of a command, file upload) */
  readonly framing = new ClientFraming(this);
  /** reads the client socket, and holds what arrives while a response is pending */
  private readonly input: ClientInput;
  /** the command in flight, as dispatch saw it */
  readonly command = new CommandInFlight();
  private closed = false;
  private readonly release: () => void;
  /** hostgroup of the active backend connection */
  hostgroup: number;
  /** hostgroup the session lives in (user default or route); commands no rule sends elsewhere go here */
  homeHostgroup: number;
  /** connections of other hostgroups, brought up to date when a statement is routed back to them */
  readonly parked: ParkedConnections;
  /** the next command was routed already (it was held while Ferry readied its connection) */
  routeDecided = false;
  /** what routing decided beyond the hostgroup, for the command being dispatched */
  readonly route: RouteExtras = { timeoutMs: 0, prepareHostgroup: 0 };
  /** an error to answer the next command with instead of running it (a failed preparation) */
  failNext: FerryError | null = null;
  private cmdTimer: NodeJS.Timeout | null = null;
  private serverStats: ServerStats | null = null;
  /** address of a backend lost while the session was idle (it reconnects elsewhere) */
  lostFrom: string | null = null;
  readonly mover: MoveControl;
  private closeWhenIdleRequested = false;
  /** a command was dispatched since the idle sweep last looked (idle-sweep.ts) */
  activeSinceSweep = true;
  /** performance.now() from which the sweep counts the session idle */
  idleSince = 0;
  /** wait_timeout (s) the server gave the session at login; a SET the tracker saw overrides it */
  loginWaitTimeout: number | null = null;

  constructor(id: number, auth: AuthenticatedClient, deps: SessionDeps, release: () => void = () => undefined) {
    this.id = id;
    this.release = release;
    this.auth = auth;
    this.client = auth.socket;
    this.deps = deps;
    this.log = deps.log.child({ session: id, user: auth.user.name, client: auth.clientAddr, ...(auth.proxiedBy ? { via: auth.proxiedBy } : {}) });
    this.onClientData = this.onClientData.bind(this);
    this.input = new ClientInput(this.onClientData);
    this.onBackendDrain = this.onBackendDrain.bind(this);
    this.onClientClose = this.onClientClose.bind(this);
    this.onBackendClose = this.onBackendClose.bind(this);
    this.onSocketError = this.onSocketError.bind(this);
    this.tracker.schema = auth.database;
    this.tracker.collation = auth.collation;
    this.parked = new ParkedConnections(deps.router);
    this.mover = new MoveControl(this);
    this.homeHostgroup = homeHostgroup(deps.config(), auth.user, auth.clientAddr, auth.labels);
    this.hostgroup = this.homeHostgroup;
    this.onCommandTimeout = this.onCommandTimeout.bind(this);
  }

  /** the tenant labels servers must carry, or null when the client brought none */
  get labels(): Readonly<Record<string, string>> | null {
    for (const _ in this.auth.labels) return this.auth.labels;
    return null;
  }

  get userName(): string { return this.auth.user.name; }
  get backendThreadId(): number { return this.backend ? this.backend.threadId : -1; }
  get backendAddress(): string | null { return this.backend ? this.backend.server.address : null; }
  get hasBackend(): boolean { return this.backend !== null; }
  private get deprecateEof(): boolean { return (this.auth.capabilities & CLIENT_DEPRECATE_EOF) !== 0; }

  /** Connects the first backend and finishes the client's login with OK (or the backend's error). */
  async start(): Promise<void> {
    // A compressing client is read and written through a CompressedStream, not the handle.
    const compress = (this.auth.capabilities & CLIENT_COMPRESS) !== 0;
    if (!compress) this.client = this.auth.socket = this.input.rebind(this.client);
    this.response.useClient(this.client);
    this.client.on("error", this.onSocketError);
    this.client.on("close", this.onClientClose);
    try {
      const b = await openBackend(this, this.homeHostgroup, this.auth.database);
      if (this.closed) {
        // The client went (or Ferry closed it) while the backend login ran.
        return abandonBackend(this, b);
      }
      this.attachBackend(b);
      this.loginWaitTimeout = b.waitTimeout;
    } catch (e) {
      const err = e instanceof FerryError ? e : new FerryError(FERRY_NO_BACKEND, "08S01", String(e));
      this.log.warn({ err: err.message }, "session could not get a backend");
      this.client.end(encodeErr(this.auth.nextSeq, err.errno, err.sqlState, err.message));
      this.close();
      return;
    }
    this.deps.registry.add(this);
    this.log.debug({ server: this.backendAddress, compress }, "session started");
    this.client.write(encodeOk(this.auth.nextSeq, { statusFlags: SERVER_STATUS_AUTOCOMMIT }, this.auth.capabilities));
    let leftover = this.auth.leftover;
    if (compress) {
      // Compression starts with the first command, after the login's OK.
      this.client = this.auth.socket = new CompressedStream(this.client, leftover);
      this.client.on("error", this.onSocketError);
      this.response.useClient(this.client);
      leftover = Buffer.alloc(0);
    }
    this.input.start(this.client);
    if (leftover.length) this.onClientData(leftover);
    this.input.unpause();
  }

  /** how loud a failed backend login is: a long outage's repeated retries log quietly */
  get connectFailureLevel(): "warn" | "debug" {
    return this.mover.failureLevel;
  }

  attachBackend(b: BackendConnection): void {
    this.backend = b;
    this.hostgroup = b.server.hostgroup;
    this.serverStats = this.deps.router.statsOf(b.server.address);
    if (b.initialTrack) this.tracker.applyTrack(b.initialTrack);
    this.response.listen(b);
    b.out.onDrain = this.onBackendDrain;
    b.socket.on("close", this.onBackendClose);
    b.socket.on("error", this.onSocketError);
  }

  /** Takes the active connection off the session; `release`: it no longer counts for its server. */
  detachBackend(release = true): BackendConnection | null {
    const b = this.backend;
    if (!b) return null;
    this.response.unlisten(b);
    b.out.onDrain = null;
    b.socket.off("close", this.onBackendClose);
    b.socket.off("error", this.onSocketError);
    this.backend = null;
    this.serverStats = null;
    if (release) this.deps.router.release(b.server.address);
    return b;
  }

  // ---- client → backend ------------------------------------------------------------------

  private onClientData(chunk: Buffer): void {
    try {
      this.processClient(chunk, 0);
      this.input.afterChunk(this.backend !== null ? this.backend.out : null);
    } catch (e) {
      internalError(this, e, true);
    }
  }

  private processClient(chunk: Buffer, pos: number): void {
    const end = chunk.length;
    while (pos < end && !this.closed) {
      switch (this.cstate) {
        case C.Wait:
        case C.Busy:
          this.input.hold(pos === 0 ? chunk : chunk.subarray(pos));
          return;
        case C.Idle:
          if (this.backend === null) {
            // The backend was lost while idle: hold the command until the session has reconnected.
            this.input.hold(pos === 0 ? chunk : chunk.subarray(pos));
            this.mover.awaitReconnect();
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

  /** Hands the client socket to a connection-phase exchange (COM_CHANGE_USER). */
  openClientPacketStream(): PacketStream {
    return this.input.openPacketStream();
  }

  /** Back to forwarding; bytes the exchange read past its last packet are processed next. */
  closeClientPacketStream(stream: PacketStream): void {
    this.input.closePacketStream(stream);
  }

  /** CommandSink: a command's first packet is in buf. */
  dispatch(buf: Buffer, pos: number, end: number, len: number, seq: number): number {
    this.activeSinceSweep = true;
    return dispatchCommand(this, buf, pos, end, len, seq);
  }

  /** Holds a command while Ferry readies the connection it runs on, then replays it (not routed again). */
  holdWhile(command: Buffer, work: Promise<void>): void {
    this.input.hold(command);
    this.cstate = C.Busy;
    this.routeDecided = true;
    void work.finally(() => {
      if (this.closed) return;
      this.cstate = C.Idle;
      guarded(this, this.resumeClient);
    });
  }

  private onCommandTimeout(): void {
    this.cmdTimer = null;
    this.log.info({ timeoutMs: this.route.timeoutMs }, "statement over its query rule timeout: killing it");
    this.kill(true).catch((e: Error) => this.log.warn({ err: e.message }, "could not kill a statement over its timeout"));
  }

  /** Forwards a command's first packet: whatever of it is in this buffer now, the rest as it comes. */
  forwardCommand(buf: Buffer, pos: number, end: number, len: number, shape: Shape): number {
    this.command.startedAt = performance.now();
    if (this.route.timeoutMs > 0) this.cmdTimer = setTimeout(this.onCommandTimeout, this.route.timeoutMs);
    const stop = Math.min(end, pos + HEADER_SIZE + len);
    this.writeBackend(pos === 0 && stop === buf.length ? buf : buf.subarray(pos, stop));
    this.tracker.inCommand = true;
    this.scanner.begin(shape, this.deprecateEof);
    if (this.framing.expect(len, stop - pos - HEADER_SIZE)) this.cstate = C.Forward;
    else this.commandSent();
    return stop;
  }

  /** The whole command is on its way to the backend. */
  private commandSent(): void {
    if (this.scanner.active) {
      this.cstate = C.Wait;
    } else {
      // no response expected (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA)
      this.tracker.inCommand = false;
      this.cstate = C.Idle;
    }
  }

  private writeBackend(bytes: Buffer): void {
    const b = this.backend;
    if (b && !b.out.write(bytes)) this.input.pause();
  }

  private onBackendDrain(): void {
    if (this.cstate !== C.Wait && this.cstate !== C.Busy) this.input.unpause();
  }

  /** Sends a command Ferry rewrote (whole, in `payload`) in place of the client's; returns `next`. */
  sendRebuilt(payload: Buffer, next: number): number {
    this.writeBackend(framePayload(payload, 0));
    this.command.startedAt = performance.now();
    this.tracker.inCommand = true;
    this.scanner.begin(Shape.Result, this.deprecateEof);
    this.commandSent();
    return next;
  }

  // ---- backend → client ------------------------------------------------------------------

  /** The connection broke the protocol: it is closed and its server reported. */
  dropBackend(): void {
    const where = this.backendAddress;
    const b = this.detachBackend();
    if (b) {
      b.socket.on("error", () => undefined);
      b.socket.destroy();
    }
    if (where) this.deps.router.reportFailure(where);
  }

  /** The statement in flight is given up (its backend is gone): the session is between commands. */
  abandonStatement(): void {
    this.tracker.inCommand = false;
    if (this.cmdTimer !== null) {
      clearTimeout(this.cmdTimer);
      this.cmdTimer = null;
    }
    this.scanner.begin(Shape.None, this.deprecateEof);
    this.cstate = C.Idle;
  }

  /** Where the command stands, for what losing the backend means to it (backend-loss.ts). */
  get inFlight(): InFlight {
    switch (this.cstate) {
      case C.Wait: return this.scanner.atPacketBoundary ? InFlight.AtBoundary : InFlight.Midway;
      case C.Forward:
      case C.Infile: return InFlight.Midway;
      default: return InFlight.None;
    }
  }

  /** The sequence id an ERR replacing the rest of the response carries. */
  get nextResponseSeq(): number {
    return this.scanner.started ? (this.scanner.lastSeq + 1) & 0xff : 1;
  }

  /** The response ended (ResponseForwarder): the session is between commands. */
  responseDone(): void {
    if (this.serverStats !== null) this.serverStats.observe(performance.now() - this.command.startedAt);
    if (this.cmdTimer !== null) {
      clearTimeout(this.cmdTimer);
      this.cmdTimer = null;
    }
    const ok = this.effects.finish();
    this.cstate = C.Idle;
    this.atBoundary(ok ? this.command.effects : null);
  }

  /**
   * Between commands: read back state the tracker cannot see in OK packets, then honour a pending
   * close or move, then go on with the client's next command.
   */
  private atBoundary(fx: StatementEffects | null): void {
    if (this.closeWhenIdleRequested && !this.tracker.inTransaction) return this.close();
    const needsRefresh = fx !== null && (fx.userVars.length > 0 || systemVariablesToReadBack(fx, this.backendTracksState).length > 0);
    if (needsRefresh && this.backend) {
      this.tracker.userVariablesStale = fx.userVars.length > 0;
      this.cstate = C.Busy;
      this.input.pause();
      refreshState(this, fx).catch((e: Error) => {
        this.log.warn({ err: e.message }, "could not read back session state; the session stays pinned until the next read succeeds");
      }).finally(() => {
        if (this.closed) return;
        this.cstate = C.Idle;
        guarded(this, this.afterRefresh);
      });
      return;
    }
    this.mover.maybe();
    if (!this.mover.moving) this.resumeClient();
  }

  private afterRefresh(): void {
    this.mover.maybe();
    if (!this.mover.moving) this.resumeClient();
  }

  get backendTracksState(): boolean {
    return this.backend !== null && this.backend.initialTrack !== null;
  }

  /** Stops the session's forwarding reads on its backend so Ferry can run its own statements there. */
  suspendBackendReads(): BackendConnection | null {
    const b = this.backend;
    if (!b) return null;
    this.response.unlisten(b);
    return b;
  }

  resumeBackendReads(b: BackendConnection): void {
    if (this.backend !== b) return;
    this.response.listen(b);
  }

  // ---- moving to another backend -----------------------------------------------------------

  /** Asks the session to move; it does at its first command boundary where it is movable. */
  requestMove(reason: string, target: ServerConfig | null = null): void {
    this.mover.request(reason, target);
  }

  /** Withdraws a move request that has not started. */
  cancelMove(): void {
    this.mover.cancel();
  }

  get pendingMove(): string | null {
    return this.mover.reason;
  }

  /** Between commands, Ferry not busy on the session's connections. */
  get atCommandBoundary(): boolean {
    return this.cstate === C.Idle;
  }

  /** At a command boundary, with nothing in flight and nothing pinning the session. */
  get atMovableBoundary(): boolean {
    return this.cstate === C.Idle && !this.scanner.active && this.tracker.movable;
  }

  /** Between commands with nothing in flight or waiting: the idle clock runs (idle-sweep.ts). */
  get idle(): boolean {
    return this.cstate === C.Idle && !this.scanner.active && !this.input.holding;
  }

  /** Ferry works on the session's connections (a move): the client's commands wait. */
  beginBusy(): void {
    this.cstate = C.Busy;
    this.input.pause();
  }

  endBusy(): void {
    this.cstate = C.Idle;
    if (this.closeWhenIdleRequested && !this.tracker.inTransaction) this.close();
    else this.resumeClient();
  }

  /** Closes the session at its next boundary outside a transaction (graceful shutdown). */
  closeWhenIdle(): void {
    this.closeWhenIdleRequested = true;
    if (this.cstate === C.Idle && !this.scanner.active && !this.mover.moving && !this.tracker.inTransaction) this.close();
  }

  /**
   * Replays bytes held while a response was pending, then lets the client socket flow again.
   * Without a backend (lost, the move not done yet) a held command waits for one, for at most
   * reconnect_timeout_ms; with nothing held the client may send its next command, which then waits
   * the same way.
   */
  resumeClient(): void {
    if (this.closed) return;
    if (this.input.holding && this.cstate === C.Idle && this.backend === null) return this.mover.awaitReconnect();
    if (this.input.holding && this.cstate === C.Idle) {
      // What a replayed chunk holds back again is kept ahead of the chunks not replayed yet.
      const queue = this.input.takeHeld();
      let i = 0;
      while (i < queue.length && this.cstate === C.Idle && !this.closed && this.backend !== null) this.processClient(queue[i++], 0);
      this.input.putBack(queue, i);
    }
    if (this.cstate !== C.Wait && this.cstate !== C.Busy && !this.closed) this.input.unpause();
  }

  /** The server asked for a LOAD DATA LOCAL file: the client's next packets are the file. */
  startFileUpload(): void {
    this.cstate = C.Infile;
    this.framing.startFile();
    this.resumeClient();
  }

  // ---- commands Ferry answers itself --------------------------------------------------------

  runFerryCommand(work: () => Promise<Buffer>): void {
    this.cstate = C.Busy;
    this.input.pause();
    work().then((reply) => {
      if (this.closed) return;
      this.client.write(reply);
      this.cstate = C.Idle;
      guarded(this, this.resumeClient);
    }, (e: Error) => {
      if (e instanceof HandshakeFailure) return this.fatal(e.error, e.seq);
      const err = e instanceof FerryError ? e : new FerryError(1105, "HY000", e.message);
      this.fatal(err, 1);
    });
  }

  /** Sends an ERR (when seq >= 0) and closes the session. */
  fatal(err: FerryError, seq: number): void {
    if (this.closed) return;
    this.log.info({ errno: err.errno, err: err.message }, "closing session");
    if (seq >= 0) this.client.end(encodeErr(seq, err.errno, err.sqlState, err.message));
    this.close();
  }

  // ---- lifecycle ---------------------------------------------------------------------------

  private onSocketError(err: Error): void {
    this.log.debug({ err: err.message }, "socket error");
  }

  private onClientClose(): void {
    this.close();
  }

  private onBackendClose(): void {
    if (this.closed) return;
    const where = this.backendAddress;
    try {
      this.detachBackend();
      if (where) this.deps.router.reportFailure(where);
      backendClosed(this, where);
    } catch (e) {
      internalError(this, e);
    }
  }

  /** KILL: aborts the running statement, or ends the session. */
  async kill(query: boolean): Promise<void> {
    const b = this.backend;
    if (query) {
      if (!b || this.inFlight === InFlight.None) return;
      await runOnServer(this, b.server, `KILL QUERY ${b.threadId}`);
      return;
    }
    if (b) {
      await runOnServer(this, b.server, `KILL CONNECTION ${b.threadId}`).catch(() => undefined);
    }
    this.fatal(new FerryError(1927, "70100", "Connection was killed"), -1);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.cstate = C.Closed;
    this.mover.clear();
    this.deps.registry.remove(this);
    if (this.cmdTimer) clearTimeout(this.cmdTimer);
    this.parked.dropAll();
    const b = this.detachBackend();
    if (b) {
      b.socket.on("error", () => undefined);
      b.socket.end();
      b.socket.destroy();
    }
    this.input.stop();
    if (!this.client.destroyed) this.client.end();
    setTimeout(() => this.client.destroy(), 1000).unref();
    this.release();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
