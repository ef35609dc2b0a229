// Everything Ferry must know to recreate a session on another backend (DESIGN §5), and whether
// the session can be moved right now. Fed from three places: the handshake, the statements the
// client sends (StatementEffects, applied when the server accepts them) and the server's OK
// packets (status flags, session tracking).

import { BULK_SEND_TYPES_TO_SERVER, SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_IN_TRANS } from "../protocol/constants.js";
import type { SessionTrackInfo } from "../protocol/packets.js";
import type { StatementEffects } from "./statement-effects.js";

/** A prepared statement as one backend connection knows it. */
export interface StatementOnConnection {
  /** the backend's statement id on that connection */
  id: number;
  /** the connection has seen parameter types for it (false when Ferry prepared it itself) */
  typesBound: boolean;
}

/**
 * A statement the client prepared, under Ferry's id. A class, so that every statement has one
 * shape from the start: executes read it on every command.
 */
export class PreparedStatement {
  cursorOpen = false;
  longDataPending = false;
  /** parameter types from the last COM_STMT_EXECUTE that bound them (2 bytes per parameter) */
  paramTypes: Buffer | null = null;
  /**
   * columnShape() of each result column, as the client's prepare returned them: how it decodes
   * rows (with metadata caching, executes elsewhere return none of their own)
   */
  readonly columnShapes: number[] = [];
  /** its id on each backend connection that has it; others prepare it when it first runs there */
  readonly on = new WeakMap<object, StatementOnConnection>();
  /** the last lookup in `on` (executes repeat on one connection) */
  lastConn: object | null = null;
  lastOn: StatementOnConnection | null = null;
  /** the session's use clock when the statement was last prepared or run (statement-cap.ts) */
  lastUsed = 0;
  /** what each execution changes of the session's state (its text analyzed once, at prepare; null: nothing) */
  effects: StatementEffects | null = null;

  constructor(
    readonly clientId: number,
    /** the statement text, or null when it was too large for Ferry to keep */
    readonly sql: string | null,
    readonly numParams: number,
    readonly numColumns: number,
    /** hostgroup the query rules send its executions to */
    readonly hostgroup: number,
  ) {}
}

/** The statement on a connection, or null. */
export function statementOn(stmt: PreparedStatement, conn: object | null): StatementOnConnection | null {
  if (conn === null) return null;
  if (stmt.lastConn === conn) return stmt.lastOn;
  const rec = stmt.on.get(conn);
  if (!rec) return null;
  stmt.lastConn = conn;
  stmt.lastOn = rec;
  return rec;
}

export interface UserVariable {
  /** VARIABLE_TYPE of information_schema.USER_VARIABLES: INT, INT UNSIGNED, DECIMAL, DOUBLE, VARCHAR; null when unknown */
  type: string | null;
  charset: string | null;
  value: Buffer | null;
}

export type PinReason =
  | "transaction" | "temporary-table" | "named-lock" | "lock-tables" | "cursor" | "xa" | "long-data" | "found-rows" | "command"
  | "unknown-user-variables" | "unpreparable-statement" | "stored-routine" | "next-transaction" | "handler";

/** a equals buf[from, to); a plain loop: the ranges are a few bytes, a native compare costs more */
function sameBytes(a: Buffer, buf: Buffer, from: number, to: number): boolean {
  if (a.length !== to - from) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== buf[from + i]) return false;
  return true;
}

export class StateTracker {
  schema: string | null = null;
  collation = 0;
  /** session system variables as last reported by the server (or noted from SET when it cannot track) */
  readonly systemVariables = new Map<string, string>();
  /** names assigned with SET @x / := / INTO @x */
  readonly userVariables = new Set<string>();
  /** values of the user variables, read from the server after each statement that assigned one */
  readonly userVariableValues = new Map<string, UserVariable>();
  /** a statement assigned user variables and their values have not been read back yet */
  userVariablesStale = false;
  /** user variables may have been assigned where Ferry could not see (a stored routine): read them all back */
  userVariablesUnseen = false;
  /**
   * a stored routine ran (proxy.pin_after_routines): it may have left temporary tables or named
   * locks Ferry cannot see, so the session stays on its connection until the server session
   * starts afresh (COM_RESET_CONNECTION, COM_CHANGE_USER)
   */
  routineState = false;
  /** GET_LOCK took a lock whose name Ferry could not read: held until RELEASE_ALL_LOCKS or a reset */
  unknownLocks = false;
  /**
   * SET TRANSACTION (no SESSION or GLOBAL) set the next transaction's characteristics: held by the
   * server session until a transaction starts (the status flags then say so). An autocommit
   * statement that reads a table uses them up too, unseen: the pin may outlast them.
   */
  nextTransaction = false;
  readonly prepared = new Map<number, PreparedStatement>();
  /** counts uses of prepared statements, for least-recently-used order (statement-cap.ts) */
  private useClock = 0;
  /** SQL-level prepared statements: name → the PREPARE statement that made it */
  readonly sqlPrepared = new Map<string, string>();
  readonly tempTables = new Set<string>();
  readonly namedLocks = new Set<string>();
  /** open HANDLERs (HANDLER t OPEN), by name */
  readonly handlers = new Set<string>();
  lastInsertId = 0n;
  /** the role SET ROLE made current (`NONE` or a quoted name); null: the login's (COM_RESET_CONNECTION keeps it) */
  role: string | null = null;
  statusFlags = SERVER_STATUS_AUTOCOMMIT;
  transactionState: string | null = null; // SESSION_TRACK_TRANSACTION_STATE, when the server sends it
  lockTables = false;
  xaActive = false;
  foundRowsPending = false;
  /** a multi-packet command or LOAD DATA in progress */
  inCommand = false;

