// What Ferry learned of the command in flight when it dispatched it, read again when its response
// ends: the tracker applies the command's effects then, and only if it succeeded.

import type { StatementEffects } from "./statement-effects.js";

export class CommandInFlight {
  /** command byte (COM_*) */
  code = -1;
  /** effects of a COM_QUERY, or of the statement a COM_STMT_EXECUTE runs, that may change session state (null: none) */
  effects: StatementEffects | null = null;
  /** COM_STMT_PREPARE: the effects each execution of the statement will have (null: none) */
  preparedEffects: StatementEffects | null = null;
  /** client statement id of a COM_STMT_* command */
  stmtId = 0;
  /** a COM_STMT_EXECUTE that asked for a cursor */
  cursor = false;
  /** text of COM_INIT_DB or COM_STMT_PREPARE (null for a prepare Ferry saw only a prefix of) */
  text: string | null = null;
  /** the response held an ERR */
  failed = false;
  /** an OK of the response said the session's state changed (session_track_state_change) */
  stateChanged = false;
  /** performance.now() when the command went to the backend */
  startedAt = 0;
  /** names the statement called that may be stored functions, to look up at the boundary (stored-functions.ts) */
  unresolvedCalls: string[] | null = null;

  begin(code: number): void {
    this.code = code;
    this.effects = null;
    this.preparedEffects = null;
    this.text = null;
    this.failed = false;
    this.stateChanged = false;
    this.unresolvedCalls = null;
  }
}
