// One client session: the command loop between a client socket and its backend connection.
//
// Client side, a small state machine over packet headers: Idle (next bytes start a command),
// Forward (rest of a command's packets), Wait (command sent, response pending: further client bytes
// are held and the client paused), Infile (client streams LOAD DATA LOCAL file packets), Busy (Ferry
// answers the command itself). Server side, the ResponseScanner walks the response in place and
// the chunks go to the client unchanged. Handlers are bound once; nothing per packet allocates
// except a Buffer view when a chunk holds more than the current command.

import { performance } from "node:perf_hooks";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import type { RuntimeConfig, ServerConfig } from "../config/runtime-config.js";
import type { BackendConnection } from "../backend/backend-connection.js";
import { openBackend } from "./backend-login.js";
import {
  BULK_SEND_TYPES_TO_SERVER, CLIENT_DEPRECATE_EOF, COM_CHANGE_USER, COM_CREATE_DB, COM_DEBUG, COM_DROP_DB, COM_FIELD_LIST,
  COM_INIT_DB, COM_PING, COM_PROCESS_INFO, COM_PROCESS_KILL, COM_QUERY, COM_QUIT, COM_REFRESH, COM_RESET_CONNECTION,
  COM_SET_OPTION, COM_SHUTDOWN, COM_STATISTICS, COM_STMT_BULK_EXECUTE, COM_STMT_CLOSE, COM_STMT_EXECUTE, COM_STMT_FETCH, COM_STMT_PREPARE,
  COM_STMT_RESET, COM_STMT_SEND_LONG_DATA, CR_SERVER_LOST, ER_NET_PACKETS_OUT_OF_ORDER, ER_UNKNOWN_COM_ERROR,
  FERRY_NO_BACKEND, HEADER_SIZE, MARIADB_CLIENT_STMT_BULK_OPERATIONS, MAX_PACKET_PAYLOAD, SERVER_SESSION_STATE_CHANGED, SERVER_STATUS_AUTOCOMMIT,
  SERVER_STATUS_CURSOR_EXISTS, SERVER_STATUS_LAST_ROW_SENT,
} from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { decodeOk, encodeErr, encodeOk } from "../protocol/packets.js";
import { framePayload } from "../protocol/writer.js";
import { ResponseScanner, Shape, type ScanListener } from "../protocol/response-scanner.js";
import { homeHostgroup, type Router, type ServerStats } from "../router/router.js";
import { REFUSED, REFUSED_LARGE, routeCommand, type RouteExtras } from "./statement-routing.js";
import { HandshakeFailure, type AuthenticatedClient } from "../frontend/client-handshake.js";
import type { TlsMaterial } from "../frontend/tls-material.js";
import { analyzeStatements, mayHaveEffects, type StatementEffects } from "./statement-effects.js";
import { StateTracker, statementOn, type PreparedStatement, type StatementOnConnection } from "./state-tracker.js";
import { copyingSink, SocketReader, type ChunkSink } from "../lib/socket-reader.js";
import { rebindForForwarding } from "../frontend/rebind.js";
import { SocketWriter } from "../lib/socket-writer.js";
import { PacketStream } from "../protocol/packet-stream.js";
import type { SessionRegistry } from "./registry.js";
import { commandName, killSession, changeUser, runOnServer } from "./ferry-commands.js";
import { abandonBackend, type MoveSlots } from "./migrator.js";
import { MoveControl } from "./move-control.js";
import { refreshState, systemVariablesToReadBack } from "./state-refresh.js";
import { ParkedConnections } from "./parked-connections.js";
import { prepareOnActive, switchHostgroup } from "./hostgroup-switch.js";

const enum C { Idle, Forward, Wait, Infile, Busy, Closed }



/** Commands up to this size are assembled whole before dispatch; larger ones dispatch on a prefix. */
const ASSEMBLE_LIMIT = 1 << 20;
const PREFIX_LIMIT = 64 * 1024;

export interface SessionDeps {
  config(): RuntimeConfig;
  router: Router;
  registry: SessionRegistry<Session>;
  log: Logger;
  tls: TlsMaterial;
  sha2Cache: Set<string>;
  moves: MoveSlots;
}

export class Session implements ScanListener, ChunkSink {
  readonly id: number;
  client: Duplex;
  auth: AuthenticatedClient;
  backend: BackendConnection | null = null;
  readonly tracker = new StateTracker();
  private readonly scanner = new ResponseScanner(this);
  readonly deps: SessionDeps;
  readonly log: Logger;