  get inTransaction(): boolean {
    if (this.statusFlags & SERVER_STATUS_IN_TRANS) return true;
    // "T"/"I" are the first characters of an active/implicit transaction in the tracker string ("________" when none).
    return this.transactionState !== null && /[^_]/.test(this.transactionState[0] ?? "_");
  }

  get autocommit(): boolean {
    return (this.statusFlags & SERVER_STATUS_AUTOCOMMIT) !== 0;
  }

  pinReasons(): PinReason[] {
    const r: PinReason[] = [];
    if (this.inCommand) r.push("command");
    if (this.inTransaction) r.push("transaction");
    if (this.tempTables.size) r.push("temporary-table");
    if (this.namedLocks.size || this.unknownLocks) r.push("named-lock");
    if (this.routineState) r.push("stored-routine");
    if (this.nextTransaction) r.push("next-transaction");
    if (this.handlers.size) r.push("handler");
    if (this.lockTables) r.push("lock-tables");
    if (this.xaActive) r.push("xa");
    if (this.foundRowsPending) r.push("found-rows");
    if (this.userVariablesStale) r.push("unknown-user-variables");
    for (const s of this.prepared.values()) {
      if (s.cursorOpen) { r.push("cursor"); break; }
    }
    for (const s of this.prepared.values()) {
      if (s.longDataPending) { r.push("long-data"); break; }
    }
    for (const s of this.prepared.values()) {
      // prepared from a statement text Ferry only saw a prefix of
      if (s.sql === null) { r.push("unpreparable-statement"); break; }
    }
    return r;
  }

  /** Some state ties the session to its connection (pinReasons says which; this one does not allocate). */
  get pinned(): boolean {
    if (this.inCommand || this.inTransaction || this.tempTables.size || this.namedLocks.size || this.lockTables || this.xaActive ||
      this.foundRowsPending || this.userVariablesStale || this.unknownLocks || this.routineState || this.nextTransaction || this.handlers.size) return true;
    for (const s of this.prepared.values()) if (s.cursorOpen || s.longDataPending || s.sql === null) return true;
    return false;
  }

  get movable(): boolean {
    return !this.pinned;
  }

  /** Called for every command before it is sent: FOUND_ROWS() is only meaningful right after the query it follows. */
  beforeCommand(): void {
    this.foundRowsPending = false;
  }

  /** Applies what a statement did, once the server answered without error (or with an error part-way through a multi-statement: then only the pinning effects). */
  applyEffects(fx: StatementEffects, succeeded: boolean): void {
    for (const n of fx.userVars) this.userVariables.add(n);
    for (const n of fx.tempTablesCreated) this.tempTables.add(n);
    for (const n of fx.locksAcquired) this.namedLocks.add(n);
    if (fx.unknownLocks) this.unknownLocks = true;
    if (fx.lockTables === true) this.lockTables = true;
    if (fx.xa === "start") this.xaActive = true;
    if (fx.calcFoundRows) this.foundRowsPending = true;
    if (!succeeded) return;
    for (const p of fx.sqlPrepared) this.sqlPrepared.set(p.name, p.text);
    for (const n of fx.tempTablesDropped) {
      this.tempTables.delete(n);
      // DROP TABLE t also drops db.t when t was created with a qualified name in the current schema
      if (this.schema) this.tempTables.delete(`${this.schema.toLowerCase()}.${n}`);
    }
    for (const n of fx.locksReleased) this.namedLocks.delete(n);
    if (fx.releaseAllLocks) {
      this.namedLocks.clear();
      this.unknownLocks = false;
    }
    if (fx.lockTables === false) this.lockTables = false;
    if (fx.xa === "end") this.xaActive = false;
    for (const n of fx.sqlDeallocated) this.sqlPrepared.delete(n);
    if (fx.useSchema !== null) this.schema = fx.useSchema;
    if (fx.role !== null) this.role = fx.role;
    if (fx.nextTransaction) this.nextTransaction = true;
    for (const n of fx.handlersOpened) this.handlers.add(n);
    for (const n of fx.handlersClosed) this.handlers.delete(n);
  }

