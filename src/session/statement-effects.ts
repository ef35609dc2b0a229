// What a client statement may do to session state, read from its tokens. The tracker applies
// these effects when the server accepts the statement. Anything not recognised here has no
// tracked effect; system variables are also reported by the server's session tracking.

import { Tok, splitStatements, tokenize, type Token } from "../protocol/tokenizer.js";
import { isKeyword, keywords } from "../protocol/keywords.js";
import { BUILTIN_FUNCTIONS, NOT_CALLS, mayCallAt } from "../protocol/sql-functions.js";

export interface StatementEffects {
  userVars: string[];
  sysVars: string[]; // session system variables assigned by SET (fallback when the server cannot track)
  tempTablesCreated: string[];
  tempTablesDropped: string[];
  locksAcquired: string[];
  locksReleased: string[];
  releaseAllLocks: boolean;
  lockTables: boolean | null; // true: LOCK TABLES / FTWRL, false: UNLOCK TABLES
  xa: "start" | "end" | null;
  sqlPrepared: { name: string; text: string }[];
  sqlDeallocated: string[];
  useSchema: string | null;
  calcFoundRows: boolean;
  /** IS_FREE_LOCK / IS_USED_LOCK: asks about named locks, which live on the home server */
  readsLocks: boolean;
  /** set only when the whole text is one KILL statement */
  kill: { query: boolean; id: number } | null;
  /** SET ROLE: what to replay, `NONE` or the quoted role name */
  role: string | null;
  /** CALL: a stored procedure, whose effects Ferry does not see */
  call: boolean;
  /** GET_LOCK with a name Ferry cannot read (an expression, a parameter): which locks are held is unknown */
  unknownLocks: boolean;
  /**
   * a change the server reports that leaves nothing to track: SET STATEMENT … FOR (its variables
   * are back when it ends), ALTER TABLE (reported for a temporary table)
   */
  neutralChange: boolean;
  /** SET TRANSACTION without SESSION or GLOBAL: characteristics of the next transaction only */
  nextTransaction: boolean;
  /** HANDLER … OPEN / CLOSE: the handler's name (its alias, else the table's) */
  handlersOpened: string[];
  handlersClosed: string[];
  /**
   * names a query (SELECT, WITH, VALUES) or a SET calls that may be stored functions, lower-cased,
   * `name` or `schema.name`: the server's state-change report cannot tell Ferry about these (a
   * result set ends in EOF for most clients; a SET accounts for a change itself), so
   * stored-functions.ts asks the server which they are
   */
  functionCalls: string[];
  /** CREATE or DROP FUNCTION: what Ferry knows of stored functions' names no longer holds */
  routinesChanged: boolean;
}

/**
 * Effects that tie state to the server a statement runs on (named locks, table locks, temporary
 * tables, XA, SQL prepared statements, the schema), and questions about named locks: such
 * statements run in the session's home hostgroup whatever the query rules say, so every client
 * takes and sees its locks on the same server.
 */
export function pinsToServer(fx: StatementEffects): boolean {
  return fx.locksAcquired.length > 0 || fx.locksReleased.length > 0 || fx.releaseAllLocks || fx.lockTables !== null ||
    fx.tempTablesCreated.length > 0 || fx.tempTablesDropped.length > 0 || fx.xa !== null || fx.sqlPrepared.length > 0 ||
    fx.sqlDeallocated.length > 0 || fx.useSchema !== null || fx.readsLocks || fx.handlersOpened.length > 0 || fx.handlersClosed.length > 0;
}

/**
 * Whether a statement's own effects account for the server reporting that the session's state
 * changed (session_track_state_change: MariaDB reports it for variables, the schema, SQL
 * prepared statements, temporary tables, and every stored routine that ran). A CALL never does;
 * a statement with none of these effects ran a stored function.
 */
export function explainsStateChange(fx: StatementEffects): boolean {
  return !fx.call && (fx.neutralChange || fx.userVars.length > 0 || fx.sysVars.length > 0 || fx.tempTablesCreated.length > 0 ||
    fx.tempTablesDropped.length > 0 || fx.sqlPrepared.length > 0 || fx.sqlDeallocated.length > 0 || fx.useSchema !== null || fx.role !== null);
}