  private cstate = C.Idle;
  // client packet walker
  private readonly chdr = Buffer.alloc(HEADER_SIZE);
  private chdrHave = 0;
  private cPktLeft = 0;
  private cContinues = false; // current packet is 0xFFFFFF long: another follows
  private assembly: Buffer | null = null; // a command start split across chunks
  private assemblyHave = 0;
  private assemblyNeed = 0;
  private held: Buffer[] = []; // client bytes that arrived while a response was pending
  // the command in flight
  private cmd = -1;
  private cmdFx: StatementEffects | null = null;
  private cmdStmtId = 0;
  private cmdCursor = false;
  private cmdText: string | null = null;
  private cmdFailed = false;
  private nextStmtId = 1;
  private backendPaused = false;
  private closed = false;
  /** reads the client socket when it could be re-bound for `onread` (plain TCP); else "data" events */
  private clientReader: SocketReader | null = null;
  /** writes forwarded chunks to the client (made once the client socket is final, in start()) */
  private clientOut!: SocketWriter;
  private readonly clientSink: ChunkSink = { onChunk: (c) => this.onClientData(c) };
  private readonly release: () => void;
  /** hostgroup of the active backend connection */
  hostgroup: number;
  /** hostgroup the session lives in (user default or route); commands no rule sends elsewhere go here */
  homeHostgroup: number;
  /** connections of other hostgroups, brought up to date when a statement is routed back to them */
  readonly parked: ParkedConnections;
  private routeDecided = false;
  /** what routing decided beyond the hostgroup, for the command being dispatched */
  private readonly route: RouteExtras = { timeoutMs: 0, prepareHostgroup: 0 };
  /** an error to answer the next command with instead of running it (a failed preparation) */
  private failNext: FerryError | null = null;
  private cmdTimer: NodeJS.Timeout | null = null;
  private cmdStart = 0;
  private serverStats: ServerStats | null = null;
  /** address of a backend lost while the session was idle (it reconnects elsewhere) */
  lostFrom: string | null = null;
  private readonly mover: MoveControl;
  private closeWhenIdleRequested = false;

  constructor(id: number, auth: AuthenticatedClient, deps: SessionDeps, release: () => void = () => undefined) {
    this.id = id;
    this.release = release;
    this.auth = auth;
    this.client = auth.socket;
    this.deps = deps;
    this.log = deps.log.child({ session: id, user: auth.user.name });
    this.onClientData = this.onClientData.bind(this);
    this.onBackendData = this.onBackendData.bind(this);
    this.onClientDrain = this.onClientDrain.bind(this);
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
    const reader = new SocketReader();
    const rebound = rebindForForwarding(this.client, reader);
    if (rebound) {
      rebound.pause(); // nothing is read before the login finishes
      this.client = rebound;
      this.auth.socket = rebound;
      this.clientReader = reader;
      reader.sink = this.clientSink;
      reader.attach(rebound);
      this.clientPaused = true;
    }
    this.clientOut = new SocketWriter(this.client);
    this.client.on("error", this.onSocketError);
    this.client.on("close", this.onClientClose);
    try {
      const b = await openBackend(this, this.homeHostgroup, this.auth.database);
      if (this.closed) {
        // The client went (or Ferry closed it) while the backend login ran.
        return abandonBackend(this, b);
      }
      this.attachBackend(b);
    } catch (e) {
      const err = e instanceof FerryError ? e : new FerryError(FERRY_NO_BACKEND, "08S01", String(e));
      this.log.warn({ err: err.message }, "session could not get a backend");
      this.client.end(encodeErr(this.auth.nextSeq, err.errno, err.sqlState, err.message));
      this.close();
      return;
    }
    this.deps.registry.add(this);
    this.client.write(encodeOk(this.auth.nextSeq, { statusFlags: SERVER_STATUS_AUTOCOMMIT }, this.auth.capabilities));
    if (!this.clientReader) this.client.on("data", this.onClientData);
    this.clientOut.onDrain = this.onClientDrain;
    if (this.auth.leftover.length) this.onClientData(this.auth.leftover);
    this.unpauseClient();
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
    if (b.reader) b.reader.sink = this;
    else b.socket.on("data", this.onBackendData);
    b.out.onDrain = this.onBackendDrain;
    b.socket.on("close", this.onBackendClose);
    b.socket.on("error", this.onSocketError);
  }

  /** Takes the active connection off the session; `release`: it no longer counts for its server. */
  detachBackend(release = true): BackendConnection | null {
    const b = this.backend;
    if (!b) return null;
    if (b.reader) b.reader.sink = null;
    else b.socket.off("data", this.onBackendData);
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
    this.processClient(chunk, 0);
    // The chunk may live on (held while a response is pending, or queued by the backend socket):
    // then the next read must go to a fresh buffer.
    const r = this.clientReader;
    if (r && (this.held.length > 0 || (this.backend !== null && this.backend.out.queued))) r.renew();
  }

  private processClient(chunk: Buffer, pos: number): void {
    const end = chunk.length;
    while (pos < end && !this.closed) {
      switch (this.cstate) {
        case C.Wait:
        case C.Busy:
          this.hold(pos === 0 ? chunk : chunk.subarray(pos));
          return;
        case C.Idle:
          if (this.backend === null) {
            // The backend was lost while idle: hold the command until the session has reconnected.
            this.hold(pos === 0 ? chunk : chunk.subarray(pos));
            this.mover.awaitReconnect();
            return;
          }
          pos = this.readCommandStart(chunk, pos, end);
          break;
        case C.Forward:
        case C.Infile:
          pos = this.forwardClientPackets(chunk, pos, end);
          break;
        case C.Closed:
          return;
      }
    }
  }

