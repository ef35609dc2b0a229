// A read whose server is lost before it answers runs again on another server, so that a server
// crash under a running SELECT costs the client time, not an error (ProxySQL's
// query_retries_on_failure, MaxScale's retry_failed_reads). Only what running twice cannot
// change qualifies:
// - nothing of the response reached Ferry (so nothing reached the client);
// - the session is movable once the statement is given up: no transaction, lock or temporary
//   table that died with the server;
// - the statement reads: one SELECT, SHOW, DESCRIBE or EXPLAIN (a COM_QUERY, or the text of the
//   prepared statement a COM_STMT_EXECUTE runs), with no INTO and calling only built-in functions
//   that change nothing. A stored function may write, and a write that ran before the crash may
//   have committed: running it again could apply it twice, so such a statement gets 2013.
// - at most `proxy.read_retries` times for one statement.
//
// The command's bytes are taken from where the client's read put them. The command loop keeps
// their place only until the client's next read (command-loop.ts), so that forwarding copies
// nothing; a retry copies them once.

import { COM_QUERY, COM_STMT_EXECUTE, HEADER_SIZE } from "../protocol/constants.js";
import { Tok, splitStatements, tokenize, type Token } from "../protocol/tokenizer.js";
import type { Session } from "./session.js";

const FIRST_WORDS = new Set(["select", "show", "describe", "desc", "explain", "with", "values"]);

/** Words that may stand before a parenthesis without calling anything. */
const NOT_CALLS = new Set([
  "and", "or", "not", "xor", "in", "exists", "any", "some", "all", "from", "join", "on", "using", "where", "when", "then",
  "else", "select", "as", "by", "values", "over", "partition", "interval", "is", "like", "rlike", "regexp", "between",
  "distinct", "having", "case", "union", "except", "intersect", "lateral", "row", "with", "recursive", "index", "key",
  "div", "escape", "binary", "window", "order", "group", "limit", "offset", "straight_join", "natural", "cross", "inner",
  "left", "right", "outer", "minus", "for", "of", "share", "mode", "unique",
]);

/** Built-in functions that only compute a value. */
const PURE_FUNCTIONS = new Set([
  // aggregates and windows
  "count", "sum", "avg", "min", "max", "group_concat", "std", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop",
  "var_samp", "bit_and", "bit_or", "bit_xor", "json_arrayagg", "json_objectagg", "row_number", "rank", "dense_rank",
  "percent_rank", "cume_dist", "ntile", "lag", "lead", "first_value", "last_value", "nth_value", "median",
  "percentile_cont", "percentile_disc",
  // control flow and comparison
  "if", "ifnull", "nullif", "coalesce", "greatest", "least", "isnull", "interval", "nvl", "nvl2", "decode_oracle",
  // strings
  "concat", "concat_ws", "substring", "substr", "mid", "left", "right", "length", "octet_length", "char_length",
  "character_length", "bit_length", "lower", "upper", "lcase", "ucase", "trim", "ltrim", "rtrim", "replace", "lpad", "rpad",
  "locate", "position", "instr", "format", "hex", "unhex", "md5", "sha", "sha1", "sha2", "crc32", "repeat", "reverse",
  "ascii", "ord", "char", "field", "find_in_set", "elt", "make_set", "export_set", "strcmp", "space", "insert",
  "substring_index", "quote", "soundex", "regexp_replace", "regexp_substr", "regexp_instr", "to_base64", "from_base64",
  "bin", "oct", "conv", "weight_string", "natural_sort_key", "sformat", "collation", "charset", "coercibility",
  // numbers
  "abs", "ceil", "ceiling", "floor", "round", "truncate", "mod", "pow", "power", "sqrt", "rand", "sign", "exp", "ln",
  "log", "log2", "log10", "pi", "degrees", "radians", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "cot",
  "bit_count", "inet_aton", "inet_ntoa", "inet6_aton", "inet6_ntoa", "uuid", "uuid_short", "sys_guid",
  // dates and times
  "now", "current_timestamp", "localtime", "localtimestamp", "curdate", "current_date", "curtime", "current_time",
  "sysdate", "utc_timestamp", "utc_date", "utc_time", "date", "time", "timestamp", "year", "month", "monthname", "day",
  "dayname", "dayofmonth", "dayofweek", "dayofyear", "hour", "minute", "second", "microsecond", "quarter", "week",
  "weekday", "weekofyear", "yearweek", "date_add", "date_sub", "adddate", "subdate", "addtime", "subtime", "datediff",
  "timediff", "timestampdiff", "timestampadd", "date_format", "time_format", "str_to_date", "from_unixtime",
  "unix_timestamp", "from_days", "to_days", "to_seconds", "sec_to_time", "time_to_sec", "last_day", "makedate",
  "maketime", "period_add", "period_diff", "extract", "convert_tz", "get_format",
  // types
  "cast", "convert", "binary",
  // JSON
  "json_extract", "json_value", "json_query", "json_object", "json_array", "json_unquote", "json_quote", "json_contains",
  "json_contains_path", "json_length", "json_keys", "json_type", "json_valid", "json_depth", "json_search", "json_exists",
  "json_merge", "json_merge_patch", "json_merge_preserve", "json_set", "json_insert", "json_replace", "json_remove",
  "json_array_append", "json_array_insert", "json_compact", "json_detailed", "json_loose", "json_pretty", "json_table",
  "json_overlaps", "json_normalize", "json_equals",
  // session information (read, not changed)
  "database", "schema", "user", "current_user", "session_user", "system_user", "current_role", "version", "connection_id",
  "found_rows", "row_count", "sleep",
]);

