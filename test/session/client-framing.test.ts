import assert from "node:assert/strict";
import { it } from "node:test";
import { ClientFraming, type CommandSink } from "../../src/session/client-framing.js";

const MAX = 0xffffff;

function packet(seq: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUIntLE(payload.length, 0, 3);
  h[3] = seq;
  return Buffer.concat([h, payload]);
}

/** A payload as the wire carries it: 0xFFFFFF-long packets, then a shorter (possibly empty) one. */
function framed(payload: Buffer, seq = 0): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const n = Math.min(MAX, payload.length - at);
    parts.push(packet(seq++, payload.subarray(at, at + n)));
    at += n;
    if (n < MAX) return Buffer.concat(parts);
  }
}

/** Drives the framing as the session does: command start, then the rest of the command or a file. */
class Driver implements CommandSink {
  readonly framing = new ClientFraming(this);
  mode: "idle" | "rest" | "file" = "idle";
  /** per command: its byte, its first packet's length and sequence id */
  readonly commands: string[] = [];
  ends = 0;
  /** bytes of each command that dispatch consumed */
  readonly consumed: number[] = [];
  /** bytes handed on after a command's first packet, as the session forwards them */
  walked = 0;
  /** the command after which the client sends a LOAD DATA file (the server's request is implied) */
  fileAfter = -1;

  dispatch(buf: Buffer, pos: number, end: number, len: number, seq: number): number {
    this.commands.push(`0x${buf[pos + 4].toString(16)}/${len}/${seq}`);
    const stop = Math.min(end, pos + 4 + len);
    this.consumed.push(stop - pos);
    if (this.framing.expect(len, stop - pos - 4)) this.mode = "rest";
    else this.commandDone();
    return stop;
  }

  private commandDone(): void {
    this.ends++;
    this.mode = "idle";
    if (this.commands.length - 1 === this.fileAfter && this.ends === this.commands.length) {
      this.mode = "file";
      this.framing.startFile();
    }
  }

  feed(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.mode === "idle") {
        pos = this.framing.readCommandStart(chunk, pos, chunk.length);
        continue;
      }
      const next = this.framing.walk(chunk, pos, chunk.length, this.mode === "file");
      this.walked += next - pos;
      pos = next;
      if (this.framing.ended) this.commandDone();
    }
  }
}

function run(stream: Buffer, cuts: number[], fileAfter = -1): Driver {
  const d = new Driver();
  d.fileAfter = fileAfter;
  let at = 0;
  for (const c of [...cuts, stream.length]) {
    d.feed(stream.subarray(at, c));
    at = c;
  }
  return d;
}

it("finds every command start and end, however the bytes are split", () => {
  const stream = Buffer.concat([
    framed(Buffer.from("\x03SELECT 1")),
    framed(Buffer.from("\x0e")),
    framed(Buffer.from("\x16SELECT ?")),
    framed(Buffer.from("\x03SELECT 'last'")),
  ]);
  const want = ["0x3/9/0", "0xe/1/0", "0x16/9/0", "0x3/14/0"];
  for (let a = 0; a <= stream.length; a++) {
    for (let b = a; b <= stream.length; b += 3) {
      const d = run(stream, [a, b]);
      assert.deepEqual(d.commands, want, `cut at ${a} and ${b}`);
      assert.equal(d.ends, 4, `cut at ${a} and ${b}`);
      assert.equal(d.mode, "idle");
    }
  }
});

it("ends a payload over 16 MiB at its last packet, including an empty last packet that ends a chunk", () => {
  for (const size of [MAX + 10, MAX, 2 * MAX]) {
    const payload = Buffer.alloc(size, 0x61);
    payload[0] = 0x03;
    // Nothing follows the command: the client waits for its answer, so the end must be seen at once.
    const stream = framed(payload);
    const last = 4 * Math.floor(size / MAX) + MAX * Math.floor(size / MAX); // where the last (shorter) packet's header starts
    // cuts: inside the first packet's prefix, at each header's edges, and inside the last header
    const cutsList = [[], [100], [70_000, 4 + MAX], [4 + MAX + 2], [last], [last + 2], [stream.length - 1]];
    for (const cuts of cutsList) {
      const d = run(stream, cuts);
      assert.deepEqual(d.commands, [`0x3/${MAX}/0`], `size ${size}, cuts ${cuts}`);
      assert.equal(d.ends, 1, `size ${size}, cuts ${cuts}: the command ended with its last byte`);
      assert.equal(d.walked, stream.length - d.consumed[0], `size ${size}, cuts ${cuts}: every byte after the dispatched part walked`);
    }
  }
});

it("walks LOAD DATA LOCAL file packets to the empty packet that ends the file", () => {
  const file = Buffer.concat([
    packet(2, Buffer.from("1,a\n2,b\n")),
    packet(3, Buffer.alloc(MAX, 0x62)), // a 0xFFFFFF-long file packet: its continuation follows ...
    packet(4, Buffer.alloc(0)), // ... and is empty: not the end of the file
    packet(5, Buffer.from("3,c\n")),
    packet(6, Buffer.alloc(0)), // the end of the file
  ]);
  const query = framed(Buffer.from("\x03LOAD DATA LOCAL INFILE 'f' INTO TABLE t"));
  const stream = Buffer.concat([query, file, framed(Buffer.from("\x0e"))]);
  const fileEnd = query.length + file.length;
  for (const cuts of [[], [query.length + 3], [query.length + 16 + 4 + MAX + 4], [fileEnd - 4], [fileEnd - 2, fileEnd]]) {
    const d = run(stream, cuts, 0);
    assert.equal(d.commands.length, 2, `cuts ${cuts}`);
    assert.equal(d.commands[1], "0xe/1/0", `cuts ${cuts}: the ping after the file is a command`);
    assert.equal(d.walked, file.length, `cuts ${cuts}: every file byte walked, nothing more`);
    assert.equal(d.ends, 3, `cuts ${cuts}`);
  }
});