  /** Hands the client socket to a connection-phase exchange (COM_CHANGE_USER). */
  openClientPacketStream(): PacketStream {
    let stream: PacketStream;
    if (this.clientReader) {
      stream = new PacketStream(this.client, 1 << 20, true);
      this.clientReader.sink = copyingSink((c) => stream.push(c));
    } else {
      this.client.off("data", this.onClientData);
      stream = new PacketStream(this.client, 1 << 20);
    }
    this.unpauseClient();
    return stream;
  }

  /** Back to forwarding; bytes the exchange read past its last packet are processed next. */
  closeClientPacketStream(stream: PacketStream): void {
    const leftover = stream.detach();
    if (this.clientReader) this.clientReader.sink = this.clientSink;
    else this.client.on("data", this.onClientData);
    if (leftover.length) this.held.push(leftover);
  }

  private hold(bytes: Buffer): void {
    this.held.push(bytes);
    this.pauseClient();
  }

  // pause()/resume() on a socket schedule stream work even when nothing changes: only call them on a real change.
  private clientPaused = false;

  private pauseClient(): void {
    if (!this.clientPaused) {
      this.clientPaused = true;
      this.client.pause();
    }
  }

  private unpauseClient(): void {
    if (this.clientPaused) {
      this.clientPaused = false;
      this.client.resume();
    }
  }

  /** Reads a command's header and enough of its first packet to dispatch it. */
  private readCommandStart(chunk: Buffer, pos: number, end: number): number {
    if (this.assembly === null && end - pos >= HEADER_SIZE) {
      const len = chunk[pos] | (chunk[pos + 1] << 8) | (chunk[pos + 2] << 16);
      const need = HEADER_SIZE + (len <= ASSEMBLE_LIMIT ? len : PREFIX_LIMIT);
      if (end - pos >= need) return this.dispatch(chunk, pos, end, len, chunk[pos + 3]);
    }
    // Split command start: collect header, then the bytes needed, into the assembly buffer.
    if (this.assembly === null) {
      this.assembly = Buffer.allocUnsafe(256);
      this.assemblyHave = 0;
      this.assemblyNeed = HEADER_SIZE;
    }
    while (pos < end) {
      const n = Math.min(this.assemblyNeed - this.assemblyHave, end - pos);
      if (this.assembly.length < this.assemblyNeed) {
        const bigger = Buffer.allocUnsafe(this.assemblyNeed);
        this.assembly.copy(bigger, 0, 0, this.assemblyHave);
        this.assembly = bigger;
      }
      chunk.copy(this.assembly, this.assemblyHave, pos, pos + n);
      this.assemblyHave += n;
      pos += n;
      if (this.assemblyHave < this.assemblyNeed) continue;
      const a = this.assembly;
      const len = a[0] | (a[1] << 8) | (a[2] << 16);
      const need = HEADER_SIZE + (len <= ASSEMBLE_LIMIT ? len : PREFIX_LIMIT);
      if (this.assemblyNeed < need) {
        this.assemblyNeed = need;
        continue;
      }
      this.assembly = null;
      this.dispatch(a, 0, this.assemblyHave, len, a[3]);
      return pos;
    }
    return pos;
  }

