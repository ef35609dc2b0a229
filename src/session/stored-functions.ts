// Which of the names a statement called are stored functions. A stored function may leave
// temporary tables, named locks or user variables behind, as a procedure may. MariaDB reports a
// state change for every stored function that runs, but only in an OK packet: not for a query
// whose result set ends in an EOF packet (clients without CLIENT_DEPRECATE_EOF: mysql2, PyMySQL,
// libmariadb), and not distinguishably for a SET, which reports a change of its own. For those,
// Ferry looks the names up in information_schema.ROUTINES on the session's own connection, at the
// command boundary, and keeps the answer for every session of the process for a while: a name is
// looked up once a minute at most, and a CREATE or DROP FUNCTION run through Ferry forgets them
// all.

/** What is known of names (`schema.name`, lower-cased): stored function or not, until when. */
export class StoredFunctionNames {
  private readonly known = new Map<string, { fn: boolean; until: number }>();

  constructor(private readonly ttlMs = 60_000, private readonly maxEntries = 10_000) {}

  /** true: one of the keys is a stored function; false: none is; null: some are not known. */
  verdict(keys: readonly string[], now: number): boolean | null {
    let unknown = false;
    for (const k of keys) {
      const e = this.known.get(k);
      if (e === undefined || e.until < now) unknown = true;
      else if (e.fn) return true;
    }
    return unknown ? null : false;
  }

  learn(key: string, fn: boolean, now: number): void {
    if (this.known.size >= this.maxEntries) this.known.clear();
    this.known.set(key, { fn, until: now + this.ttlMs });
  }

  /** A function was created or dropped: nothing known holds any longer. */
  forget(): void {
    this.known.clear();
  }
}

/**
 * The keys of the names a statement called (StatementEffects.functionCalls), unqualified ones in
 * the schema the statement ran in; without a schema an unqualified name calls no stored function.
 */
export function callKeys(calls: readonly string[], schema: string | null): string[] {
  const keys = new Set<string>();
  for (const c of calls) {
    if (c.includes(".")) keys.add(c);
    else if (schema !== null) keys.add(`${schema.toLowerCase()}.${c}`);
  }
  return [...keys];
}

/** Text as a literal whatever the session's sql_mode (no quoting, no backslash escapes). */
const literal = (text: string): string => `CONVERT(X'${Buffer.from(text, "utf8").toString("hex")}' USING utf8mb4)`;

/** One query answering which of the keys are stored functions: a row with the key of each one that is. */
export function storedFunctionsQuery(keys: readonly string[]): string {
  const key = "LOWER(CONCAT(ROUTINE_SCHEMA, '.', ROUTINE_NAME))";
  return `SELECT ${key} FROM information_schema.ROUTINES WHERE ROUTINE_TYPE = 'FUNCTION' AND ${key} IN (${keys.map(literal).join(", ")})`;
}
