// Responses as servers send them, fed to the scanner whole and split at every byte boundary.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ResponseScanner, Shape, type ScanListener } from "../../src/protocol/response-scanner.js";
import { columnName, columnShape, describeColumnShape } from "../../src/protocol/column-definition.js";
import { encodeEof, encodeErr } from "../../src/protocol/packets.js";
import { PacketWriter } from "../../src/protocol/writer.js";

class Recorder implements ScanListener {
  events: string[] = [];
  onOk(buf: Buffer, s: number, _e: number, status: number): void { this.events.push(`ok:${buf[s]}:${status}`); }
  onEof(status: number): void { this.events.push(`eof:${status}`); }
  onErr(buf: Buffer, s: number): void { this.events.push(`err:${buf.readUInt16LE(s + 1)}`); }
  onLocalInfile(): void { this.events.push("infile"); }
  onPrepareOk(id: number, c: number, p: number, buf: Buffer, start: number): void {
    this.events.push(`prepare:${id}:${c}:${p}`);
    if (this.rewriteTo !== null) buf.writeUInt32LE(this.rewriteTo, start + 1);
  }
  onPrepareColumn(buf: Buffer, s: number, e: number): void {
    const shape = describeColumnShape(columnShape(buf, s, e));
    this.events.push(`column:${columnName(buf.subarray(s, e))}:${shape}`);
  }
  rewriteTo: number | null = null;
}

/** What the session would write to the client for one scan() call, per the scanner's contract. */
function forwarded(sc: ResponseScanner, chunk: Buffer, r: number): Buffer[] {
  const out: Buffer[] = [];
  if (sc.emit) out.push(sc.emit);
  const until = r >= 0 ? r : sc.forwardUntil;
  if (until > sc.forwardFrom) out.push(Buffer.from(chunk.subarray(sc.forwardFrom, until)));
  return out;
}

const pkt = (seq: number, payload: Buffer) => new PacketWriter(payload.length + 8).bytes(payload).finish(seq);
const ok = (seq: number, status: number, header = 0) => pkt(seq, Buffer.from([header, 0, 0, status & 0xff, status >> 8, 0, 0]));
const colCount = (seq: number, n: number) => pkt(seq, Buffer.from([n]));
/** A ColumnDefinition41; `extended`: MariaDB's extended metadata block after org_name. */
const colDef = (seq: number, name: string, type = 3, flags = 0, charset = 45, extended: string | null = null) => {
  const w = new PacketWriter().lenencString("def").lenencString("db").lenencString("t").lenencString("t").lenencString(name).lenencString(name);
  if (extended !== null) w.lenencString(extended);
  return pkt(seq, w.u8(12).u16(charset).u32(11).u8(type).u16(flags).u8(0).u16(0).finish(0).subarray(4));
};
const row = (seq: number, ...vals: string[]) => { const w = new PacketWriter(); for (const v of vals) w.lenencString(v); return pkt(seq, w.finish(0).subarray(4)); };

function textResult(deprecateEof: boolean, more: boolean): Buffer {
  const parts = [colCount(1, 2), colDef(2, "a"), colDef(3, "b")];
  let seq = 4;
  if (!deprecateEof) parts.push(encodeEof(seq++, 0x0002));
  parts.push(row(seq++, "1", "x"), row(seq++, "", "\u00fe"), row(seq++, "3", "z".repeat(300)));
  const status = 0x0002 | (more ? 0x0008 : 0);
  parts.push(deprecateEof ? ok(seq++, status, 0xfe) : encodeEof(seq++, status));
  return Buffer.concat(parts);
}