  /**
   * Decides what to do with a command whose header starts at buf[pos]; the first packet's payload
   * (or its prefix) is in buf. Returns the position in buf after what it consumed.
   */
  private dispatch(buf: Buffer, pos: number, end: number, len: number, seq: number): number {
    const p = pos + HEADER_SIZE;
    const avail = Math.min(len, end - p);
    if (seq !== 0) {
      this.fatal(new FerryError(ER_NET_PACKETS_OUT_OF_ORDER, "08S01", `refused packet: sequence id ${seq} where a new command must start at 0`, "client"), seq + 1);
      return end;
    }
    if (len === 0) {
      this.fatal(new FerryError(ER_UNKNOWN_COM_ERROR, "08S01", "refused packet: empty command packet", "client"), 1);
      return end;
    }
    const cmd = buf[p];
    this.cmd = cmd;
    this.cmdFx = null;
    this.cmdText = null;
    this.cmdFailed = false;
    this.tracker.beforeCommand();
    if (this.failNext !== null) return this.answerFailed(cmd, len, avail, p);
    if (this.routeDecided) {
      this.routeDecided = false;
    } else {
      this.route.timeoutMs = 0;
      this.route.prepareHostgroup = this.homeHostgroup;
      if (this.hostgroup !== this.homeHostgroup || this.deps.config().queryRules.length > 0) {
        const hg = routeCommand(this, this.route, cmd, buf, p, avail, len);
        if (hg === REFUSED) return this.skipRefused(len, avail, p);
        if (hg === REFUSED_LARGE) {
          this.log.info({ bytes: len }, "closing session: a statement larger than Ferry assembles was refused by a query rule");
          this.close();
          return end;
        }
        if (hg !== this.hostgroup) {
          this.startSwitch(hg, buf.subarray(pos, end));
          return end;
        }
      }
    }
    let shape: Shape;
    switch (cmd) {
      case COM_QUERY:
        if (mayHaveEffects(buf, p + 1, p + avail)) {
          this.cmdFx = analyzeStatements(buf.toString("utf8", p + 1, p + avail));
          if (this.cmdFx.kill && len === avail) {
            const k = this.cmdFx.kill;
            this.runFerryCommand(() => killSession(this, k.id, k.query));
            return p + len;
          }
        }
        shape = Shape.Result;
        break;
      case COM_STMT_EXECUTE:
      case COM_STMT_BULK_EXECUTE:
      case COM_STMT_FETCH:
      case COM_STMT_RESET:
      case COM_STMT_CLOSE:
      case COM_STMT_SEND_LONG_DATA: {
        if (avail < (cmd === COM_STMT_BULK_EXECUTE ? 7 : 5)) break;
        const id = buf.readUInt32LE(p + 1);
        this.cmdStmtId = id;
        const stmt = this.tracker.prepared.get(id);
        let here: StatementOnConnection | null = null;
        // 0xFFFFFFFF is MariaDB's "the statement prepared last": the server resolves it.
        if (stmt) {
          if (cmd === COM_STMT_CLOSE) this.parked.closeStatement(stmt);
          here = statementOn(stmt, this.backend);
          if (here === null) {
            if (cmd === COM_STMT_CLOSE) {
              this.tracker.onStmtClosed(id);
              return this.discardCommand(len, avail, p);
            }
            // First use on this connection: prepare it here, then run the command.
            this.startPrepareHere(stmt, buf.subarray(pos, end));
            return end;
          }
          if (here.id !== id) buf.writeUInt32LE(here.id, p + 1);
        } else if (id !== 0xffffffff) {
          if (cmd === COM_STMT_CLOSE || cmd === COM_STMT_SEND_LONG_DATA) return this.discardCommand(len, avail, p); // no response
          this.refuseUnknownStatement(cmd, id, len, avail);
          return p + avail;
        }
        if (cmd === COM_STMT_EXECUTE) {
          this.cmdCursor = avail >= 6 && (buf[p + 5] & 0x07) !== 0;
          if (stmt && here) {
            this.tracker.onExecuteSent(stmt, buf, p, p + avail);
            if (!here.typesBound && stmt.numParams > 0) return this.executeWithTypes(stmt, here, buf, pos, end, len, avail);
          }
          shape = Shape.Result;
        } else if (cmd === COM_STMT_BULK_EXECUTE) {
          if ((this.backend!.mariadbCapabilities & MARIADB_CLIENT_STMT_BULK_OPERATIONS) === 0) {
            const why = (this.auth.mariadbCapabilities & MARIADB_CLIENT_STMT_BULK_OPERATIONS) === 0
              ? "bulk operations were not agreed at login" : `server ${this.backendAddress} does not support bulk operations`;
            this.refuseCommand(cmd, len, avail, why);
            return p + avail;
          }
          this.cmdCursor = false;
          if (stmt && here) return this.bulkExecute(stmt, here, buf, pos, end, len, avail);
          shape = Shape.Result;
        } else if (cmd === COM_STMT_FETCH) {
          shape = Shape.Fetch;
        } else if (cmd === COM_STMT_RESET) {
          shape = Shape.Simple;
        } else if (cmd === COM_STMT_CLOSE) {
          this.tracker.onStmtClosed(id);
          shape = Shape.None;
        } else {
          this.tracker.onLongData(id);
          shape = Shape.None;
        }
        break;
      }
      case COM_STMT_PREPARE:
        // A statement Ferry saw only a prefix of cannot be re-prepared elsewhere: kept as null (pins).
        this.cmdText = len === avail ? buf.toString("utf8", p + 1, p + avail) : null;
        shape = Shape.Prepare;
        break;
      case COM_INIT_DB:
        this.cmdText = buf.toString("utf8", p + 1, p + avail);
        shape = Shape.Simple;
        break;
      case COM_PING: case COM_SET_OPTION: case COM_RESET_CONNECTION: case COM_DEBUG: case COM_REFRESH:
      case COM_CREATE_DB: case COM_DROP_DB: case COM_SHUTDOWN:
        shape = Shape.Simple;
        break;
      case COM_FIELD_LIST:
        shape = Shape.FieldList;
        break;
      case COM_STATISTICS:
        shape = Shape.Raw;
        break;
      case COM_PROCESS_INFO:
        shape = Shape.Result;
        break;
      case COM_QUIT:
        this.close();
        return end;
      case COM_PROCESS_KILL:
        if (avail < 5) break;
        const target = buf.readUInt32LE(p + 1);
        this.runFerryCommand(() => killSession(this, target, false));
        return p + len;
      case COM_CHANGE_USER:
        if (len !== avail) break;
        const payload = Buffer.from(buf.subarray(p, p + len));
        this.runFerryCommand(() => changeUser(this, payload));
        return p + len;
      default:
        break;
    }
    // @ts-expect-error shape is unassigned only for refused commands
    if (shape === undefined) {
      this.refuseCommand(cmd, len, avail);
      return p + avail;
    }
    return this.forwardCommand(buf, pos, end, len, shape);
  }

