// Keyword lists matched against bytes of a statement without allocating.

/** Lower-case keywords, ready for isKeyword. */
export const keywords = (...words: string[]): Buffer[] => words.map((w) => Buffer.from(w.toLowerCase(), "latin1"));

/** Case-insensitive match of buf[start, end) against one of the keywords. */
export function isKeyword(buf: Buffer, start: number, end: number, words: readonly Buffer[]): boolean {
  outer: for (const w of words) {
    if (w.length !== end - start) continue;
    for (let i = 0; i < w.length; i++) if ((buf[start + i] | 0x20) !== w[i]) continue outer;
    return true;
  }
  return false;
}
