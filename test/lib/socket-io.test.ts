// SocketWriter and SocketReader on real loopback sockets: order across direct and stream writes,
// backpressure, and the read buffer handed over in place.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { it } from "node:test";
import { rebindForForwarding } from "../../src/frontend/rebind.js";
import { streamBinding, streamHandleOf } from "../../src/lib/libuv-stream.js";
import { SocketReader } from "../../src/lib/socket-reader.js";
import { SocketWriter } from "../../src/lib/socket-writer.js";

type Kind = "tcp" | "unix";
const KINDS: Kind[] = ["tcp", "unix"];

/** A connected pair over TCP or a Unix socket: `client` (ours) and `server` (the peer, paused until the test reads it). */
async function pair(kind: Kind = "tcp"): Promise<{ client: net.Socket; server: net.Socket; close(): void }> {
  const srv = net.createServer({ pauseOnConnect: true });
  const dir = kind === "unix" ? mkdtempSync(join(tmpdir(), "ferry-sock-")) : "";
  const path = join(dir, "s.sock");
  if (kind === "unix") await new Promise<void>((r) => srv.listen(path, r));
  else await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const accepted = new Promise<net.Socket>((r) => srv.once("connection", r));
  const client = kind === "unix" ? net.connect(path) : net.connect({ port: (srv.address() as net.AddressInfo).port, host: "127.0.0.1" });
  await new Promise<void>((r) => client.once("connect", r));
  const server = await accepted;
  return { client, server, close: () => { client.destroy(); server.destroy(); srv.close(); if (dir) rmSync(dir, { recursive: true, force: true }); } };
}

const chunk = (i: number, size: number): Buffer => Buffer.alloc(size, i % 251);

it("direct I/O is available on this Node (else Ferry falls back to the stream layer)", { skip: process.env.FERRY_STREAM_IO === "off" ? "FERRY_STREAM_IO=off" : false }, async () => {
  assert.ok(streamBinding, "process.binding('stream_wrap') has the expected shape");
  for (const kind of KINDS) {
    const p = await pair(kind);
    try {
      assert.ok(streamHandleOf(p.client), `a plain ${kind} socket's handle is used directly`);
      assert.ok(streamHandleOf(p.server), `an accepted ${kind} socket's handle is used directly`);
    } finally {
      p.close();
    }
  }
});

for (const kind of KINDS) it(`keeps order across direct and stream writes, reports backpressure, and drains (${kind})`, async () => {
  const p = await pair(kind);
  try {
    const w = new SocketWriter(p.client);
    let drained = 0;
    w.onDrain = () => drained++;
    const sent: Buffer[] = [];
    let refusedAt = -1;
    // Alternate direct and stream writes until the kernel is full, then a few more of each.
    for (let i = 0; i < 2000 && (refusedAt < 0 || i < refusedAt + 6); i++) {
      const c = chunk(i, 64 * 1024);
      sent.push(c);
      const ok = i % 3 === 2 ? p.client.write(c) : w.write(c);
      if (!ok && refusedAt < 0 && i % 3 !== 2) refusedAt = i;
    }
    assert.ok(refusedAt > 0, "a write is refused once the peer stops reading");
    assert.equal(w.queued, true, "the refused chunk is still queued");
    const expected = Buffer.concat(sent);
    const got: Buffer[] = [];
    let have = 0;
    await new Promise<void>((resolve) => {
      p.server.on("data", (d: Buffer) => {
        got.push(d);
        have += d.length;
        if (have >= expected.length) resolve();
      });
      p.server.resume();
    });
    assert.ok(Buffer.concat(got).equals(expected), "bytes arrive in the order written");
    assert.ok(drained >= 1, "onDrain ran once the queue emptied");
    assert.equal(w.queued, false);
  } finally {
    p.close();
  }
});

for (const kind of KINDS) it(`reads into its buffer in place and hands over a fresh one after renew() (${kind})`, async () => {
  const p = await pair(kind);
  try {
    const reader = new SocketReader();
    const seen: Buffer[] = [];
    const kept: Buffer[] = [];
    reader.sink = {
      onChunk: (c) => {
        seen.push(Buffer.from(c));
        kept.push(c); // kept past the call, as a queued write would: so renew
        reader.renew();
      },
    };
    const sock = rebindForForwarding(p.server, reader); // as a session does after login
    assert.ok(sock);
    reader.attach(sock);
    sock.resume();
    const ended = new Promise<void>((r) => sock.once("end", r));
    for (let i = 0; i < 5; i++) {
      p.client.write(chunk(i, 1000));
      await new Promise((r) => setTimeout(r, 20));
    }
    p.client.end();
    await ended; // end of stream still goes through net
    assert.equal(Buffer.concat(seen).length, 5000);
    assert.ok(Buffer.concat(kept).equals(Buffer.concat(seen)), "renewed buffers are never overwritten");
    sock.destroy();
  } finally {
    p.close();
  }
});