  /** A refused statement: skip its bytes; the session stays usable. */
  private skipRefused(len: number, avail: number, p: number): number {
    this.cPktLeft = len - avail;
    this.cContinues = len === MAX_PACKET_PAYLOAD;
    return p + avail;
  }

  /** Holds a command while Ferry readies the connection it runs on, then replays it (not routed again). */
  private holdWhile(command: Buffer, work: Promise<void>): void {
    this.hold(command);
    this.cstate = C.Busy;
    this.routeDecided = true;
    void work.finally(() => {
      if (this.closed) return;
      this.cstate = C.Idle;
      this.resumeClient();
    });
  }

  /** The command runs in another hostgroup: change connections first. */
  private startSwitch(hostgroup: number, command: Buffer): void {
    this.holdWhile(command, switchHostgroup(this, hostgroup).catch((e: Error) => {
      this.log.warn({ hostgroup, err: e.message }, "could not reach the routed hostgroup; the statement runs where the session is");
    }));
  }

  /** A prepared statement's first use on this connection: prepare it here first. */
  private startPrepareHere(stmt: PreparedStatement, command: Buffer): void {
    this.holdWhile(command, prepareOnActive(this, stmt).catch((e: Error) => {
      this.log.info({ statement: stmt.clientId, err: e.message }, "could not prepare a statement on this connection");
      this.failNext = e instanceof FerryError ? e : new FerryError(1105, "HY000", e.message);
    }));
  }

  /** Answers a held command with the error that stopped its preparation, and skips it. */
  private answerFailed(cmd: number, len: number, avail: number, p: number): number {
    const err = this.failNext!;
    this.failNext = null;
    this.routeDecided = false;
    // The rest of a command larger than what arrived cannot be skipped reliably: then the session ends.
    if (len !== avail || len === MAX_PACKET_PAYLOAD) {
      this.fatal(err, cmd === COM_STMT_SEND_LONG_DATA || cmd === COM_STMT_CLOSE ? -1 : 1);
      return p + avail;
    }
    if (cmd !== COM_STMT_SEND_LONG_DATA && cmd !== COM_STMT_CLOSE) this.client.write(encodeErr(1, err.errno, err.sqlState, err.message));
    return p + avail;
  }

  private onCommandTimeout(): void {
    this.cmdTimer = null;
    this.log.info({ timeoutMs: this.route.timeoutMs }, "statement over its query rule timeout: killing it");
    this.kill(true).catch((e: Error) => this.log.warn({ err: e.message }, "could not kill a statement over its timeout"));
  }

  /** Forwards a command's first packet: whatever of it is in this buffer now, the rest as it comes. */
  private forwardCommand(buf: Buffer, pos: number, end: number, len: number, shape: Shape): number {
    this.cmdStart = performance.now();
    if (this.route.timeoutMs > 0) this.cmdTimer = setTimeout(this.onCommandTimeout, this.route.timeoutMs);
    const pktEnd = pos + HEADER_SIZE + len;
    const stop = Math.min(end, pktEnd);
    this.writeBackend(pos === 0 && stop === buf.length ? buf : buf.subarray(pos, stop));
    this.cPktLeft = pktEnd - stop;
    this.cContinues = len === MAX_PACKET_PAYLOAD;
    this.tracker.inCommand = true;
    this.scanner.begin(shape, this.deprecateEof);
    if (this.cPktLeft > 0 || this.cContinues) this.cstate = C.Forward;
    else this.commandSent();
    return stop;
  }

  /** Forwards the rest of a multi-packet command, or LOAD DATA LOCAL file packets. */
  private forwardClientPackets(chunk: Buffer, pos: number, end: number): number {
    const start = pos;
    while (pos < end) {
      if (this.cPktLeft > 0) {
        const n = Math.min(this.cPktLeft, end - pos);
        pos += n;
        this.cPktLeft -= n;
        if (this.cPktLeft > 0) break;
      }
      if (this.cstate === C.Forward && !this.cContinues) {
        this.flushClientRange(chunk, start, pos);
        this.commandSent();
        return pos;
      }
      // next packet header: a continuation of the command, or the next file packet
      while (this.chdrHave < HEADER_SIZE && pos < end) this.chdr[this.chdrHave++] = chunk[pos++];
      if (this.chdrHave < HEADER_SIZE) break;
      this.chdrHave = 0;
      const len = this.chdr[0] | (this.chdr[1] << 8) | (this.chdr[2] << 16);
      const wasContinuation = this.cContinues;
      this.cPktLeft = len;
      this.cContinues = len === MAX_PACKET_PAYLOAD;
      if (this.cstate === C.Infile && len === 0 && !wasContinuation) {
        // The empty packet ends the file; the server answers with OK or ERR.
        this.flushClientRange(chunk, start, pos);
        this.commandSent();
        return pos;
      }
    }
    this.flushClientRange(chunk, start, pos);
    return pos;
  }