  setUserVariables(values: Map<string, UserVariable>): void {
    this.userVariableValues.clear();
    for (const [k, v] of values) this.userVariableValues.set(k, v);
    this.userVariablesStale = false;
    this.userVariablesUnseen = false;
  }

  /** Status flags, last insert id and session tracking from an OK packet. */
  applyOk(statusFlags: number, lastInsertId: bigint, track: SessionTrackInfo | null): void {
    this.statusFlags = statusFlags;
    if (statusFlags & SERVER_STATUS_IN_TRANS) this.nextTransaction = false;
    if (lastInsertId > 0n) this.lastInsertId = lastInsertId;
    if (track) this.applyTrack(track);
  }

  applyTrack(track: SessionTrackInfo): void {
    for (const [k, v] of track.systemVariables) this.systemVariables.set(k.toLowerCase(), v);
    if (track.schema !== null) this.schema = track.schema || null;
    if (track.transactionState !== null) this.transactionState = track.transactionState;
  }

  applyStatus(statusFlags: number): void {
    this.statusFlags = statusFlags;
    if (statusFlags & SERVER_STATUS_IN_TRANS) this.nextTransaction = false;
  }

  onInitDb(schema: string): void {
    this.schema = schema;
  }

  onPrepared(stmt: PreparedStatement): void {
    this.prepared.set(stmt.clientId, stmt);
    this.touch(stmt);
  }

  /** The statement is being used (prepared, run, fetched from …): the most recently used now. */
  touch(stmt: PreparedStatement): void {
    stmt.lastUsed = ++this.useClock;
  }

  /** Remembers parameter types when an execute binds them (new_params_bound_flag = 1), for re-sending after a move. */
  onExecuteSent(stmt: PreparedStatement, buf: Buffer, p: number, end: number): void {
    if (stmt.numParams === 0) return;
    const flagAt = p + 10 + ((stmt.numParams + 7) >> 3);
    const from = flagAt + 1, to = from + 2 * stmt.numParams;
    if (flagAt < end && buf[flagAt] === 1 && to <= end) this.rememberTypes(stmt, buf, from, to);
  }

  /** COM_STMT_BULK_EXECUTE whose payload starts at buf[p]: the parameter types it sends, if any. */
  onBulkSent(stmt: PreparedStatement, buf: Buffer, p: number, end: number): void {
    const from = p + 7, to = from + 2 * stmt.numParams;
    if (stmt.numParams > 0 && (buf.readUInt16LE(p + 5) & BULK_SEND_TYPES_TO_SERVER) !== 0 && to <= end) this.rememberTypes(stmt, buf, from, to);
  }

  /** Parameter types as COM_STMT_EXECUTE and COM_STMT_BULK_EXECUTE send them (2 bytes each). */
  private rememberTypes(stmt: PreparedStatement, buf: Buffer, from: number, to: number): void {
    // Clients that bind types on every execute send the same ones: copy only when they change.
    const known = stmt.paramTypes;
    if (known === null || !sameBytes(known, buf, from, to)) stmt.paramTypes = Buffer.from(buf.subarray(from, to));
  }

  onStmtExecuted(clientId: number, cursorOpened: boolean): void {
    const s = this.prepared.get(clientId);
    if (!s) return;
    s.cursorOpen = cursorOpened;
    s.longDataPending = false;
  }

  onStmtFetchDone(clientId: number, lastRowSent: boolean): void {
    const s = this.prepared.get(clientId);
    if (s && lastRowSent) s.cursorOpen = false;
  }

  onStmtReset(clientId: number): void {
    const s = this.prepared.get(clientId);
    if (s) { s.cursorOpen = false; s.longDataPending = false; }
  }

  onLongData(clientId: number): void {
    const s = this.prepared.get(clientId);
    if (s) s.longDataPending = true;
  }

  onStmtClosed(clientId: number): void {
    this.prepared.delete(clientId);
  }

  /** COM_RESET_CONNECTION and COM_CHANGE_USER start the server session afresh. */
  reset(): void {
    this.systemVariables.clear();
    this.userVariables.clear();
    this.userVariableValues.clear();
    this.userVariablesStale = false;
    this.userVariablesUnseen = false;
    this.routineState = false;
    this.unknownLocks = false;
    this.nextTransaction = false;
    this.handlers.clear();
    this.prepared.clear();
    this.sqlPrepared.clear();
    this.tempTables.clear();
    this.namedLocks.clear();
    this.lastInsertId = 0n;
    this.statusFlags = SERVER_STATUS_AUTOCOMMIT;
    this.transactionState = null;
    this.lockTables = false;
    this.xaActive = false;
    this.foundRowsPending = false;
  }
}

