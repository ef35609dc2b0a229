// SocketWriter and SocketReader on real loopback sockets: order across direct and stream writes,
// backpressure, the read buffer handed over in place, and when a written chunk is still kept.

import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { it } from "node:test";
import tls from "node:tls";
import type { Duplex } from "node:stream";
import { generate } from "selfsigned";
import { CompressedStream } from "../../src/protocol/compressed-stream.js";
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

/**
 * Ours: a TLS socket re-wrapped as a session re-wraps a TLS client, or a compressed stream over a
 * plain socket. Peer: what reads it, giving plain bytes.
 */
async function copyingPair(kind: "tls" | "compressed", over: Kind = "tcp"): Promise<{ ours: Duplex; peer: Duplex; close(): void }> {
  const p = await pair(over);
  if (kind === "compressed") {
    const ours = new CompressedStream(p.client);
    const peer = new CompressedStream(p.server);
    peer.pause();
    return { ours, peer, close: () => p.close() };
  }
  const pems = await generate([{ name: "commonName", value: "ferry-test" }], { keySize: 2048 });
  const server = new tls.TLSSocket(p.server, { isServer: true, secureContext: tls.createSecureContext({ cert: pems.cert, key: pems.private }) });
  const client = tls.connect({ socket: p.client, rejectUnauthorized: false });
  await Promise.all([new Promise((r) => server.once("secure", r)), new Promise((r) => client.once("secureConnect", r))]);
  const reader = new SocketReader();
  const ours = rebindForForwarding(client, reader);
  assert.ok(ours, "the TLS socket is re-wrapped");
  client.pause();
  server.pause();
  return { ours, peer: server, close: () => { ours.destroy(); server.destroy(); p.close(); } };
}

for (const kind of ["tls", "compressed"] as const) it(`a ${kind} socket keeps a chunk only while its stream buffers it, and queued says when`, async () => {
  const p = await copyingPair(kind);
  try {
    const w = new SocketWriter(p.ours);
    const got: Buffer[] = [];
    let have = 0;
    let want = 0;
    let arrived: (() => void) | null = null;
    p.peer.on("data", (d: Buffer) => {
      got.push(d);
      have += d.length;
      if (have >= want && arrived) arrived();
    });
    const until = (n: number): Promise<void> => { want = n; return have >= n ? Promise.resolve() : new Promise((r) => { arrived = r; }); };
    // Request and response: each chunk is taken whole, so one buffer serves every write.
    p.peer.resume();
    let buf = Buffer.alloc(300);
    let sent = 0;
    let keptWhileIdle = 0;
    for (let i = 0; i < 200; i++) {
      buf.fill(i % 251);
      w.write(buf);
      if (w.queued) keptWhileIdle++;
      sent += buf.length;
      await until(sent);
    }
    assert.equal(keptWhileIdle, 0, "a chunk written to an idle socket is never kept");
    // The peer stops reading: chunks pile up behind each other, and a kept chunk's buffer must be
    // replaced. Random bytes, so that compression cannot shrink the pile.
    p.peer.pause();
    const expected: Buffer[] = [];
    let kept = 0;
    buf = Buffer.alloc(1000);
    for (let i = 0; i < 20_000 && kept < 200; i++) {
      randomFillSync(buf);
      expected.push(Buffer.from(buf));
      const more = w.write(buf);
      if (w.queued) {
        kept++;
        buf = Buffer.alloc(1000);
      }
      if (!more) {
        // Let the peer read until the writer may go on, then stop it again.
        const drained = new Promise<void>((r) => { w.onDrain = r; });
        p.peer.resume();
        await drained;
        p.peer.pause();
      }
    }
    p.peer.resume();
    await until(sent + expected.length * 1000);
    assert.ok(Buffer.concat(got).subarray(sent).equals(Buffer.concat(expected)), "every chunk arrives as it was written");
    assert.ok(kept > 0, "some chunks were kept while the peer did not read");
  } finally {
    p.close();
  }
});