  private flushClientRange(chunk: Buffer, start: number, pos: number): void {
    if (pos > start) this.writeBackend(start === 0 && pos === chunk.length ? chunk : chunk.subarray(start, pos));
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
    if (b && !b.out.write(bytes)) this.pauseClient();
  }

  private onBackendDrain(): void {
    if (this.cstate !== C.Wait && this.cstate !== C.Busy) this.unpauseClient();
  }

  /**
   * First COM_STMT_EXECUTE of a statement on a new backend: the server has never seen its
   * parameter types. When the client relies on types bound earlier (new_params_bound_flag = 0),
   * Ferry re-sends the execute with the types it remembered.
   */
  private executeWithTypes(stmt: PreparedStatement, here: StatementOnConnection, buf: Buffer, pos: number, end: number, len: number, avail: number): number {
    const p = pos + HEADER_SIZE;
    const flagAt = p + 10 + ((stmt.numParams + 7) >> 3);
    here.typesBound = true;
    if (flagAt >= p + avail || buf[flagAt] === 1) return this.forwardCommand(buf, pos, end, len, Shape.Result);
    if (len !== avail || !stmt.paramTypes) {
      this.fatal(new FerryError(1210, "HY000", "refused COM_STMT_EXECUTE: parameter types are unknown on this backend connection", "client"), 1);
      return end;
    }
    this.log.debug({ statement: stmt.clientId }, "re-sending parameter types on the statement's first execute on this connection");
    return this.sendRebuilt(Buffer.concat([buf.subarray(p, flagAt), Buffer.from([1]), stmt.paramTypes, buf.subarray(flagAt + 1, p + len)]), p + len);
  }

  /**
   * COM_STMT_BULK_EXECUTE. Bulk commands that carry no parameter types rely on types the
   * connection saw before: on a connection where the statement's types were never sent, Ferry
   * sends the ones it remembered, as for a first COM_STMT_EXECUTE.
   */
  private bulkExecute(stmt: PreparedStatement, here: StatementOnConnection, buf: Buffer, pos: number, end: number, len: number, avail: number): number {
    const p = pos + HEADER_SIZE;
    this.tracker.onBulkSent(stmt, buf, p, p + avail);
    const flags = buf.readUInt16LE(p + 5);
    if ((flags & BULK_SEND_TYPES_TO_SERVER) !== 0 || here.typesBound || stmt.numParams === 0) {
      here.typesBound = true;
      return this.forwardCommand(buf, pos, end, len, Shape.Result);
    }
    if (len !== avail || !stmt.paramTypes) {
      this.fatal(new FerryError(1210, "HY000", "refused COM_STMT_BULK_EXECUTE: parameter types are unknown on this backend connection", "client"), 1);
      return end;
    }
    here.typesBound = true;
    this.log.debug({ statement: stmt.clientId }, "re-sending parameter types with the statement's first bulk execute on this connection");
    const head = Buffer.from(buf.subarray(p, p + 7));
    head.writeUInt16LE(flags | BULK_SEND_TYPES_TO_SERVER, 5);
    return this.sendRebuilt(Buffer.concat([head, stmt.paramTypes, buf.subarray(p + 7, p + len)]), p + len);
  }

  /** Sends a command Ferry rewrote (whole, in `payload`) in place of the client's; returns `next`. */
  private sendRebuilt(payload: Buffer, next: number): number {
    this.writeBackend(framePayload(payload, 0));
    this.cmdStart = performance.now();
    this.tracker.inCommand = true;
    this.scanner.begin(Shape.Result, this.deprecateEof);
    this.commandSent();
    return next;
  }

  /** A command with no response that Ferry drops: skip its bytes. */
  private discardCommand(len: number, avail: number, p: number): number {
    this.cPktLeft = len - avail;
    this.cContinues = len === MAX_PACKET_PAYLOAD;
    if (this.cPktLeft > 0 || this.cContinues) this.fatal(new FerryError(ER_UNKNOWN_COM_ERROR, "08S01", "refused command: unknown statement id in a multi-packet command", "client"), -1);
    return p + avail;
  }

  private refuseUnknownStatement(cmd: number, id: number, len: number, avail: number): void {
    const what = cmd === COM_STMT_EXECUTE ? "mysqld_stmt_execute" : cmd === COM_STMT_FETCH ? "mysqld_stmt_fetch"
      : cmd === COM_STMT_BULK_EXECUTE ? "mysqld_stmt_bulk_execute" : "mysqld_stmt_reset";
    this.client.write(encodeErr(1, 1243, "HY000", `ferry: Unknown prepared statement handler (${id}) given to ${what}`));
    this.cPktLeft = len - avail;
    this.cContinues = len === MAX_PACKET_PAYLOAD;
    if (this.cPktLeft > 0 || this.cContinues) this.fatal(new FerryError(1243, "HY000", `Unknown prepared statement handler (${id})`, "client"), -1);
  }