function empty(): StatementEffects {
  return {
    userVars: [], sysVars: [], tempTablesCreated: [], tempTablesDropped: [], locksAcquired: [], locksReleased: [],
    releaseAllLocks: false, lockTables: null, xa: null, sqlPrepared: [], sqlDeallocated: [], useSchema: null,
    calcFoundRows: false, readsLocks: false, kill: null, role: null, call: false, unknownLocks: false, neutralChange: false,
    nextTransaction: false, handlersOpened: [], handlersClosed: [], functionCalls: [], routinesChanged: false,
  };
}

const PLAIN_DML = keywords("select", "insert", "update", "delete", "replace", "with", "values", "table", "show", "explain", "describe", "desc", "commit", "rollback", "begin", "start");
/** statements whose calls of stored functions the server's state-change report may not show */
const QUERIES = keywords("select", "with", "values");
const CALLS_UNREPORTED = new Set(["select", "with", "values", "set"]);

/**
 * Cheap byte-level pre-check on a COM_QUERY payload: false when the statement cannot have a
 * tracked effect, so the hot path skips tokenizing. Plain DML qualifies when it has no ';', '@',
 * no "_lock" / "_calc" (GET_LOCK, RELEASE_LOCK, SQL_CALC_FOUND_ROWS) in any case, and, for a
 * query, no parenthesis after a name that may be a stored function's.
 */
export function mayHaveEffects(buf: Buffer, start: number, end: number): boolean {
  let p = start;
  while (p < end && (buf[p] === 32 || buf[p] === 10 || buf[p] === 13 || buf[p] === 9 || buf[p] === 40)) p++;
  let w = p;
  while (w < end && ((buf[w] | 0x20) >= 97 && (buf[w] | 0x20) <= 122)) w++;
  if (w - p < 2 || w - p > 8 || !isKeyword(buf, p, w, PLAIN_DML)) return true;
  const query = isKeyword(buf, p, w, QUERIES);
  for (let i = w; i < end; i++) {
    const c = buf[i];
    if (c === 64 || c === 59) return true; // @ ;
    if (c === 40 && query && mayCallAt(buf, w, i)) return true; // (
    if (c === 95 && i + 4 < end) { // _
      const a = buf[i + 1] | 0x20, b = buf[i + 2] | 0x20, d = buf[i + 3] | 0x20, e = buf[i + 4] | 0x20;
      if ((a === 108 && b === 111 && d === 99 && e === 107) || (a === 99 && b === 97 && d === 108 && e === 99)) return true;
    }
    if (c === 47 && buf[i + 1] === 42) return true; // comments may hide executable code
  }
  return false;
}

const word = (t: Token | undefined, ...w: string[]): boolean => t !== undefined && t.type === Tok.Word && w.includes(t.text);
const nameOf = (t: Token | undefined): string | null =>
  t && (t.type === Tok.Word || t.type === Tok.Ident || t.type === Tok.String) ? t.text : null;

export function analyzeStatements(sql: string): StatementEffects {
  const fx = empty();
  const stmts = splitStatements(tokenize(sql));
  for (const s of stmts) analyzeOne(s, fx, sql);
  if (stmts.length === 1) fx.kill = parseKill(stmts[0]);
  return fx;
}

