// SQL function names Ferry knows. A word before a parenthesis is either one that calls nothing
// (NOT_CALLS), a built-in function, or possibly a stored function: a statement calling one of
// those may change session state where Ferry cannot see (session/stored-functions.ts asks the
// server which names are stored functions).

import { isWordChar } from "./tokenizer.js";

/** Words that may stand before a parenthesis without calling anything. */
export const NOT_CALLS = new Set([
  "and", "or", "not", "xor", "in", "exists", "any", "some", "all", "from", "join", "on", "using", "where", "when", "then",
  "else", "select", "as", "by", "values", "over", "partition", "interval", "is", "like", "rlike", "regexp", "between",
  "distinct", "having", "case", "union", "except", "intersect", "lateral", "row", "with", "recursive", "index", "key",
  "div", "escape", "binary", "window", "order", "group", "limit", "offset", "straight_join", "natural", "cross", "inner",
  "left", "right", "outer", "minus", "for", "of", "share", "mode", "unique", "against", "columns",
  // type names, as in CAST(x AS DECIMAL(10, 2))
  "decimal", "dec", "numeric", "fixed", "varchar", "nvarchar", "nchar", "varbinary", "datetime", "float", "double", "int",
  "integer", "signed", "unsigned", "real",
]);

/** Built-in functions that only compute a value. */
export const PURE_FUNCTIONS = new Set([
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

/**
 * Built-in functions besides the pure ones: their effects are tracked elsewhere (named locks,
 * LAST_INSERT_ID, sequences) or are not session state. None of these names can be called
 * unqualified as a stored function.
 */
const OTHER_BUILTINS = [
  "get_lock", "release_lock", "release_all_locks", "is_free_lock", "is_used_lock", "last_insert_id", "nextval", "lastval",
  "setval", "benchmark", "load_file", "master_pos_wait", "master_gtid_wait", "binlog_gtid_pos", "name_const", "match",
  "default", "password", "old_password", "encrypt", "des_encrypt", "des_decrypt",
  "aes_encrypt", "aes_decrypt", "compress", "uncompress", "uncompressed_length", "random_bytes", "kdf", "column_get",
  "column_create", "column_add", "column_delete", "column_exists", "column_list", "column_check", "column_json",
  "json_array_intersect", "json_object_filter_keys", "json_object_to_array", "json_schema_valid", "json_key_value",
  "regexp_like", "to_char", "chr", "add_months", "months_between", "format_bytes", "format_pico_time",
  "sys_context", "st_astext", "st_geomfromtext", "st_distance", "st_contains", "st_within", "st_x", "st_y",
  "point", "linestring", "polygon", "geometrycollection", "multipoint", "multilinestring", "multipolygon", "astext",
  "geomfromtext", "is_ipv4", "is_ipv6", "is_ipv4_compat", "is_ipv4_mapped", "wsrep_last_written_gtid",
  "wsrep_last_seen_gtid", "wsrep_sync_wait_upto_gtid", "crc32c", "vec_distance", "vec_fromtext", "vec_totext",
];

/** Every built-in function name Ferry knows. */
export const BUILTIN_FUNCTIONS = new Set([...PURE_FUNCTIONS, ...OTHER_BUILTINS]);

/**
 * Byte check at a parenthesis, buf[paren] = '(' in statement text starting at `start`: whether
 * what stands before it may call a stored function — a name that is neither a keyword nor a
 * built-in, a quoted name, or a qualified one (`schema.f(`). Quotes and comments are not
 * skipped: a parenthesis in a string only costs the caller a closer look.
 */
export function mayCallAt(buf: Buffer, start: number, paren: number): boolean {
  let j = paren - 1;
  while (j >= start && (buf[j] === 32 || buf[j] === 9 || buf[j] === 10 || buf[j] === 13)) j--;
  if (j < start) return false;
  if (buf[j] === 96) return true; // `quoted`(
  let k = j;
  while (k >= start && isWordChar(buf[k])) k--;
  if (k === j || (buf[k + 1] >= 48 && buf[k + 1] <= 57)) return false; // no word, or a number
  if (k >= start && buf[k] === 46) return true; // schema.f(
  const w = buf.toString("latin1", k + 1, j + 1).toLowerCase();
  return !NOT_CALLS.has(w) && !BUILTIN_FUNCTIONS.has(w);
}