function scanAllSplits(shape: Shape, deprecateEof: boolean, bytes: Buffer, trailer = Buffer.from([9, 9, 9]), expectOut = bytes, rewriteTo: number | null = null, cacheMetadata = false): { end: number; events: string[] } {
  const whole = Buffer.concat([bytes, trailer]);
  let reference: { end: number; events: string[] } | null = null;
  for (let cut = 0; cut <= bytes.length; cut++) {
    const rec = new Recorder();
    rec.rewriteTo = rewriteTo;
    const sc = new ResponseScanner(rec);
    sc.begin(shape, deprecateEof, cacheMetadata);
    const a = Buffer.from(whole.subarray(0, cut));
    const b = Buffer.from(whole.subarray(cut));
    const out: Buffer[] = [];
    let end = sc.scan(a, 0, a.length);
    out.push(...forwarded(sc, a, end));
    if (end >= 0) {
      assert.equal(end, bytes.length, `split at ${cut}: ended early`);
    } else {
      const r = sc.scan(b, 0, b.length);
      out.push(...forwarded(sc, b, r));
      assert.ok(r >= 0, `split at ${cut}: response never ended`);
      end = cut + r;
    }
    assert.ok(Buffer.concat(out).equals(expectOut), `split at ${cut}: forwarded bytes differ from the response`);
    assert.equal(sc.active, false);
    const got = { end, events: rec.events };
    if (reference) assert.deepEqual(got, reference, `split at ${cut}`);
    reference = got;
  }
  assert.ok(reference);
  assert.equal(reference.end, bytes.length);
  return reference;
}

