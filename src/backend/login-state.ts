// What a login gives a session beyond the server's global values, and COM_RESET_CONNECTION does
// not give back. The pool (pool.ts) resets connections for reuse, and a reused connection must
// hold what a new login would:
// - the character set the handshake named. MySQL's reset sets the server's defaults (it
//   initializes the session's variables from the global ones); MariaDB keeps the handshake's.
// - on MariaDB, the user's MAX_STATEMENT_TIME (CREATE or ALTER USER … WITH MAX_STATEMENT_TIME):
//   the login makes it the session's max_statement_time, the reset sets the global value.
// - IGNORE_SPACE in sql_mode, which the login adds for a client with CLIENT_IGNORE_SPACE (mysql2
//   and most connectors of its family set it): the reset sets the global sql_mode.
// Ferry reads these in the round trip that follows every login anyway (its setup statement, or
// a SELECT without session tracking) and sets them again after each reset. The interactive
// wait_timeout is given back by pool.ts; init_connect the reset does not repeat, so pool.ts keeps
// no connection of a server that has one.

/** Assigning collation_connection sets character_set_connection too. */
const CHARACTER_SET = ["character_set_client", "character_set_results", "collation_connection"];

/** The variables a login sets on this server that the reset may not leave as the login set them. */
export function loginVariables(serverVersion: string): string[] {
  return serverVersion.includes("MariaDB") ? [...CHARACTER_SET, "sql_mode", "max_statement_time"] : [...CHARACTER_SET, "sql_mode"];
}

/**
 * Each variable assigned its own value, to append to a SET statement: session tracking then
 * reports its value in the statement's OK, so reading it costs no round trip.
 */
export function selfAssignments(vars: string[]): string {
  return vars.map((v) => `, ${v}=@@${v}`).join("");
}

/**
 * Session tracking reports a character set or collation set to NULL (character_set_results =
 * NULL: results as stored) as '', which no SET accepts: such a value is written back as NULL.
 */
export const isNullReportedEmpty = (name: string, value: string): boolean =>
  value === "" && (name.startsWith("character_set") || name.startsWith("collation"));

/**
 * The SET statement that gives a reset session the values its login had (read in `vars` order);
 * null when one of them is not a plain name or number (Ferry does not write it into SQL).
 */
export function restoreStatement(values: [string, string | null][]): string | null {
  const parts: string[] = [];
  for (const [name, value] of values) {
    if (value === null) parts.push(`${name}=NULL`);
    else if (/^\d+(\.\d+)?$/.test(value)) parts.push(`${name}=${value}`);
    else if (isNullReportedEmpty(name, value)) parts.push(`${name}=NULL`);
    else if (/^[A-Za-z0-9_,]+$/.test(value) || (name === "sql_mode" && value === "")) parts.push(`${name}='${value}'`); // names; sql_mode's are comma-separated, maybe none
    else return null;
  }
  return `SET SESSION ${parts.join(", ")}`;
}
