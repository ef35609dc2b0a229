// Bringing a parked backend connection up to date. A session routed across hostgroups keeps one
// connection per hostgroup; only the active one sees the client's statements, so a parked one
// falls behind. Parking takes a snapshot of the tracked state; taking the connection back replays
// only what changed since (role, schema, system and user variables, SQL prepared statements,
// last insert id) — usually nothing at all.

import type { OwnStatement } from "../backend/own-statements.js";
import { ident, isRestorable, setRole, setSystemVariables, setUserVariables } from "./restore-plan.js";
import type { StateTracker, UserVariable } from "./state-tracker.js";

export interface StateSnapshot {
  schema: string | null;
  systemVariables: Map<string, string>;
  userVariables: Map<string, UserVariable>;
  sqlPrepared: Map<string, string>;
  lastInsertId: bigint;
  statusFlags: number;
  role: string | null;
}

export function snapshotState(t: StateTracker): StateSnapshot {
  return {
    schema: t.schema, systemVariables: new Map(t.systemVariables), userVariables: new Map(t.userVariableValues),
    sqlPrepared: new Map(t.sqlPrepared), lastInsertId: t.lastInsertId, statusFlags: t.statusFlags, role: t.role,
  };
}

const sameUserVariable = (a: UserVariable, b: UserVariable): boolean =>
  a.type === b.type && a.charset === b.charset && (a.value === null ? b.value === null : b.value !== null && a.value.equals(b.value));

/** The statements that take a connection from `snap` to the tracker's current state. */
export function syncStatements(snap: StateSnapshot, t: StateTracker, noBackslashEscapes: boolean): OwnStatement[] {
  const out: OwnStatement[] = [];
  if (t.role !== null && t.role !== snap.role) out.push(setRole(t.role));
  if (t.schema !== null && t.schema !== snap.schema) out.push({ kind: "query", sql: `USE ${ident(t.schema)}` });
  const sys = setSystemVariables([...t.systemVariables].filter(([k, v]) => isRestorable(k) && snap.systemVariables.get(k) !== v), noBackslashEscapes);
  if (sys) out.push(sys);
  const user: [string, UserVariable | null][] = [];
  for (const [k, v] of t.userVariableValues) {
    const was = snap.userVariables.get(k);
    if (!was || !sameUserVariable(was, v)) user.push([k, v]);
  }
  for (const k of snap.userVariables.keys()) if (!t.userVariableValues.has(k)) user.push([k, null]);
  const setUser = setUserVariables(user);
  if (setUser) out.push(setUser);
  for (const [name, text] of t.sqlPrepared) if (snap.sqlPrepared.get(name) !== text) out.push({ kind: "query", sql: text });
  for (const name of snap.sqlPrepared.keys()) if (!t.sqlPrepared.has(name)) out.push({ kind: "query", sql: `DEALLOCATE PREPARE ${ident(name)}` });
  if (t.lastInsertId !== snap.lastInsertId && t.lastInsertId > 0n) out.push({ kind: "query", sql: `DO LAST_INSERT_ID(${t.lastInsertId})` });
  return out;
}
