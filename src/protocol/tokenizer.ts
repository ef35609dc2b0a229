// SQL tokenizer for MySQL/MariaDB dialect: enough to classify statements and, later, to build
// digests. Comments are skipped, except executable comments (/*! ... */, /*M! ... */) whose
// content the server runs and so is tokenized.

export const enum Tok {
  Word, // keyword or unquoted identifier (text lower-cased)
  Ident, // `quoted identifier` (text unquoted)
  String, // 'string' or "string" (text unescaped)
  Number,
  UserVar, // @name (text: name, lower-cased)
  SysVar, // @@[scope.]name (text: as written after @@, lower-cased)
  Punct, // single character, or ":="
}

export interface Token {
  type: Tok;
  text: string;
  start: number;
  end: number;
}

/** A byte of an unquoted identifier or keyword. */
export const isWordChar = (c: number): boolean =>
  (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95 || c === 36 || c >= 128;
const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const isSpace = (c: number): boolean => c === 32 || c === 9 || c === 10 || c === 13 || c === 12 || c === 11;

export function tokenize(sql: string, limit = 100_000): Token[] {
  const out: Token[] = [];
  const n = sql.length;
  let i = 0;
  let inExecComment = false;
  while (i < n && out.length < limit) {
    const c = sql.charCodeAt(i);
    if (isSpace(c)) { i++; continue; }
    // comments
    if (c === 35 /* # */ || (c === 45 && sql.charCodeAt(i + 1) === 45 && (i + 2 >= n || isSpace(sql.charCodeAt(i + 2))))) {
      const nl = sql.indexOf("\n", i);
      i = nl < 0 ? n : nl + 1;
      continue;
    }
    if (c === 47 && sql.charCodeAt(i + 1) === 42) { // /*
      if (sql.charCodeAt(i + 2) === 33 /* ! */ || (sql.charCodeAt(i + 2) === 77 && sql.charCodeAt(i + 3) === 33)) {
        i += sql.charCodeAt(i + 2) === 33 ? 3 : 4;
        while (i < n && isDigit(sql.charCodeAt(i))) i++;
        inExecComment = true;
        continue;
      }
      const close = sql.indexOf("*/", i + 2);
      i = close < 0 ? n : close + 2;
      continue;
    }
    if (inExecComment && c === 42 && sql.charCodeAt(i + 1) === 47) { i += 2; inExecComment = false; continue; }
    const start = i;
    if (c === 39 || c === 34) { // 'string' "string"
      const [text, next] = readQuoted(sql, i, c, true);
      out.push({ type: Tok.String, text, start, end: next });
      i = next;
      continue;
    }
    if (c === 96) { // `ident`
      const [text, next] = readQuoted(sql, i, 96, false);
      out.push({ type: Tok.Ident, text, start, end: next });
      i = next;
      continue;
    }
    if (c === 64) { // @ or @@
      if (sql.charCodeAt(i + 1) === 64) {
        i += 2;
        while (i < n && (isWordChar(sql.charCodeAt(i)) || sql.charCodeAt(i) === 46)) i++;
        out.push({ type: Tok.SysVar, text: sql.slice(start + 2, i).toLowerCase(), start, end: i });
        continue;
      }
      const q = sql.charCodeAt(i + 1);
      if (q === 39 || q === 34 || q === 96) {
        const [text, next] = readQuoted(sql, i + 1, q, q !== 96);
        out.push({ type: Tok.UserVar, text: text.toLowerCase(), start, end: next });
        i = next;
        continue;
      }
      i++;
      while (i < n && (isWordChar(sql.charCodeAt(i)) || sql.charCodeAt(i) === 46)) i++;
      out.push({ type: Tok.UserVar, text: sql.slice(start + 1, i).toLowerCase(), start, end: i });
      continue;
    }
    if (isDigit(c) || (c === 46 && isDigit(sql.charCodeAt(i + 1)))) {
      i++;
      while (i < n && (isWordChar(sql.charCodeAt(i)) || sql.charCodeAt(i) === 46)) i++;
      out.push({ type: Tok.Number, text: sql.slice(start, i), start, end: i });
      continue;
    }
    if (isWordChar(c)) {
      i++;
      while (i < n && isWordChar(sql.charCodeAt(i))) i++;
      out.push({ type: Tok.Word, text: sql.slice(start, i).toLowerCase(), start, end: i });
      continue;
    }
    if (c === 58 && sql.charCodeAt(i + 1) === 61) {
      out.push({ type: Tok.Punct, text: ":=", start, end: i + 2 });
      i += 2;
      continue;
    }
    out.push({ type: Tok.Punct, text: sql[i], start, end: i + 1 });
    i++;
  }
  return out;
}

function readQuoted(sql: string, i: number, quote: number, backslash: boolean): [string, number] {
  let text = "";
  let j = i + 1;
  let from = j;
  const n = sql.length;
  while (j < n) {
    const c = sql.charCodeAt(j);
    if (backslash && c === 92 && j + 1 < n) {
      text += sql.slice(from, j) + unescape(sql[j + 1]);
      j += 2;
      from = j;
      continue;
    }
    if (c === quote) {
      if (sql.charCodeAt(j + 1) === quote) { // doubled quote
        text += sql.slice(from, j + 1);
        j += 2;
        from = j;
        continue;
      }
      return [text + sql.slice(from, j), j + 1];
    }
    j++;
  }
  return [text + sql.slice(from, n), n];
}

function unescape(ch: string): string {
  switch (ch) {
    case "n": return "\n";
    case "t": return "\t";
    case "r": return "\r";
    case "0": return "\0";
    case "b": return "\b";
    case "Z": return "\x1a";
    default: return ch;
  }
}

/** Splits a token list into statements at top-level semicolons. */
export function splitStatements(tokens: Token[]): Token[][] {
  const out: Token[][] = [];
  let cur: Token[] = [];
  for (const t of tokens) {
    if (t.type === Tok.Punct && t.text === ";") {
      if (cur.length) out.push(cur);
      cur = [];
    } else {
      cur.push(t);
    }
  }
  if (cur.length) out.push(cur);
  return out;
}
