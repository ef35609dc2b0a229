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
import { NOT_CALLS, PURE_FUNCTIONS } from "../protocol/sql-functions.js";
import { Tok, splitStatements, tokenize, type Token } from "../protocol/tokenizer.js";
import type { Session } from "./session.js";

const FIRST_WORDS = new Set(["select", "show", "describe", "desc", "explain", "with", "values"]);

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
