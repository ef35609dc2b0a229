// Query rules with ProxySQL's semantics: active rules in rule_id order; a rule applies when its
// flag_in equals the current flag and every condition it sets holds (username, schemaname,
// client_addr, match_digest on the digest text, match_pattern on the raw text, negated by
// negate_match_pattern). A matching rule sets what it carries (destination_hostgroup, error_msg,
// timeout, log); flag_out switches the flag, so only later rules with that flag_in apply next;
// apply stops the walk.

import type { QueryRule } from "../config/runtime-config.js";
import { digestOf } from "../protocol/digest.js";

export interface RuleContext {
  username: string;
  schema: string | null;
  clientAddr: string;
}

export interface RuleOutcome {
  hostgroup: number | null;
  errorMsg: string | null;
  timeoutMs: number | null;
  log: boolean;
  /** ids of the rules that matched, in order */
  matched: number[];
  digest: string | null;
}

/** Rules over the statement in buf[start, end) (a COM_QUERY or COM_STMT_PREPARE payload). */
export function applyQueryRules(rules: readonly QueryRule[], needDigest: boolean, ctx: RuleContext, buf: Buffer, start: number, end: number): RuleOutcome | null {
  let flag = 0;
  let out: RuleOutcome | null = null;
  const digest = needDigest ? digestOf(buf, start, end) : null;
  let sql: string | null = null; // made only when a rule matches on the text
  for (const r of rules) {
    if (r.flagIn !== flag) continue;
    if (r.username !== null && r.username !== ctx.username) continue;
    if (r.schemaname !== null && r.schemaname !== ctx.schema) continue;
    if (r.clientAddr !== null && !r.clientAddr.matches(ctx.clientAddr)) continue;
    if (r.matchDigest !== null && !r.matchDigest.test(digest!)) continue;
    if (r.matchPattern !== null && r.matchPattern.test((sql ??= buf.toString("utf8", start, end))) === r.negateMatchPattern) continue;
    out ??= { hostgroup: null, errorMsg: null, timeoutMs: null, log: false, matched: [], digest };
    out.matched.push(r.id);
    if (r.destinationHostgroup !== null) out.hostgroup = r.destinationHostgroup;
    if (r.errorMsg !== null) out.errorMsg = r.errorMsg;
    if (r.timeoutMs !== null) out.timeoutMs = r.timeoutMs;
    if (r.log) out.log = true;
    if (r.flagOut !== null) flag = r.flagOut;
    if (r.apply) break;
  }
  return out;
}