  private refuseCommand(cmd: number, len: number, avail: number, why = "not supported through Ferry"): void {
    // Skip whatever of the command is still to come, then answer; the connection stays usable.
    this.cPktLeft = len - avail;
    this.cContinues = len === MAX_PACKET_PAYLOAD;
    const err = new FerryError(ER_UNKNOWN_COM_ERROR, "08S01", `refused command ${commandName(cmd)}: ${why}`, "client");
    this.client.write(encodeErr(1, err.errno, err.sqlState, err.message));
    if (this.cPktLeft > 0 || this.cContinues) {
      this.fatal(err, -1); // cannot resynchronise reliably on a large unknown command
    }
  }

  // ---- backend → client ------------------------------------------------------------------

  onChunk(chunk: Buffer): void {
    this.onBackendData(chunk);
  }

  private onBackendData(chunk: Buffer): void {
    if (!this.scanner.active) {
      this.unsolicited(chunk);
      return;
    }
    let r: number;
    try {
      r = this.scanner.scan(chunk, 0, chunk.length);
    } catch (e) {
      this.log.error({ err: (e as Error).message, server: this.backendAddress }, "backend sent a malformed response");
      this.fatal(new FerryError(CR_SERVER_LOST, "HY000", `lost connection to the backend: malformed response (${(e as Error).message})`, "backend"), -1);
      return;
    }
    const sc = this.scanner;
    const from = sc.forwardFrom;
    const until = r >= 0 ? r : sc.forwardUntil;
    let more = true;
    const out = this.clientOut;
    if (sc.emit !== null) more = out.write(sc.emit);
    if (until > from) more = out.write(from === 0 && until === chunk.length ? chunk : chunk.subarray(from, until));
    const b = this.backend;
    // The client socket queued the chunk instead of writing it: the read buffer must not be reused.
    if (b && b.reader && out.queued) b.reader.renew();
    if (!more && b) {
      b.socket.pause();
      this.backendPaused = true;
    }
    if (r >= 0) {
      this.responseDone();
      if (r < chunk.length) this.unsolicited(chunk.subarray(r));
    }
  }

  private onClientDrain(): void {
    if (this.backendPaused && this.backend) {
      this.backendPaused = false;
      this.backend.socket.resume();
    }
  }

  /** Data from a backend with no command in flight: an error before it disconnects us. */
  private unsolicited(chunk: Buffer): void {
    this.log.warn({ server: this.backendAddress, bytes: chunk.length, first: chunk[4] }, "unsolicited data from backend");
  }

