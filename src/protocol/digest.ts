// Statement digests: the statement with comments dropped, whitespace collapsed and literals
// replaced by "?" ("SELECT * FROM t WHERE id IN (?,...)"), as query rules match them and as
// digest statistics group them. Words keep the case the client wrote. Query rules compute one
// for every statement, so this is one pass over the packet's bytes into a reused buffer, with a
// single string made at the end.

import { isKeyword, keywords } from "./keywords.js";

const MAX_DIGEST = 16 * 1024;
const out = Buffer.allocUnsafe(MAX_DIGEST + 16);

const isWordByte = (c: number): boolean =>
  (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95 || c === 36 || c >= 128;
const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const isSpace = (c: number): boolean => c === 32 || c === 9 || c === 10 || c === 13 || c === 12 || c === 11;

const enum K { None, Word, Ident, Literal, Var, Punct }

/** End of a quoted string or `identifier` starting at buf[i] (its opening quote). */
function quotedEnd(buf: Buffer, i: number, end: number): number {
  const q = buf[i++];
  while (i < end) {
    const d = buf[i];
    if (d === 92 && q !== 96) { i += 2; continue; }
    if (d === q) {
      if (buf[i + 1] === q) { i += 2; continue; }
      return i + 1;
    }
    i++;
  }
  return i;
}

const startsNumber = (buf: Buffer, i: number): boolean => isDigit(buf[i]) || (buf[i] === 46 && isDigit(buf[i + 1]));

/** End of a number (or 0x…, 1e5, 1.5) starting at buf[i]. */
function numberEnd(buf: Buffer, i: number, end: number): number {
  i++;
  while (i < end && (isWordByte(buf[i]) || buf[i] === 46)) i++;
  return i;
}

/** Words after which "(" starts a list or subquery, not a function call: "IN (", not "COUNT(". */
const NOT_CALLS = keywords("in", "values", "and", "or", "not", "on", "as", "from", "join", "where", "exists");
/** Words after which "-1" is a signed literal, not a subtraction. */
const BEFORE_SIGNED = keywords("and", "or", "in", "between", "values", "by", "limit", "offset", "select", "where", "when", "then", "else", "set");

/** Digest of the statement in buf[start, end). */
export function digestOf(buf: Buffer, start: number, end: number): string {
  let o = 0;
  let prev = K.None;
  let prevOpen = false, prevDot = false, prevSign = false;
  let prevWordStart = 0, prevWordEnd = 0; // in `out`
  let inExec = false;
  let i = start;
  while (i < end && o < MAX_DIGEST) {
    const c = buf[i];
    if (isSpace(c)) { i++; continue; }
    if (c === 35 || (c === 45 && buf[i + 1] === 45 && (i + 2 >= end || isSpace(buf[i + 2])))) { // # or "-- " comment
      while (i < end && buf[i] !== 10) i++;
      continue;
    }
    if (c === 47 && buf[i + 1] === 42) { // /* comment, or executable /*! … */ whose content counts
      const c2 = buf[i + 2];
      if (c2 === 33 || (c2 === 77 && buf[i + 3] === 33)) {
        i += c2 === 33 ? 3 : 4;
        while (i < end && isDigit(buf[i])) i++;
        inExec = true;
        continue;
      }
      i += 2;
      while (i < end && !(buf[i] === 42 && buf[i + 1] === 47)) i++;
      i += 2;
      continue;
    }
    if (inExec && c === 42 && buf[i + 1] === 47) { i += 2; inExec = false; continue; }
    // one token: [ts, i)
    const ts = i;
    let kind: K;
    if (c === 39 || c === 34 || c === 96) {
      i = quotedEnd(buf, i, end);
      kind = c === 96 ? K.Ident : K.Literal;
    } else if (c === 64) {
      i += buf[i + 1] === 64 ? 2 : 1;
      while (i < end && (isWordByte(buf[i]) || buf[i] === 46)) i++;
      kind = K.Var;
    } else if (startsNumber(buf, i)) {
      i = numberEnd(buf, i, end);
      kind = K.Literal;
    } else if (isWordByte(c)) {
      i++;
      while (i < end && isWordByte(buf[i])) i++;
      kind = K.Word;
    } else {
      i += c === 58 && buf[i + 1] === 61 ? 2 : 1;
      kind = K.Punct;
    }
    const single = kind === K.Punct && i - ts === 1 ? c : -1;
    if (kind === K.Literal) {
      if (prevSign && isDigit(c)) {
        // "= -1" → "= ?": drop the sign when what precedes it cannot end an operand
        let e = o - 1; // the sign
        while (e > 0 && out[e - 1] === 32) e--;
        const last = e > 0 ? out[e - 1] : -1;
        let ws = e;
        while (ws > 0 && isWordByte(out[ws - 1])) ws--;
        if (last === -1 || last === 61 || last === 60 || last === 62 || last === 40 || last === 44 || (ws < e && isKeyword(out, ws, e, BEFORE_SIGNED))) {
          o = e;
          prevOpen = last === 40;
        }
      }
      if (prevOpen) {
        // a literal list "(?, ?, ?)" collapses to "(?,...)"
        let j = i, more = false;
        for (;;) {
          let k = j;
          while (k < end && isSpace(buf[k])) k++;
          if (buf[k] !== 44) break;
          k++;
          while (k < end && isSpace(buf[k])) k++;
          if (buf[k] === 39 || buf[k] === 34) j = quotedEnd(buf, k, end);
          else if (startsNumber(buf, k)) j = numberEnd(buf, k, end);
          else break;
          more = true;
        }
        if (more) {
          i = j;
          out[o++] = 63; out[o++] = 44; out[o++] = 46; out[o++] = 46; out[o++] = 46; // ?,...
          prev = K.Literal; prevOpen = false; prevDot = false; prevSign = false;
          continue;
        }
      }
      if (o > 0 && !prevOpen && !prevDot) out[o++] = 32;
      out[o++] = 63; // ?
    } else {
      const glue = o > 0 && single !== 44 && single !== 41 && single !== 46 && !prevOpen && !prevDot &&
        !(single === 40 && prev === K.Word && !isKeyword(out, prevWordStart, prevWordEnd, NOT_CALLS));
      if (glue) out[o++] = 32;
      const n = Math.min(i - ts, MAX_DIGEST - o);
      // tokens are short: a byte loop beats Buffer#copy's call overhead
      for (let x = 0; x < n; x++) out[o + x] = buf[ts + x];
      if (kind === K.Word) { prevWordStart = o; prevWordEnd = o + n; }
      o += n;
    }
    prev = kind;
    prevOpen = single === 40;
    prevDot = single === 46;
    prevSign = single === 45 || single === 43;
  }
  return out.toString("utf8", 0, o);
}

export function digestText(sql: string): string {
  const b = Buffer.from(sql, "utf8");
  return digestOf(b, 0, b.length);
}
