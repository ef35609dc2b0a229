// The statements that recreate a session's state on a fresh backend connection (DESIGN §5). The
// schema and character set travel in the handshake; the rest is sent pipelined, in this order:
// the role (SET ROLE), system variables, user variables, SQL prepared statements, LAST_INSERT_ID. Binary prepared
// statements are prepared on a connection when they first run there (the session does that).

import { isNullReportedEmpty } from "../backend/login-state.js";
import type { OwnStatement } from "../backend/own-statements.js";
import type { StateTracker, UserVariable } from "./state-tracker.js";

/** Variables Ferry manages itself, or that are read-only / one-shot and must not be replayed. */
const NOT_RESTORED = new Set([
  "session_track_system_variables", "session_track_schema", "session_track_state_change", "session_track_transaction_info",
  "session_track_gtids", "in_transaction", "last_insert_id", "insert_id", "identity", "last_gtid", "warning_count",
  "error_count", "rand_seed1", "rand_seed2", "pseudo_thread_id", "external_user", "proxy_user", "server_id",
]);

export function quoteString(s: string, noBackslashEscapes: boolean): string {
  let q = s.replace(/'/g, "''");
  if (!noBackslashEscapes) q = q.replace(/\\/g, "\\\\");
  return `'${q}'`;
}

function systemValue(name: string, v: string, nbe: boolean): string {
  if (/^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(v)) return v;
  if (v === "NULL" || isNullReportedEmpty(name, v)) return "NULL";
  return quoteString(v, nbe);
}

/** Character sets first, then collations (setting a character set resets its collation), then the rest. */
function order(name: string): number {
  return name.startsWith("character_set") ? 0 : name.startsWith("collation") ? 1 : 2;
}

export function userVariableLiteral(v: UserVariable): string {
  if (v.value === null) return "NULL";
  const text = v.value.toString("utf8");
  switch (v.type) {
    case "INT":
    case "DECIMAL":
      if (/^-?\d+(\.\d+)?$/.test(text)) return text;
      break;
    case "INT UNSIGNED":
      // A literal under 2^63 would be signed.
      if (/^\d+$/.test(text)) return `CAST(${text} AS UNSIGNED)`;
      break;
    case "DOUBLE":
    case "REAL":
      if (/^-?\d+(\.\d+)?$/.test(text)) return `${text}e0`;
      if (/^-?\d+(\.\d+)?[eE][+-]?\d+$/.test(text)) return text;
      break;
  }
  const charset = v.charset && /^[a-z0-9_]+$/i.test(v.charset) ? v.charset : "binary";
  return `_${charset} X'${v.value.toString("hex")}'`;
}

/** A quoted identifier: `name`, backticks doubled. */
export const ident = (name: string): string => "`" + name.replace(/`/g, "``") + "`";

export const isRestorable = (name: string): boolean => !NOT_RESTORED.has(name) && /^[a-z0-9_]+$/.test(name);

/** One SET SESSION for these system variables, character sets and collations first. */
export function setSystemVariables(vars: [string, string][], noBackslashEscapes: boolean): OwnStatement | null {
  if (vars.length === 0) return null;
  vars.sort((a, b) => order(a[0]) - order(b[0]));
  return { kind: "query", sql: "SET SESSION " + vars.map(([k, v]) => `${k} = ${systemValue(k, v, noBackslashEscapes)}`).join(", ") };
}

export function setUserVariables(vars: [string, UserVariable | null][]): OwnStatement | null {
  if (vars.length === 0) return null;
  return { kind: "query", sql: "SET " + vars.map(([k, v]) => `@${ident(k)} = ${v ? userVariableLiteral(v) : "NULL"}`).join(", ") };
}

/** SET ROLE to the role the session made current (`NONE` or a quoted name). */
export function setRole(role: string): OwnStatement {
  return { kind: "query", sql: `SET ROLE ${role}` };
}

/** Everything to replay on a fresh connection. */
export function restorePlan(t: StateTracker, noBackslashEscapes: boolean): OwnStatement[] {
  const statements: OwnStatement[] = [];
  // The role first: what follows may need its privileges.
  if (t.role !== null) statements.push(setRole(t.role));
  const sys = setSystemVariables([...t.systemVariables].filter(([k]) => isRestorable(k)), noBackslashEscapes);
  if (sys) statements.push(sys);
  const user = setUserVariables([...t.userVariableValues]);
  if (user) statements.push(user);
  for (const text of t.sqlPrepared.values()) statements.push({ kind: "query", sql: text });
  if (t.lastInsertId > 0n) statements.push({ kind: "query", sql: `DO LAST_INSERT_ID(${t.lastInsertId})` });
  return statements;
}