  private responseDone(): void {
    if (this.serverStats !== null) this.serverStats.observe(performance.now() - this.cmdStart);
    if (this.cmdTimer !== null) {
      clearTimeout(this.cmdTimer);
      this.cmdTimer = null;
    }
    const t = this.tracker;
    t.inCommand = false;
    const ok = !this.cmdFailed;
    if (this.cmdFx) t.applyEffects(this.cmdFx, ok);
    if (ok) {
      switch (this.cmd) {
        case COM_INIT_DB: if (this.cmdText !== null) t.onInitDb(this.cmdText); break;
        case COM_STMT_RESET: t.onStmtReset(this.cmdStmtId); break;
        case COM_RESET_CONNECTION: t.reset(); this.parked.dropAll(); break;
      }
    }
    this.cstate = C.Idle;
    this.atBoundary(ok ? this.cmdFx : null);
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
      this.pauseClient();
      refreshState(this, fx).catch((e: Error) => {
        this.log.warn({ err: e.message }, "could not read back session state; the session stays pinned until the next read succeeds");
      }).finally(() => {
        if (this.closed) return;
        this.cstate = C.Idle;
        this.mover.maybe();
        if (!this.mover.moving) this.resumeClient();
      });
      return;
    }
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
    if (b.reader) b.reader.sink = null;
    else b.socket.off("data", this.onBackendData);
    return b;
  }

  resumeBackendReads(b: BackendConnection): void {
    if (this.backend !== b) return;
    if (b.reader) b.reader.sink = this;
    else b.socket.on("data", this.onBackendData);
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

  /** At a command boundary, with nothing in flight and nothing pinning the session. */
  get atMovableBoundary(): boolean {
    return this.cstate === C.Idle && !this.scanner.active && this.tracker.movable;
  }

  /** Ferry works on the session's connections (a move): the client's commands wait. */
  beginBusy(): void {
    this.cstate = C.Busy;
    this.pauseClient();
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
    if (this.held.length && this.cstate === C.Idle && this.backend === null) return this.mover.awaitReconnect();
    if (this.held.length && this.cstate === C.Idle) {
      // What a replayed chunk holds back again goes to a fresh list, ahead of the chunks not replayed yet.
      const queue = this.held;
      this.held = [];
      let i = 0;
      while (i < queue.length && this.cstate === C.Idle && !this.closed && this.backend !== null) this.processClient(queue[i++], 0);
      for (; i < queue.length; i++) this.held.push(queue[i]);
    }
    if (this.cstate !== C.Wait && this.cstate !== C.Busy && !this.closed) this.unpauseClient();
  }

  // ScanListener
  onOk(buf: Buffer, start: number, end: number, status: number): void {
    // Full decode only when there is something to read beyond the status flags.
    if (status & SERVER_SESSION_STATE_CHANGED || buf[start + 2] !== 0) {
      try {
        const ok = decodeOk(buf, this.backend ? this.backend.capabilities : this.auth.capabilities, start, end);
        this.tracker.applyOk(status, ok.lastInsertId, ok.track);
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, "could not decode OK packet");
        this.tracker.applyStatus(status);
      }
    } else {
      this.tracker.applyStatus(status);
    }
    this.afterStatus(status);
  }

  onEof(status: number): void {
    this.tracker.applyStatus(status);
    this.afterStatus(status);
  }

  private afterStatus(status: number): void {
    if (this.cmd === COM_STMT_EXECUTE || this.cmd === COM_STMT_BULK_EXECUTE) this.tracker.onStmtExecuted(this.cmdStmtId, this.cmdCursor && (status & SERVER_STATUS_CURSOR_EXISTS) !== 0);
    else if (this.cmd === COM_STMT_FETCH) this.tracker.onStmtFetchDone(this.cmdStmtId, (status & SERVER_STATUS_LAST_ROW_SENT) !== 0);
  }

  onErr(): void {
    this.cmdFailed = true;
  }

  onLocalInfile(): void {
    this.cstate = C.Infile;
    this.cPktLeft = 0;
    this.cContinues = false;
    this.chdrHave = 0;
    this.resumeClient();
  }

  onPrepareOk(stmtId: number, numColumns: number, numParams: number, buf: Buffer, start: number): void {
    // Clients see Ferry's statement ids, which stay valid when the session moves to another backend.
    const clientId = this.nextStmtId;
    this.nextStmtId = this.nextStmtId >= 0xfffffffe ? 1 : this.nextStmtId + 1;
    buf.writeUInt32LE(clientId, start + 1);
    const on = new WeakMap<object, StatementOnConnection>();
    if (this.backend) on.set(this.backend, { id: stmtId, typesBound: true }); // the client sends types on its first execute
    this.tracker.onPrepared({ clientId, sql: this.cmdText, numParams, numColumns, cursorOpen: false, longDataPending: false, paramTypes: null, hostgroup: this.route.prepareHostgroup, on });
  }

  // ---- commands Ferry answers itself --------------------------------------------------------

  private runFerryCommand(work: () => Promise<Buffer>): void {
    this.cstate = C.Busy;
    this.pauseClient();
    work().then((reply) => {
      if (this.closed) return;
      this.client.write(reply);
      this.cstate = C.Idle;
      this.resumeClient();
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
    this.detachBackend();
    if (where) this.deps.router.reportFailure(where);
    if (this.cstate === C.Wait && this.scanner.atPacketBoundary) {
      // Lost during a statement, between packets: that statement gets an error, and a session that
      // was otherwise movable carries on elsewhere; inside a transaction it ends, as it would directly.
      const seq = this.scanner.started ? (this.scanner.lastSeq + 1) & 0xff : 1;
      this.tracker.inCommand = false;
      const canContinue = this.tracker.movable;
      const msg = `lost connection to backend ${where} during the statement${canContinue ? "; the session continues on another server" : ""}`;
      if (!canContinue) return this.fatal(new FerryError(CR_SERVER_LOST, "HY000", msg, "backend"), seq);
      this.client.write(encodeErr(seq, CR_SERVER_LOST, "HY000", `ferry: ${msg}`));
      this.scanner.begin(Shape.None, this.deprecateEof);
      this.cstate = C.Idle;
      this.lostFrom = where;
      this.log.warn({ server: where }, "backend lost during a statement; reconnecting");
      this.requestMove("backend-lost");
      return;
    }
    if (this.cstate === C.Wait || this.cstate === C.Forward || this.cstate === C.Infile) {
      // Mid-packet or mid-upload: nothing can be injected cleanly.
      return this.fatal(new FerryError(CR_SERVER_LOST, "HY000", `lost connection to backend ${where} during the statement`, "backend"), -1);
    }
    if (!this.tracker.movable) {
      this.log.info({ server: where, pinned: this.tracker.pinReasons() }, "backend lost while the session was pinned; closing it");
      return this.close();
    }
    this.lostFrom = where;
    this.log.info({ server: where }, "backend lost while idle; reconnecting");
    if (this.cstate === C.Idle) this.requestMove("backend-lost");
    else this.mover.reason = "backend-lost"; // a refresh or move in flight fails and retries
  }

  /** KILL: aborts the running statement, or ends the session. */
  async kill(query: boolean): Promise<void> {
    const b = this.backend;
    if (query) {
      if (!b || (this.cstate !== C.Wait && this.cstate !== C.Forward && this.cstate !== C.Infile)) return;
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
    this.client.off("data", this.onClientData);
    if (this.clientReader) this.clientReader.sink = null;
    if (!this.client.destroyed) this.client.end();
    setTimeout(() => this.client.destroy(), 1000).unref();
    this.release();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
