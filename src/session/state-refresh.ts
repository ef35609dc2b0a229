// Reads back what OK packets do not carry, right after the statement that changed it: user
// variable values (with their types, from information_schema.USER_VARIABLES), and, when the
// backend cannot track session variables for this client, the variables a SET named. Reading at
// once, not just before a move, is what lets a session survive its backend's crash intact.
// After the client's COM_RESET_CONNECTION or its own SET of the tracking variables, either of
// which switches off the session tracking Ferry set up at login, it switches tracking on again
// first: without it, the next SET would go unseen. Names a statement called that may be stored
// functions are looked up before anything else (stored-functions.ts): a routine that ran may have
// assigned user variables.

import { SESSION_TRACKING_SQL, takeOwnReadings, type BackendConnection } from "../backend/backend-connection.js";
import { runOwnStatements, type OwnStatement } from "../backend/own-statements.js";
import { FerryError } from "../protocol/errors.js";
import type { Session } from "./session.js";
import { ident } from "./restore-plan.js";
import type { UserVariable } from "./state-tracker.js";
import type { StatementEffects } from "./statement-effects.js";
import { storedFunctionsQuery } from "./stored-functions.js";

const USER_VARIABLES_SQL = "SELECT VARIABLE_NAME, VARIABLE_VALUE, VARIABLE_TYPE, CHARACTER_SET_NAME FROM information_schema.USER_VARIABLES";
const SAFE_NAME = /^[a-z0-9_]+$/;

function hexSelect(names: string[]): string {
  return names.length ? "SELECT " + names.map((n) => `HEX(@${ident(n)})`).join(", ") : "SELECT 1";
}

/**
 * Whether a statement called a stored function, from the server: a routine ran if one of the
 * names is one, or if the server cannot say. What it answers is kept for the process; that a
 * name is no function only when the statement succeeded (a failed one may have called a function
 * that did not exist yet).
 */
async function lookUpCalls(s: Session, b: BackendConnection, keys: string[]): Promise<void> {
  const [r] = await runOwnStatements(b, [{ kind: "query", sql: storedFunctionsQuery(keys) }]);
  if (r.error) {
    s.log.info({ err: r.error.message }, "could not look up stored functions; taking the statement for one that ran a routine");
    s.effects.routineRan();
  } else {
    const found = new Set(r.rows.map((row) => row[0]?.toString("utf8") ?? ""));
    const now = Date.now();
    for (const k of keys) if (found.has(k) || !s.command.failed) s.deps.storedFunctions.learn(k, found.has(k), now);
    if (keys.some((k) => found.has(k))) s.effects.routineRan();
  }
  if (s.tracker.userVariablesUnseen) s.tracker.userVariablesStale = true;
}

/**
 * MariaDB's tracker reports the character sets SET NAMES changes but not collation_connection, so
 * that one is always read back; without tracking, every variable a SET named is.
 */
export function systemVariablesToReadBack(fx: StatementEffects, tracked: boolean): string[] {
  const names = [...new Set(fx.sysVars)].filter((n) => SAFE_NAME.test(n));
  return tracked ? names.filter((n) => n === "collation_connection") : names;
}

export async function refreshState(s: Session, fx: StatementEffects | null): Promise<void> {
  const b = s.suspendBackendReads();
  if (!b) return;
  try {
    const calls = s.command.unresolvedCalls;
    if (calls !== null) {
      s.command.unresolvedCalls = null;
      await lookUpCalls(s, b, calls);
    }
    const statements: OwnStatement[] = [];
    const retrack = s.trackingReset;
    if (retrack) statements.push({ kind: "query", sql: SESSION_TRACKING_SQL });
    const wantUser = s.tracker.userVariablesUnseen || (fx !== null && fx.userVars.length > 0);
    // Types and character sets from USER_VARIABLES; string values as HEX(), since that table shows
    // them converted to text (lossy for binary data). Both in one round trip.
    const known = [...s.tracker.userVariables];
    if (wantUser) statements.push({ kind: "query", sql: USER_VARIABLES_SQL }, { kind: "query", sql: hexSelect(known) });
    const sysNames = fx === null ? [] : systemVariablesToReadBack(fx, s.backendTracksState);
    if (sysNames.length) statements.push({ kind: "query", sql: "SELECT " + sysNames.map((n) => `@@session.${n}`).join(", ") });
    const results = await runOwnStatements(b, statements);
    let i = 0;
    if (retrack) {
      const r = results[i++];
      s.trackingReset = false;
      if (r.ok === null) {
        // The backend no longer reports changes: variables a SET names are read back from now on.
        b.initialTrack = null;
        throw new FerryError(r.error?.errno ?? 1105, r.error?.sqlState ?? "HY000", `switching session tracking on again failed: ${r.error?.message ?? "no OK"}`, "backend");
      }
      const track = r.ok.track;
      const { waitTimeout } = takeOwnReadings(track);
      if (waitTimeout !== null) s.loginWaitTimeout = waitTimeout;
      if (track) s.tracker.applyTrack(track);
    }
    if (wantUser) {
      const meta = results[i++];
      const hex = results[i++];
      if (hex.error) throw new FerryError(hex.error.errno, hex.error.sqlState, `reading user variables failed: ${hex.error.message}`, "backend");
      const exact = new Map(known.map((n, j) => [n, hex.rows[0][j]]));
      const values = new Map<string, UserVariable>();
      if (!meta.error) {
        const missing = meta.rows.map((r) => r[0]!.toString("utf8").toLowerCase()).filter((n) => !exact.has(n));
        if (missing.length) {
          // assigned where Ferry could not see it (a stored routine): one more read for those
          const [more] = await runOwnStatements(b, [{ kind: "query", sql: hexSelect(missing) }]);
          if (!more.error) missing.forEach((n, j) => exact.set(n, more.rows[0][j]));
        }
        for (const row of meta.rows) {
          const name = row[0]!.toString("utf8").toLowerCase();
          const type = row[2]?.toString("latin1") ?? null;
          const h = exact.get(name);
          const value = row[1] === null ? null : type === "VARCHAR" || type === "STRING" ? (h ? Buffer.from(h.toString("latin1"), "hex") : row[1]) : row[1];
          values.set(name, { value, type, charset: row[3]?.toString("latin1") ?? null });
        }
      } else {
        // No USER_VARIABLES table (MySQL): the names Ferry saw assigned, restored as binary strings.
        for (const [n, h] of exact) values.set(n, { value: h === null || h === undefined ? null : Buffer.from(h.toString("latin1"), "hex"), type: null, charset: "binary" });
      }
      s.tracker.setUserVariables(values);
    }
    if (sysNames.length) {
      const r = results[i++];
      if (!r.error) sysNames.forEach((n, j) => s.tracker.systemVariables.set(n, r.rows[0][j]?.toString("utf8") ?? "NULL"));
    }
  } finally {
    s.resumeBackendReads(b);
  }
}
