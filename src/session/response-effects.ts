// What a backend's response tells the session's StateTracker. The ResponseScanner reports the
// packets that end a response (OK, EOF, ERR), a LOAD DATA LOCAL request, a prepared statement's
// OK and its result column definitions; this listener turns them into tracked state, and when
// the response is over applies what the command itself changed, if it succeeded.

import {
  COM_INIT_DB, COM_RESET_CONNECTION, COM_STMT_BULK_EXECUTE, COM_STMT_EXECUTE, COM_STMT_FETCH, COM_STMT_RESET,
  SERVER_SESSION_STATE_CHANGED, SERVER_STATUS_CURSOR_EXISTS, SERVER_STATUS_LAST_ROW_SENT,
} from "../protocol/constants.js";
import { columnShape } from "../protocol/column-definition.js";
import { decodeOk } from "../protocol/packets.js";
import type { ScanListener } from "../protocol/response-scanner.js";
import type { Session } from "./session.js";
import { capStatementsOn } from "./statement-cap.js";
import { explainsStateChange } from "./statement-effects.js";
import { callKeys } from "./stored-functions.js";
import { PreparedStatement } from "./state-tracker.js";

export class ResponseEffects implements ScanListener {
  /** the next statement id handed to the client */
  private nextStmtId = 1;
  /** the statement whose COM_STMT_PREPARE answer is being read: its column definitions follow its OK */
  private preparing: PreparedStatement | null = null;

  constructor(private readonly s: Session) {}

  onOk(buf: Buffer, start: number, end: number, status: number): void {
    const s = this.s;
    // Full decode only when there is something to read beyond the status flags.
    if (status & SERVER_SESSION_STATE_CHANGED || buf[start + 2] !== 0) {
      try {
        const ok = decodeOk(buf, s.backend ? s.backend.capabilities : s.auth.capabilities, start, end);
        s.tracker.applyOk(status, ok.lastInsertId, ok.track);
        if (ok.track?.stateChanged) s.command.stateChanged = true;
      } catch (e) {
        s.log.warn({ err: (e as Error).message }, "could not decode OK packet");
        s.tracker.applyStatus(status);
      }
    } else {
      s.tracker.applyStatus(status);
    }
    this.afterStatus(status);
  }

  onEof(status: number): void {
    this.s.tracker.applyStatus(status);
    this.afterStatus(status);
  }

  private afterStatus(status: number): void {
    const c = this.s.command;
    if (c.code === COM_STMT_EXECUTE || c.code === COM_STMT_BULK_EXECUTE) this.s.tracker.onStmtExecuted(c.stmtId, c.cursor && (status & SERVER_STATUS_CURSOR_EXISTS) !== 0);
    else if (c.code === COM_STMT_FETCH) this.s.tracker.onStmtFetchDone(c.stmtId, (status & SERVER_STATUS_LAST_ROW_SENT) !== 0);
  }

  onErr(): void {
    this.s.command.failed = true;
  }

  onLocalInfile(): void {
    this.s.loop.startFileUpload();
  }

  onPrepareOk(stmtId: number, numColumns: number, numParams: number, buf: Buffer, start: number): void {
    const s = this.s;
    // Clients see Ferry's statement ids, which stay valid when the session moves to another backend.
    const clientId = this.nextStmtId;
    this.nextStmtId = this.nextStmtId >= 0xfffffffe ? 1 : this.nextStmtId + 1;
    buf.writeUInt32LE(clientId, start + 1);
    const stmt = new PreparedStatement(clientId, s.command.text, numParams, numColumns, s.route.prepareHostgroup);
    stmt.effects = s.command.preparedEffects;
    if (s.backend) stmt.on.set(s.backend, { id: stmtId, typesBound: true }); // the client sends types on its first execute
    s.tracker.onPrepared(stmt);
    this.preparing = stmt;
  }

  onPrepareColumn(buf: Buffer, start: number, end: number): void {
    this.preparing?.columnShapes.push(columnShape(buf, start, end));
  }

  /** The response is over: applies what the command changed when it succeeded. Returns whether it did. */
  finish(): boolean {
    const prepared = this.preparing;
    this.preparing = null; // its column definitions are all in
    const s = this.s;
    if (prepared !== null && s.backend) capStatementsOn(s, s.backend);
    const t = s.tracker;
    const c = s.command;
    t.inCommand = false;
    const ok = !c.failed;
    if (c.effects) t.applyEffects(c.effects, ok);
    // A stored routine ran: a CALL, or the server reports a change the statement itself does not
    // account for (a stored function, a trigger). Where the report cannot tell, the names the
    // statement called are looked up (stored-functions.ts).
    if (c.effects?.call || (c.stateChanged && c.code !== COM_INIT_DB && !(c.effects !== null && explainsStateChange(c.effects)))) {
      this.routineRan();
    } else if (c.effects !== null && c.effects.functionCalls.length > 0) {
      const keys = callKeys(c.effects.functionCalls, t.schema);
      const known = keys.length > 0 ? s.deps.storedFunctions.verdict(keys, Date.now()) : false;
      if (known === true) this.routineRan();
      else if (known === null) c.unresolvedCalls = keys;
    }
    if (ok && c.effects?.routinesChanged) s.deps.storedFunctions.forget();
    // A client that sets the tracking variables itself turns off what Ferry tracks by (the
    // boundary switches it on again, state-refresh.ts).
    if (ok && c.effects !== null && s.backendTracksState && c.effects.sysVars.some((n) => n.startsWith("session_track_"))) s.trackingReset = true;
    if (ok) {
      switch (c.code) {
        case COM_INIT_DB: if (c.text !== null) t.onInitDb(c.text); break;
        case COM_STMT_RESET: t.onStmtReset(c.stmtId); break;
        case COM_RESET_CONNECTION: t.reset(); s.parked.dropAll(); s.trackingReset = s.backendTracksState; break;
      }
    }
    return ok;
  }

  /**
   * A stored routine ran. What else it may have left (temporary tables, named locks) Ferry cannot
   * see: the session stays (proxy.pin_after_routines), or it may move and what the routine
   * assigned to user variables is read back.
   */
  routineRan(): void {
    const t = this.s.tracker;
    if (this.s.deps.config().proxy.pin_after_routines) t.routineState = true;
    else t.userVariablesUnseen = true;
  }
}