describe("response scanner", () => {
  it("finds the end of a text result set with EOF packets", () => {
    const r = scanAllSplits(Shape.Result, false, textResult(false, false));
    assert.deepEqual(r.events, ["eof:2"]);
  });

  it("finds the end of a text result set with CLIENT_DEPRECATE_EOF", () => {
    const r = scanAllSplits(Shape.Result, true, textResult(true, false));
    assert.deepEqual(r.events, ["ok:254:2"]);
  });

  it("follows multi-results until the last one", () => {
    const bytes = Buffer.concat([textResult(true, true), ok(1, 0x000a), textResult(true, false)]);
    const r = scanAllSplits(Shape.Result, true, bytes);
    assert.deepEqual(r.events, ["ok:254:10", "ok:0:10", "ok:254:2"]);
  });

  it("ends at an ERR in the middle of rows", () => {
    const bytes = Buffer.concat([colCount(1, 1), colDef(2, "a"), row(3, "1"), encodeErr(4, 1317, "70100", "Query execution was interrupted")]);
    const r = scanAllSplits(Shape.Result, true, bytes);
    assert.deepEqual(r.events, ["err:1317"]);
  });

  it("reports a LOCAL INFILE request and then waits for the server's OK", () => {
    const rec = new Recorder();
    const sc = new ResponseScanner(rec);
    sc.begin(Shape.Result, true);
    const req = pkt(1, Buffer.concat([Buffer.from([0xfb]), Buffer.from("/tmp/f")]));
    assert.equal(sc.scan(req, 0, req.length), -1);
    assert.deepEqual(rec.events, ["infile"]);
    const done = ok(4, 0x0002);
    assert.equal(sc.scan(done, 0, done.length), done.length);
  });

  it("skips COM_STMT_PREPARE parameter and column definitions, with and without EOF", () => {
    const prep = (deprecate: boolean) => {
      const head = pkt(1, Buffer.from([0, 7, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0]));
      const parts = [head, colDef(2, "?"), colDef(3, "?")];
      let seq = 4;
      if (!deprecate) parts.push(encodeEof(seq++, 2));
      parts.push(colDef(seq++, "c"));
      if (!deprecate) parts.push(encodeEof(seq++, 2));
      return Buffer.concat(parts);
    };
    assert.deepEqual(scanAllSplits(Shape.Prepare, false, prep(false)).events, ["prepare:7:1:2", "column:c:LONG"]);
    assert.deepEqual(scanAllSplits(Shape.Prepare, true, prep(true)).events, ["prepare:7:1:2", "column:c:LONG"]);
  });

  it("hands each result column definition of COM_STMT_PREPARE to the listener whole, extended metadata or not", () => {
    const head = pkt(1, Buffer.from([0, 7, 0, 0, 0, 3, 0, 1, 0, 0, 0, 0]));
    const bytes = Buffer.concat([head, colDef(2, "?", 253, 0, 63), colDef(3, "n", 8, 0x20, 63), colDef(4, "b", 253, 0x80, 63, "\x00json"), colDef(5, "s", 253, 0, 224)]);
    assert.deepEqual(scanAllSplits(Shape.Prepare, true, bytes).events,
      ["prepare:7:3:1", "column:n:LONGLONG UNSIGNED", "column:b:VAR_STRING binary", "column:s:VAR_STRING"]);
    // A column definition without its fixed-length fields is a malformed response.
    const bad = Buffer.concat([pkt(1, Buffer.from([0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])), pkt(2, new PacketWriter().lenencString("def").finish(0).subarray(4))]);
    const sc = new ResponseScanner(new Recorder());
    sc.begin(Shape.Prepare, true);
    assert.throws(() => sc.scan(bad, 0, bad.length), /malformed column definition/);
  });

  it("lets a listener rewrite the statement id of COM_STMT_PREPARE_OK, however the packet is split", () => {
    const head = pkt(1, Buffer.from([0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
    const bytes = Buffer.concat([head, colDef(2, "c")]);
    const expected = Buffer.from(bytes);
    expected.writeUInt32LE(0x01020304, 5);
    scanAllSplits(Shape.Prepare, true, bytes, Buffer.from([9]), expected, 0x01020304);
  });

  it("hands a status packet split over three chunks over once, whole", () => {
    const bytes = Buffer.concat([colCount(1, 1), colDef(2, "a"), row(3, "x"), ok(4, 0x0002, 0xfe)]);
    const okStart = bytes.length - 11;
    for (let a = okStart - 2; a < bytes.length - 1; a++) {
      for (let b = a + 1; b < bytes.length; b++) {
        const sc = new ResponseScanner(new Recorder());
        sc.begin(Shape.Result, true);
        const parts = [bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)].map((x) => Buffer.from(x));
        const out: Buffer[] = [];
        let r = -1;
        for (const part of parts) {
          r = sc.scan(part, 0, part.length);
          out.push(...forwarded(sc, part, r));
        }
        assert.equal(r, parts[2].length, `cuts ${a}/${b}`);
        assert.ok(Buffer.concat(out).equals(bytes), `cuts ${a}/${b}: forwarded bytes differ`);
      }
    }
  });

  it("ends a COM_STMT_EXECUTE response that opened a cursor after the column definitions", () => {
    const bytes = Buffer.concat([colCount(1, 1), colDef(2, "a"), encodeEof(3, 0x0042)]);
    assert.deepEqual(scanAllSplits(Shape.Result, false, bytes).events, ["eof:66"]);
  });

  it("reads the metadata-follows byte of MARIADB_CLIENT_CACHE_METADATA: column definitions present or left out", () => {
    // A binary result of 2 columns as MariaDB 10.6+ sends it to a COM_STMT_EXECUTE: column count, the
    // metadata-follows byte, definitions when it is 1, the EOF after them unless CLIENT_DEPRECATE_EOF.
    // A binary row starts with 0x00 and may hold 0xFE bytes; a row here starts with a 0xFE value too.
    const binRow = (seq: number, v: number) => pkt(seq, Buffer.from([0x00, 0x00, v, 0, 0, 0, 0xfe, 0xfe]));
    for (const deprecateEof of [false, true]) {
      for (const follows of [1, 0]) {
        const parts = [pkt(1, Buffer.from([2, follows]))];
        let seq = 2;
        if (follows) parts.push(colDef(seq++, "a"), colDef(seq++, "b"));
        if (!deprecateEof) parts.push(encodeEof(seq++, 0x0002));
        parts.push(binRow(seq++, 0xfe), binRow(seq++, 7));
        parts.push(deprecateEof ? ok(seq++, 0x0002, 0xfe) : encodeEof(seq++, 0x0002));
        const bytes = Buffer.concat(parts);
        const r = scanAllSplits(Shape.Result, deprecateEof, bytes, undefined, undefined, null, true);
        assert.deepEqual(r.events, [deprecateEof ? "ok:254:2" : "eof:2"], `deprecateEof ${deprecateEof}, metadata follows ${follows}`);
      }
    }
    // a cursor: no definitions, the EOF with SERVER_STATUS_CURSOR_EXISTS ends the response
    const cursor = Buffer.concat([pkt(1, Buffer.from([1, 0])), encodeEof(2, 0x0042)]);
    assert.deepEqual(scanAllSplits(Shape.Result, false, cursor, undefined, undefined, null, true).events, ["eof:66"]);
    // a column count packet that lacks the byte the capability promises is refused, not guessed at
    const sc = new ResponseScanner(new Recorder());
    sc.begin(Shape.Result, true, true);
    assert.throws(() => sc.scan(pkt(1, Buffer.from([2])), 0, 5), /metadata-follows/);
  });

  it("treats a 0xFE-led row of a 0xFFFFFF packet as data, not a terminator", () => {
    const big = Buffer.alloc(0xffffff, 0x61);
    big[0] = 0xfe; // text row: first column's length as an 8-byte integer
    const rest = Buffer.alloc(100, 0x62);
    const bytes = Buffer.concat([colCount(1, 1), colDef(2, "a"), pkt(3, Buffer.alloc(0)).subarray(0, 0),
      Buffer.from([0xff, 0xff, 0xff, 3]), big, pkt(4, rest), ok(5, 0x0002, 0xfe)]);
    const rec = new Recorder();
    const sc = new ResponseScanner(rec);
    sc.begin(Shape.Result, true);
    let end = -1;
    for (let off = 0; off < bytes.length && end < 0; off += 65536) {
      const r = sc.scan(bytes, off, Math.min(bytes.length, off + 65536));
      if (r >= 0) end = r;
    }
    assert.equal(end, bytes.length);
    assert.deepEqual(rec.events, ["ok:254:2"]);
  });

  it("handles the one-packet shapes: simple OK, COM_SET_OPTION EOF and COM_STATISTICS text", () => {
    assert.deepEqual(scanAllSplits(Shape.Simple, false, ok(1, 2)).events, ["ok:0:2"]);
    assert.deepEqual(scanAllSplits(Shape.Simple, false, encodeEof(1, 2)).events, ["eof:2"]);
    assert.deepEqual(scanAllSplits(Shape.Raw, false, pkt(1, Buffer.from("Uptime: 5  Threads: 1"))).events, []);
    assert.deepEqual(scanAllSplits(Shape.FieldList, false, Buffer.concat([colDef(1, "a"), colDef(2, "b"), encodeEof(3, 2)])).events, ["eof:2"]);
  });

  it("starts each response unstarted, so an error injected before it arrives takes sequence id 1", () => {
    const sc = new ResponseScanner(new Recorder());
    sc.begin(Shape.Result, true);
    const first = textResult(true, false);
    assert.equal(sc.scan(first, 0, first.length), first.length);
    assert.equal(sc.started, true);
    assert.ok(sc.lastSeq > 1);
    sc.begin(Shape.Result, true);
    assert.equal(sc.started, false);
    assert.equal(sc.lastSeq, 0);
  });

  it("refuses a status packet that claims to be huge", () => {
    const sc = new ResponseScanner(new Recorder());
    sc.begin(Shape.Simple, false);
    const bogus = Buffer.from([0x00, 0x00, 0x20, 0x01, 0x00]);
    assert.throws(() => sc.scan(bogus, 0, bogus.length), /unexpected/);
  });
});
