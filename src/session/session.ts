// One client session: a client socket, its backend connection, and the state both share.
//
// The CommandLoop (command-loop.ts) is the client side: it reads commands, dispatches them
// (command-dispatch.ts) and waits for their responses. Server side, the ResponseForwarder walks the
// response in place and sends the chunks on unchanged, ResponseEffects tells the StateTracker what
// it changed. The session owns the backend connection (attached, detached, dropped), its moves to
// other backends (MoveControl), and its end; backend-loss.ts decides what a lost connection means
// to it, and internal-error.ts what a fault in Ferry's own code does (it ends this session alone).

import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import type { RuntimeConfig, ServerConfig } from "../config/runtime-config.js";
import type { BackendConnection } from "../backend/backend-connection.js";
import type { BackendPool } from "../backend/pool.js";
import { CLIENT_COMPRESS, FERRY_NO_BACKEND, SERVER_STATUS_AUTOCOMMIT } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { encodeErr, encodeOk } from "../protocol/packets.js";
import { CompressedStream } from "../protocol/compressed-stream.js";
import { homeHostgroup, type Router, type ServerStats } from "../router/router.js";
import type { AuthenticatedClient } from "../frontend/client-handshake.js";
import type { TlsMaterial } from "../frontend/tls-material.js";
import type { Slots } from "../lib/slots.js";
import { openBackendWaiting } from "./backend-login.js";
import { backendClosed, InFlight } from "./backend-loss.js";
import { CommandInFlight } from "./command-in-flight.js";
import { CommandLoop } from "./command-loop.js";
import { runOnServer } from "./ferry-commands.js";
import { internalError } from "./internal-error.js";
import { abandonBackend, type MoveSlots } from "./migrator.js";
import { MoveControl } from "./move-control.js";
import { ParkedConnections } from "./parked-connections.js";
import type { RemoteSessions, SessionRegistry } from "./registry.js";
import { userLimitError, userSlot } from "./user-limit.js";
import { ResponseEffects } from "./response-effects.js";
import { ResponseForwarder } from "./response-forwarder.js";
import { StateTracker } from "./state-tracker.js";
import type { StoredFunctionNames } from "./stored-functions.js";
import type { RouteExtras } from "./statement-routing.js";

export interface SessionDeps {
  config(): RuntimeConfig;
  router: Router;
  registry: SessionRegistry<Session>;
  log: Logger;
  tls: TlsMaterial;
  sha2Cache: Set<string>;
  moves: MoveSlots;
  /** the sessions of Ferry's other processes (proxy.workers > 1), else undefined */
  remote?: RemoteSessions;
  /** users.max_connections counts, shared by Ferry's processes */
  slots: Slots;
  /** idle backend connections for reuse */
  pool: BackendPool;
  /** which names are stored functions, as far as this process knows */
  storedFunctions: StoredFunctionNames;
}

export class Session {
  readonly id: number;
  client: Duplex;
  auth: AuthenticatedClient;
  backend: BackendConnection | null = null;
  readonly tracker = new StateTracker();
  /** what a response changed, for the tracker */
  readonly effects = new ResponseEffects(this);
  /** forwards the backend's responses to the client */
  private readonly response = new ResponseForwarder(this, this.effects);
  /** walks the response in flight */
  readonly scanner = this.response.scanner;
  readonly deps: SessionDeps;
  readonly log: Logger;

  /** the client side: reads commands, dispatches them, waits for their responses */
  readonly loop: CommandLoop;
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
  /** latency statistics of the active connection's server */
  serverStats: ServerStats | null = null;
  /** address of a backend lost while the session was idle (it reconnects elsewhere) */
  lostFrom: string | null = null;
  /** times the statement in flight ran again after losing its server (read-retry.ts); 0 again once it is answered or fails */
  readRetries = 0;
  readonly mover: MoveControl;
  /** a command was dispatched since the idle sweep last looked (idle-sweep.ts) */
  activeSinceSweep = true;
  /** performance.now() from which the sweep counts the session idle */
  idleSince = 0;
  /**
   * The client's COM_RESET_CONNECTION, or its own SET of session_track_*, switched off the
   * tracking Ferry set up on the active connection: Ferry switches it on again before the next
   * command (state-refresh.ts).
   */
  trackingReset = false;
  /** wait_timeout (s) the server gave the session at login; a SET the tracker saw overrides it */
  loginWaitTimeout: number | null = null;
  /** failed tries to find this session's first server so far (backend-login.ts openBackendWaiting) */
  loginRetries = 0;

