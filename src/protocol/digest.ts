// Statement digests: the statement with comments dropped, whitespace collapsed and literals
// replaced by "?" ("SELECT * FROM t WHERE id IN (?,...)"), as query rules match them and as
// digest statistics group them. Words keep the case the client wrote.

import { Tok, tokenize } from "./tokenizer.js";

const MAX_TOKENS = 2000;

export function digestText(sql: string): string {
  const tokens = tokenize(sql, MAX_TOKENS);
  let out = "";
  let prev: Tok | -1 = -1;
  let prevText = "";
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    let piece: string;
    if (t.type === Tok.String || t.type === Tok.Number) {
      piece = "?";
      // a literal list "(?, ?, ?)" collapses to "(?,...)"
      if (prevText === "(") {
        let j = i + 1;
        while (j + 1 < tokens.length && tokens[j].text === "," && (tokens[j + 1].type === Tok.String || tokens[j + 1].type === Tok.Number)) j += 2;
        if (j > i + 1) {
          piece = "?,...";
          i = j - 1;
        }
      }
      // a sign before a number is part of the literal: "= -1" → "= ?"
      if (t.type === Tok.Number && (prevText === "-" || prevText === "+") && out.length >= 2) {
        const beforeSign = out.slice(0, out.length - 1).trimEnd();
        const last = beforeSign[beforeSign.length - 1];
        if (last === undefined || "=<>(,".includes(last) || /\b(and|or|in|between|values|by|limit|offset|select|where|when|then|else|set)$/i.test(beforeSign)) {
          out = beforeSign;
          prevText = "";
        }
      }
    } else if (t.type === Tok.Word) {
      piece = sql.slice(t.start, t.end);
    } else {
      piece = sql.slice(t.start, t.end);
    }
    const glue = out === "" || piece === "," || piece === ")" || piece === "." || prevText === "(" || prevText === "." || (piece === "(" && prev === Tok.Word && !/^(in|values|and|or|not|on|as|from|join|where|exists)$/i.test(prevText)) ? "" : " ";
    out += glue + piece;
    prev = t.type;
    prevText = piece;
  }
  return out;
}