// A source sends small pieces; the destination is a Unix socket, whose kernel buffers fill fast,
// read slowly. (A TLS or compressing writer seldom keeps a chunk here: it reports most writes
// done once it has copied them; the next test covers them.)
it("a read buffer handed to a slow writer is read into again once written, and only then", async () => {
  const src = await pair("tcp");
  const dst = await pair("unix").then((p) => ({ ours: p.client as Duplex, peer: p.server as Duplex, close: p.close }));
  try {
    const reader = new SocketReader();
    const w = new SocketWriter(dst.ours);
    const from = rebindForForwarding(src.server, reader);
    assert.ok(from);
    reader.attach(from);
    const buffers = new Set<ArrayBufferLike>();
    let renews = 0;
    reader.sink = {
      onChunk: (c) => {
        buffers.add(c.buffer);
        const more = w.write(c);
        if (w.queued) {
          renews++;
          reader.renew(w); // as a session does with a backend's read buffer
        }
        if (!more) {
          from.pause();
          w.onDrain = () => from.resume();
        }
      },
    };
    from.resume();
    // 8 MB of random bytes in 1000-byte pieces, one per turn of the event loop.
    const sent = randomFillSync(Buffer.alloc(8_000_000));
    let off = 0;
    const feed = (): void => {
      while (off < sent.length) {
        const ok = src.client.write(sent.subarray(off, off + 1000));
        off += 1000;
        if (!ok) return void src.client.once("drain", feed);
        if (off % 4000 === 0) return void setImmediate(feed);
      }
    };
    feed();
    // The peer reads 64 KB every 2 ms.
    const got: Buffer[] = [];
    let have = 0;
    let allowance = 0;
    dst.peer.pause();
    await new Promise<void>((resolve) => {
      dst.peer.on("data", (d: Buffer) => {
        got.push(d);
        have += d.length;
        if (have >= sent.length) resolve();
        else if (have >= allowance) dst.peer.pause();
      });
      const tick = (): void => {
        if (have >= sent.length) return;
        allowance = have + 64 * 1024;
        dst.peer.resume();
        setTimeout(tick, 2);
      };
      tick();
    });
    assert.ok(Buffer.concat(got).equals(sent), "every byte arrives as read");
    assert.ok(renews >= 10, `the writer kept chunks (${renews} times)`);
    // Without direct I/O the socket's stream reports each write done a tick later, so buffers are
    // reused later and more of them are in use; the bytes must still all arrive intact.
    if (streamBinding !== null) assert.ok(buffers.size <= 5, `written buffers are read into again: ${buffers.size} buffers for ${renews} renewals`);
  } finally {
    src.close();
    dst.close();
  }
});

for (const kind of ["direct", "tls", "compressed"] as const) it(`whenWritten runs once the chunks written before it have left memory (${kind})`, async () => {
  const dst = kind === "direct" ? await pair("unix").then((p) => ({ ours: p.client as Duplex, peer: p.server as Duplex, close: p.close })) : await copyingPair(kind, "unix");
  try {
    const w = new SocketWriter(dst.ours);
    // The peer does not read: writes pile up. Each chunk is scribbled over as soon as whenWritten
    // says it may be, so one released early arrives changed.
    dst.peer.pause();
    const expected: Buffer[] = [];
    let fired = 0;
    let firedAtOnce = 0;
    for (let i = 0; i < 4000; i++) {
      const c = randomFillSync(Buffer.alloc(1000));
      expected.push(Buffer.from(c));
      w.write(c);
      let now = true;
      w.whenWritten(() => {
        fired++;
        if (now) firedAtOnce++;
        c.fill(0xee);
      });
      now = false;
    }
    const waited = 4000 - fired;
    const got: Buffer[] = [];
    let have = 0;
    await new Promise<void>((resolve) => {
      dst.peer.on("data", (d: Buffer) => {
        got.push(d);
        have += d.length;
        if (have >= 4_000_000) resolve();
      });
      dst.peer.resume();
    });
    assert.ok(Buffer.concat(got).equals(Buffer.concat(expected)), "no chunk was released before it was written");
    assert.ok(waited > 0, "some chunks waited in memory while the peer did not read");
    await new Promise((r) => setImmediate(r));
    assert.equal(fired, 4000, "every waiter ran");
    // (A plain socket's stream, without direct I/O, reports every write done a tick later.)
    if (kind !== "direct" || streamBinding !== null) assert.ok(firedAtOnce > 0, "a chunk the socket took at once is released at once");
  } finally {
    dst.close();
  }
});

