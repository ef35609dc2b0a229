// CompressedStream against hand-made compressed packets: fed one byte at a time, stored and
// deflated payloads, sequence ids continuing from the client's, large writes split at 16 MiB.

import assert from "node:assert/strict";
import { Duplex, PassThrough } from "node:stream";
import { it } from "node:test";
import { deflateSync, inflateSync } from "node:zlib";
import { CompressedStream } from "../../src/protocol/compressed-stream.js";

/** A stand-in for the client socket: what the test writes comes out of `fromClient`, what the stream writes lands in `toClient`. */
function socketPair(): { socket: Duplex; fromClient: PassThrough; toClient: Buffer[] } {
  const fromClient = new PassThrough();
  const toClient: Buffer[] = [];
  const socket = new Duplex({
    read() { /* fed from fromClient */ },
    write(chunk: Buffer, _enc, cb) { toClient.push(chunk); cb(); },
  });
  fromClient.on("data", (c: Buffer) => socket.push(c));
  return { socket, fromClient, toClient };
}

const frame = (seq: number, payload: Buffer, compress: boolean): Buffer => {
  const body = compress ? deflateSync(payload) : payload;
  const h = Buffer.alloc(7);
  h.writeUIntLE(body.length, 0, 3);
  h[3] = seq;
  h.writeUIntLE(compress ? payload.length : 0, 4, 3);
  return Buffer.concat([h, body]);
};

/** Splits written compressed packets back into [seq, plain payload]. */
function unframe(bytes: Buffer): [number, Buffer][] {
  const out: [number, Buffer][] = [];
  for (let p = 0; p < bytes.length;) {
    const len = bytes.readUIntLE(p, 3), seq = bytes[p + 3], plain = bytes.readUIntLE(p + 4, 3);
    const body = bytes.subarray(p + 7, p + 7 + len);
    out.push([seq, plain ? inflateSync(body) : body]);
    p += 7 + len;
  }
  return out;
}

it("inflates compressed packets fed a byte at a time, stored and deflated, into the plain byte stream", async () => {
  const { socket, fromClient } = socketPair();
  const s = new CompressedStream(socket);
  const got: Buffer[] = [];
  s.on("data", (c: Buffer) => got.push(c));
  const query = Buffer.concat([Buffer.from([0x21, 0, 0, 0, 0x03]), Buffer.from("SELECT 'a rather long statement, long enough to be deflated'")]);
  const wire = Buffer.concat([frame(0, query.subarray(0, 10), false), frame(1, query.subarray(10), true)]);
  for (const b of wire) fromClient.write(Buffer.from([b]));
  await new Promise((r) => setImmediate(r));
  assert.ok(Buffer.concat(got).equals(query));
});

it("writes stored and deflated packets numbered after the client's last, splitting at 16 MiB", async () => {
  const { socket, fromClient, toClient } = socketPair();
  const s = new CompressedStream(socket);
  s.on("data", () => undefined);
  fromClient.write(frame(4, Buffer.from([1, 0, 0, 0, 0x0e]), false)); // a COM_PING in packet 4
  await new Promise((r) => setImmediate(r));
  const ok = Buffer.from([7, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]);
  const big = Buffer.alloc(0xffffff + 100, 0x61);
  s.write(ok);
  s.write(big);
  await new Promise((r) => setImmediate(r));
  const frames = unframe(Buffer.concat(toClient));
  assert.deepEqual(frames.map(([seq, p]) => [seq, p.length]), [[5, 11], [6, 0xffffff], [7, 100]]);
  assert.ok(frames[0][1].equals(ok), "a short payload goes stored");
  assert.ok(Buffer.concat([frames[1][1], frames[2][1]]).equals(big));
  assert.ok(Buffer.concat(toClient).length < 200_000, "the repetitive 16 MiB went deflated");
});

it("refuses a packet that does not inflate to its announced length", async () => {
  const { socket, fromClient } = socketPair();
  const s = new CompressedStream(socket);
  const failed = new Promise<Error>((resolve) => s.on("error", resolve));
  const bad = frame(0, Buffer.alloc(100, 1), true);
  bad.writeUIntLE(99, 4, 3); // announce one byte less
  fromClient.write(bad);
  assert.match((await failed).message, /^malformed compressed packet/);
});