function analyzeOne(t: Token[], fx: StatementEffects, sql: string): void {
  let f = 0;
  while (t[f]?.type === Tok.Punct && t[f].text === "(") f++;
  const first = t[f]?.type === Tok.Word ? t[f].text : "";
  const callsUnreported = CALLS_UNREPORTED.has(first);
  // user variables assigned anywhere: @a := ..., INTO @a, @b
  for (let i = 0; i < t.length; i++) {
    const tok = t[i];
    if (first !== "set" && tok.type === Tok.UserVar && t[i + 1]?.type === Tok.Punct && t[i + 1].text === ":=") fx.userVars.push(tok.text);
    if (word(tok, "into")) {
      for (let j = i + 1; j < t.length && (t[j].type === Tok.UserVar || (t[j].type === Tok.Punct && t[j].text === ",")); j++) {
        if (t[j].type === Tok.UserVar) fx.userVars.push(t[j].text);
      }
    }
    const call = (tok.type === Tok.Word || tok.type === Tok.Ident) && t[i + 1]?.type === Tok.Punct && t[i + 1].text === "(";
    if (call && callsUnreported && i > 0) noteCall(t, i, fx);
    if (call && tok.type === Tok.Word) {
      const arg = t[i + 2]?.type === Tok.String ? t[i + 2].text : null;
      // GET_LOCK('name', …): a name Ferry reads; anything else (an expression, a parameter) it cannot
      if (tok.text === "get_lock") {
        if (arg !== null && t[i + 3]?.type === Tok.Punct && t[i + 3].text === ",") fx.locksAcquired.push(arg);
        else fx.unknownLocks = true;
      } else if (tok.text === "release_lock" && arg !== null) fx.locksReleased.push(arg);
      else if (tok.text === "release_all_locks") fx.releaseAllLocks = true;
      else if (tok.text === "is_free_lock" || tok.text === "is_used_lock") fx.readsLocks = true;
    }
    if (word(tok, "sql_calc_found_rows")) fx.calcFoundRows = true;
  }
  switch (first) {
    case "call": fx.call = true; return;
    case "alter": fx.neutralChange = true; return;
    case "set": return analyzeSet(t, fx, sql);
    case "create": {
      if (namesFunction(t)) fx.routinesChanged = true;
      let i = 1;
      if (word(t[i], "or") && word(t[i + 1], "replace")) i += 2;
      // a temporary sequence is a temporary table too (DROP TEMPORARY TABLE drops it)
      if (word(t[i], "temporary") && word(t[i + 1], "table", "sequence")) {
        i += 2;
        if (word(t[i], "if") && word(t[i + 1], "not") && word(t[i + 2], "exists")) i += 3;
        const name = qualifiedName(t, i);
        if (name) fx.tempTablesCreated.push(name);
      }
      return;
    }
    case "drop": {
      if (namesFunction(t)) fx.routinesChanged = true;
      let i = 1;
      if (word(t[1], "prepare")) {
        const name = nameOf(t[2]);
        if (name) fx.sqlDeallocated.push(name.toLowerCase());
        return;
      }
      if (word(t[i], "temporary")) i++;
      if (!word(t[i], "table", "tables", "sequence")) return;
      i++;
      if (word(t[i], "if") && word(t[i + 1], "exists")) i += 2;
      while (i < t.length) {
        const name = qualifiedName(t, i);
        if (name) fx.tempTablesDropped.push(name);
        while (i < t.length && !(t[i].type === Tok.Punct && t[i].text === ",")) i++;
        i++;
      }
      return;
    }
    case "handler": {
      // HANDLER t OPEN [AS a] … HANDLER a CLOSE: an open handler keeps a position in its table
      const table = qualifiedName(t, 1);
      const k = t.findIndex((x, j) => j > 1 && word(x, "open", "close"));
      if (table === null || k < 0) return;
      const name = table.slice(table.lastIndexOf(".") + 1);
      if (word(t[k], "close")) fx.handlersClosed.push(name);
      else fx.handlersOpened.push((nameOf(word(t[k + 1], "as") ? t[k + 2] : t[k + 1]) ?? name).toLowerCase());
      return;
    }
    case "lock":
      if (word(t[1], "table", "tables")) fx.lockTables = true;
      return;
    case "unlock":
      if (word(t[1], "table", "tables")) fx.lockTables = false;
      return;
    case "flush":
      if (t.some((x) => word(x, "lock")) && t.some((x) => word(x, "read"))) fx.lockTables = true;
      return;
    case "xa":
      if (word(t[1], "start", "begin")) fx.xa = "start";
      else if (word(t[1], "commit", "rollback")) fx.xa = "end";
      return;
    case "prepare": {
      const name = nameOf(t[1]);
      if (name) fx.sqlPrepared.push({ name: name.toLowerCase(), text: sql.slice(t[0].start, t[t.length - 1].end) });
      return;
    }
    case "deallocate": {
      const name = nameOf(t[2]);
      if (word(t[1], "prepare") && name) fx.sqlDeallocated.push(name.toLowerCase());
      return;
    }
    case "use": {
      const name = nameOf(t[1]);
      if (name) fx.useSchema = name;
      return;
    }
  }
}

/** CREATE [OR REPLACE] [DEFINER = …] [AGGREGATE] FUNCTION, DROP FUNCTION: the word comes early. */
const namesFunction = (t: Token[]): boolean => t.slice(1, 12).some((x) => word(x, "function"));

