// Where a command runs (read/write split). COM_QUERY and COM_STMT_PREPARE go where the query
// rules send them; a prepared statement's executions follow its text; other statement commands
// stay where the session is (a cursor or long data pins it there); everything else goes home.
// Whatever the rules say, a session stays on its connection while pinned (transaction, temporary
// table, lock, …) and goes home with autocommit off, for multi-statement queries and for
// statements that take locks or create temporary tables.

import type { RuntimeConfig, UserConfig } from "../config/runtime-config.js";
import {
  COM_PING, COM_QUERY, COM_QUIT, COM_STATISTICS, COM_STMT_BULK_EXECUTE, COM_STMT_CLOSE, COM_STMT_EXECUTE, COM_STMT_FETCH, COM_STMT_PREPARE,
  COM_STMT_RESET, COM_STMT_SEND_LONG_DATA,
} from "../protocol/constants.js";
import { encodeErr } from "../protocol/packets.js";
import { splitStatements, tokenize } from "../protocol/tokenizer.js";
import { applyQueryRules } from "../router/query-rules.js";
import type { Router } from "../router/router.js";
import type { ParkedConnections } from "./parked-connections.js";
import { analyzeStatements, mayHaveEffects, pinsToServer } from "./statement-effects.js";
import type { StateTracker } from "./state-tracker.js";

/** The command was refused by a rule; its ERR is written. */
export const REFUSED = -1;
/** Refused, but the statement is larger than what arrived: the session cannot skip it and ends. */
export const REFUSED_LARGE = -2;

/** What routing decided besides the hostgroup (reused per session: nothing allocated per command). */
export interface RouteExtras {
  /** a rule's timeout for this statement, ms (0: none) */
  timeoutMs: number;
  /** for COM_STMT_PREPARE: where the statement's executions go */
  prepareHostgroup: number;
}

/** What routing reads of a session. */
export interface RoutedSession {
  readonly hostgroup: number;
  readonly homeHostgroup: number;
  readonly hasBackend: boolean;
  readonly tracker: StateTracker;
  readonly parked: ParkedConnections;
  readonly labels: Readonly<Record<string, string>> | null;
  readonly auth: { user: UserConfig; clientAddr: string };
  readonly client: { write(b: Buffer): boolean };
  readonly deps: { config(): RuntimeConfig; router: Router };
  readonly log: { info(o: object, msg: string): void };
}

function hasSemicolon(buf: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (buf[i] === 59) return true;
  return false;
}

/**
 * A query a rule sends away that still runs at home: several statements (they may mix reads and
 * writes), or one that takes locks, temporary tables and the like, which live where every client
 * takes them. Byte checks first; the text is decoded at most once.
 */
function mustRunAtHome(buf: Buffer, from: number, to: number): boolean {
  const several = hasSemicolon(buf, from, to);
  if (!several && !mayHaveEffects(buf, from, to)) return false;
  const sql = buf.toString("utf8", from, to);
  if (several && splitStatements(tokenize(sql)).length > 1) return true;
  return pinsToServer(analyzeStatements(sql));
}

/** The hostgroup for the command whose first packet's payload starts at buf[p] (avail of len bytes here), or REFUSED. */
export function routeCommand(s: RoutedSession, extras: RouteExtras, cmd: number, buf: Buffer, p: number, avail: number, len: number): number {
  const cfg = s.deps.config();
  let want = s.homeHostgroup;
  if (cmd === COM_STMT_EXECUTE || cmd === COM_STMT_BULK_EXECUTE) {
    const stmt = avail >= 5 ? s.tracker.prepared.get(buf.readUInt32LE(p + 1)) : undefined;
    if (!stmt) return s.hostgroup; // unknown, or "the last prepared" (0xFFFFFFFF): where it was prepared
    want = stmt.hostgroup;
  } else if (cmd === COM_QUERY || cmd === COM_STMT_PREPARE) {
    // A statement larger than Ferry assembles is matched on its first 64 KiB.
    if (cfg.queryRules.length > 0) {
      const o = applyQueryRules(cfg.queryRules, cfg.rulesNeedDigest, { username: s.auth.user.name, schema: s.tracker.schema, clientAddr: s.auth.clientAddr }, buf, p + 1, p + avail);
      if (o !== null) {
        if (o.log) s.log.info({ rules: o.matched, digest: o.digest ?? undefined, hostgroup: o.hostgroup, sql: buf.toString("utf8", p + 1, Math.min(p + avail, p + 1025)) }, "query rule matched");
        if (o.errorMsg !== null) {
          s.client.write(encodeErr(1, 1148, "42000", `ferry: statement refused by query rule ${o.matched[o.matched.length - 1]}: ${o.errorMsg}`));
          return len === avail ? REFUSED : REFUSED_LARGE;
        }
        if (cmd === COM_QUERY) extras.timeoutMs = o.timeoutMs ?? 0;
        if (o.hostgroup !== null && o.hostgroup !== s.homeHostgroup && len === avail && !mustRunAtHome(buf, p + 1, p + avail)) want = o.hostgroup;
      }
    }
    if (cmd === COM_STMT_PREPARE) extras.prepareHostgroup = want;
  } else if (cmd === COM_PING || cmd === COM_QUIT || cmd === COM_STATISTICS || cmd === COM_STMT_FETCH || cmd === COM_STMT_RESET ||
    cmd === COM_STMT_CLOSE || cmd === COM_STMT_SEND_LONG_DATA) {
    return s.hostgroup;
  }
  if (want === s.hostgroup) return want;
  const t = s.tracker;
  const persistent = s.auth.user.transactionPersistent;
  if (!t.autocommit && persistent) want = s.homeHostgroup;
  if (want === s.hostgroup) return want;
  if (!s.hasBackend) return want;
  if (t.pinned) {
    if (persistent) return s.hostgroup;
    const pins = t.pinReasons();
    if (pins.length !== 1 || pins[0] !== "transaction") return s.hostgroup;
  }
  // Nowhere to go (every server of that hostgroup down or shunned): the statement runs here.
  if (!s.parked.has(want) && s.deps.router.candidates(want, s.labels).length === 0) return s.hostgroup;
  return want;
}