const isPunct = (t: Token | undefined, c: string): boolean => t !== undefined && t.type === Tok.Punct && t.text === c;

/** True when `sql` is one statement that only reads and calls nothing that could change data. */
export function isRepeatableRead(sql: string): boolean {
  const stmts = splitStatements(tokenize(sql));
  if (stmts.length !== 1) return false;
  const t = stmts[0];
  let i = 0;
  while (isPunct(t[i], "(")) i++;
  if (t[i]?.type !== Tok.Word || !FIRST_WORDS.has(t[i].text)) return false;
  for (let j = 0; j < t.length; j++) {
    const tok = t[j];
    if (tok.type !== Tok.Word) continue;
    if (tok.text === "into") return false;
    if (!isPunct(t[j + 1], "(") || NOT_CALLS.has(tok.text)) continue;
    // schema.function( is a stored function, whatever its name
    if (isPunct(t[j - 1], ".") || !PURE_FUNCTIONS.has(tok.text)) return false;
  }
  return true;
}

/**
 * The session's backend was lost while its statement waited for the first byte of the response:
 * when the statement qualifies, it is given up on the lost server and held to run first once the
 * session has reconnected elsewhere. False: the caller fails the statement.
 */
export function retryRead(s: Session, where: string | null): boolean {
  if (s.readRetries >= s.deps.config().proxy.read_retries || s.scanner.started) return false;
  const command = s.loop.sentCommand();
  if (command === null) return false;
  const code = s.command.code;
  const text = code === COM_QUERY ? command.toString("utf8", HEADER_SIZE + 1)
    : code === COM_STMT_EXECUTE ? s.tracker.prepared.get(s.command.stmtId)?.sql ?? null : null;
  if (text === null || !isRepeatableRead(text)) return false;
  s.loop.abandonStatement();
  if (!s.tracker.movable) return false;
  const copy = Buffer.from(command);
  // dispatch wrote the statement's id on the lost connection over the client's
  if (code === COM_STMT_EXECUTE) copy.writeUInt32LE(s.command.stmtId, HEADER_SIZE + 1);
  s.readRetries++;
  s.loop.input.holdFirst(copy);
  s.lostFrom = where;
  s.log.warn({ server: where, retry: s.readRetries }, "backend lost before answering a read; running it again where the session reconnects");
  s.requestMove("backend-lost");
  return true;
}