/** t[i], a name before a parenthesis, when it may call a stored function: `f(`, `` `f`( ``, `schema.f(`. */
function noteCall(t: Token[], i: number, fx: StatementEffects): void {
  const tok = t[i];
  const qualified = t[i - 1]?.type === Tok.Punct && t[i - 1].text === "." ? nameOf(t[i - 2]) : null;
  if (qualified !== null) fx.functionCalls.push(`${qualified}.${tok.text}`.toLowerCase());
  else if (tok.type === Tok.Ident || (!NOT_CALLS.has(tok.text) && !BUILTIN_FUNCTIONS.has(tok.text))) fx.functionCalls.push(tok.text.toLowerCase());
}

function qualifiedName(t: Token[], i: number): string | null {
  const a = nameOf(t[i]);
  if (!a) return null;
  if (t[i + 1]?.type === Tok.Punct && t[i + 1].text === ".") {
    const b = nameOf(t[i + 2]);
    return b ? `${a}.${b}`.toLowerCase() : null;
  }
  return a.toLowerCase();
}

function analyzeSet(t: Token[], fx: StatementEffects, sql: string): void {
  // SET STATEMENT … FOR <stmt> (MariaDB): the variables are the session's again when it ends; the
  // statement after FOR has its own effects.
  if (word(t[1], "statement")) {
    fx.neutralChange = true;
    const k = t.findIndex((x, j) => j > 1 && word(x, "for"));
    if (k > 0) analyzeOne(t.slice(k + 1), fx, sql);
    return;
  }
  // SET DEFAULT ROLE and SET PASSWORD change accounts, not the session
  if (word(t[1], "default", "password")) return;
  // SET ROLE r | NONE: the session's current role (role names keep their case)
  if (word(t[1], "role")) {
    const r = t[2];
    if (t.length !== 3 || !r) return;
    if (word(r, "none")) fx.role = "NONE";
    else if (r.type === Tok.Word) fx.role = "`" + sql.slice(r.start, r.end).replace(/`/g, "``") + "`";
    else if (r.type === Tok.Ident || r.type === Tok.String) fx.role = "`" + r.text.replace(/`/g, "``") + "`";
    return;
  }
  let i = 1;
  let scope: "session" | "global" | "next" = "next";
  while (i < t.length) {
    if (word(t[i], "global", "persist", "persist_only")) { scope = "global"; i++; continue; }
    if (word(t[i], "session", "local")) { scope = "session"; i++; continue; }
    const tok = t[i];
    if (tok.type === Tok.UserVar) {
      fx.userVars.push(tok.text);
    } else if (tok.type === Tok.SysVar) {
      const name = tok.text;
      if (name.startsWith("global.")) { /* not session state */ }
      else fx.sysVars.push(name.replace(/^(session|local)\./, ""));
    } else if (word(tok, "names")) {
      fx.sysVars.push("character_set_client", "character_set_connection", "character_set_results", "collation_connection");
    } else if (word(tok, "character", "charset")) {
      fx.sysVars.push("character_set_client", "character_set_results", "collation_connection");
    } else if (word(tok, "transaction")) {
      if (scope === "session") fx.sysVars.push("tx_isolation", "tx_read_only");
      else if (scope === "next") fx.nextTransaction = true;
    } else if (tok.type === Tok.Word && scope !== "global") {
      fx.sysVars.push(tok.text);
    }
    // skip to the next top-level comma
    let depth = 0;
    for (i++; i < t.length; i++) {
      const x = t[i];
      if (x.type === Tok.Punct) {
        if (x.text === "(") depth++;
        else if (x.text === ")") depth--;
        else if (x.text === "," && depth === 0) { i++; break; }
      }
    }
    scope = "next";
  }
}

function parseKill(t: Token[]): { query: boolean; id: number } | null {
  if (!word(t[0], "kill")) return null;
  let i = 1;
  if (word(t[i], "hard", "soft")) i++;
  let query = false;
  if (word(t[i], "query")) { query = true; i++; if (word(t[i], "id")) return null; }
  else if (word(t[i], "connection")) i++;
  if (word(t[i], "user")) return null;
  if (t[i]?.type !== Tok.Number || t.length !== i + 1) return null;
  const id = Number(t[i].text);
  return Number.isSafeInteger(id) ? { query, id } : null;
}