// Under connection churn each socket's 64 KB read buffer would wait for a major garbage collection;
// closed sockets give theirs to the next ones, but only when nothing can still read or use them.
it("a closed socket's read buffer goes to a later socket only once its owner released it, and a written spare comes back", async () => {
  const opened: { p: Awaited<ReturnType<typeof pair>>; sock: net.Socket }[] = [];
  /** A reader on a re-bound accepted socket; `arrays` collects the ArrayBuffers its chunks lie in. */
  const readerOn = async (): Promise<{ p: Awaited<ReturnType<typeof pair>>; reader: SocketReader; sock: net.Socket; arrays: ArrayBufferLike[] }> => {
    const p = await pair("tcp");
    const reader = new SocketReader();
    const arrays: ArrayBufferLike[] = [];
    reader.sink = { onChunk: (c) => { arrays.push(c.buffer); } };
    const sock = rebindForForwarding(p.server, reader)!;
    reader.attach(sock);
    reader.watchClose(sock);
    sock.resume();
    const r = { p, reader, sock, arrays };
    opened.push(r);
    return r;
  };
  const firstChunk = async (r: { p: { client: net.Socket }; arrays: ArrayBufferLike[] }): Promise<ArrayBufferLike> => {
    r.p.client.write("x");
    for (let i = 0; i < 200 && r.arrays.length === 0; i++) await new Promise((res) => setTimeout(res, 5));
    assert.ok(r.arrays.length > 0, "the reader delivered a chunk");
    return r.arrays[0];
  };
  /** Destroys the socket; resolves after its close event. */
  const closed = (s: net.Socket): Promise<void> => {
    const done = new Promise<void>((res) => s.once("close", () => setImmediate(res)));
    s.destroy();
    return done;
  };
  const same = (x: ArrayBufferLike, y: ArrayBufferLike, what: string): void => assert.ok(x === y, what);
  const other = (x: ArrayBufferLike, y: ArrayBufferLike, what: string): void => assert.ok(x !== y, what);

  try {
    const a = await readerOn();
    const aBuf = await firstChunk(a);
    // Closed but not released (a session still keeps a command's bytes for a retry): not reused.
    await closed(a.sock);
    const b = await readerOn();
    other(await firstChunk(b), aBuf, "a buffer its owner has not released is not read into by another socket");
    // Released before the close (the session ended first): given back when the socket closes.
    b.reader.release();
    const bBuf = b.arrays[0];
    const c = await readerOn();
    other(await firstChunk(c), bBuf, "a released buffer of an open socket is not read into by another socket");
    await closed(b.sock);
    const d = await readerOn();
    same(await firstChunk(d), bBuf, "once the socket closed, the next socket reads into its buffer");
    a.reader.release(); // closed already: given back at once
    const e = await readerOn();
    same(await firstChunk(e), aBuf, "a buffer released after its socket closed is given back at once");

    // A buffer a writer holds: renew(keeper) moves reads on; the old one comes back once written,
    // even when the reader was released meanwhile.
    let written: (() => void) | null = null;
    c.reader.renew({ whenWritten: (fn) => { written = fn; } });
    const cOld = c.arrays[0];
    c.reader.release();
    await closed(c.sock);
    const f = await readerOn();
    other(await firstChunk(f), cOld, "a buffer a writer still holds is not given out");
    written!();
    const g = await readerOn();
    same(await firstChunk(g), cOld, "written, it goes to the next socket");
    // A renew() after the release (none should come: no read follows a close) gives nothing back twice.
    const h = await readerOn();
    const k = await readerOn();
    await firstChunk(h);
    await firstChunk(k);
    for (const r of [h, k]) {
      r.reader.release();
      await closed(r.sock);
    }
    h.reader.renew({ whenWritten: (fn) => fn() });
    const i = await readerOn();
    const j = await readerOn();
    other(await firstChunk(i), await firstChunk(j), "two open sockets never read into one buffer");
  } finally {
    for (const r of opened) { r.sock.destroy(); r.p.close(); }
  }
});
