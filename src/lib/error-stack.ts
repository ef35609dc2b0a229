// What a log line records of a caught fault: the stack when it is an Error (where it happened is
// what makes a fault in Ferry's own code fixable), else the thrown value as text.

export function stackOf(e: unknown): string {
  return e instanceof Error && e.stack !== undefined ? e.stack : String(e);
}