  constructor(id: number, auth: AuthenticatedClient, deps: SessionDeps, release: () => void = () => undefined) {
    this.id = id;
    this.release = release;
    this.auth = auth;
    this.client = auth.socket;
    this.deps = deps;
    this.log = deps.log.child({ session: id, user: auth.user.name, client: auth.clientAddr, ...(auth.proxiedBy ? { via: auth.proxiedBy } : {}) });
    this.loop = new CommandLoop(this);
    this.onClientClose = this.onClientClose.bind(this);
    this.onBackendClose = this.onBackendClose.bind(this);
    this.onSocketError = this.onSocketError.bind(this);
    this.tracker.schema = auth.database;
    this.tracker.collation = auth.collation;
    this.parked = new ParkedConnections(deps.router);
    this.mover = new MoveControl(this);
    this.homeHostgroup = homeHostgroup(deps.config(), auth.user, auth.clientAddr, auth.labels);
    this.hostgroup = this.homeHostgroup;
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

  /** Connects the first backend and finishes the client's login with OK (or the backend's error). */
  async start(): Promise<void> {
    // A compressing client is read and written through a CompressedStream, not the handle.
    const compress = (this.auth.capabilities & CLIENT_COMPRESS) !== 0;
    if (!compress) this.client = this.auth.socket = this.loop.input.rebind(this.client);
    this.response.useClient(this.client);
    this.client.on("error", this.onSocketError);
    this.client.on("close", this.onClientClose);
    const user = this.auth.user;
    if (!(await this.deps.slots.acquire(userSlot(user.name), user.maxConnections))) {
      this.log.info({ max: user.maxConnections }, "login refused: users.max_connections reached");
      const e = userLimitError(user.name, user.maxConnections);
      this.client.end(encodeErr(this.auth.nextSeq, e.errno, e.sqlState, e.message));
      this.close();
      return;
    }
    this.userSlot = userSlot(user.name);
    if (this.closed) {
      // The client went while the count was asked for.
      this.releaseUserSlot();
      return;
    }
    const starting = this.deps.registry.starting;
    starting.add(this);
    try {
      const b = await openBackendWaiting(this, this.homeHostgroup, this.auth.database);
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
    } finally {
      starting.delete(this);
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
    this.loop.input.start(this.client);
    if (leftover.length) this.loop.onClientData(leftover);
    this.loop.input.unpause();
  }

  // ---- backend connection ------------------------------------------------------------------

  /** how loud a failed backend login is: a long outage's repeated retries log quietly */
  get connectFailureLevel(): "warn" | "debug" {
    return this.loginRetries > 0 ? "debug" : this.mover.failureLevel;
  }

  attachBackend(b: BackendConnection): void {
    this.backend = b;
    this.hostgroup = b.server.hostgroup;
    this.serverStats = this.deps.router.statsOf(b.server.address);
    this.trackingReset = false;
    if (b.initialTrack) this.tracker.applyTrack(b.initialTrack);
    this.response.listen(b);
    b.out.onDrain = this.loop.onBackendDrain;
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

  /** Asks the session to replace its backend connection with a fresh one, where the router would put it now. */
  requestRenewal(reason: string): void {
    this.mover.request(reason, null, true);
  }

  /** Withdraws a move request that has not started. */
  cancelMove(): void {
    this.mover.cancel();
  }

  get pendingMove(): string | null {
    return this.mover.reason;
  }

  // ---- ending the session -------------------------------------------------------------------

  /** Closes the session at its next boundary outside a transaction (graceful shutdown). */
  closeWhenIdle(): void {
    this.loop.closeWhenIdle();
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
      if (!b || this.loop.inFlight === InFlight.None) return;
      await runOnServer(this, b.server, `KILL QUERY ${b.threadId}`);
      return;
    }
    if (b) {
      await runOnServer(this, b.server, `KILL CONNECTION ${b.threadId}`).catch(() => undefined);
    }
    this.fatal(new FerryError(1927, "70100", "Connection was killed"), -1);
  }

  /** The slot of the user whose users.max_connections this session counts toward, once counted. */
  userSlot: string | null = null;

  releaseUserSlot(): void {
    if (this.userSlot === null) return;
    this.deps.slots.release(this.userSlot);
    this.userSlot = null;
  }

  close(): void {
    this.releaseUserSlot();
    if (this.closed) return;
    this.closed = true;
    // Ended between commands, the connection can serve another session once reset (pool.ts).
    // Not when SET ROLE changed its role (the reset keeps that, and the login's role is not
    // known), nor inside an XA transaction (one prepared stays with the connection after the reset).
    const t = this.tracker;
    const reusable = this.loop.atCommandBoundary && !this.scanner.active && !this.mover.moving && t.role === null && !t.xaActive;
    this.mover.clear();
    this.deps.registry.remove(this);
    this.loop.stop();
    this.parked.dropAll(reusable ? (c) => this.deps.pool.give(c) : null);
    const b = this.detachBackend();
    if (b && reusable) {
      this.deps.pool.give(b);
    } else if (b) {
      b.socket.on("error", () => undefined);
      b.socket.end();
      b.socket.destroy();
    }
    if (!this.client.destroyed) this.client.end();
    setTimeout(() => this.client.destroy(), 1000).unref();
    this.release();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
