// The operator's path: `ferry start --config FILE`, edit a server's status in the file, SIGHUP.

import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { getPriority, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { freePort } from "../../src/cli/local-mariadb.js";
import { APP_PASSWORD, APP_USER, Cluster, connectVia, waitFor } from "./harness.js";

const bin = resolve(dirname(fileURLToPath(import.meta.url)), "../../../bin/ferry");

describe("ferry start with SIGHUP reload", () => {
  let cluster: Cluster;
  let proc: ChildProcess;
  let port: number;
  let dir: string;
  let file: string;
  let stdout = "";

  const config = (status: Record<number, string>, extra = "") => `
[proxy]
listen = "127.0.0.1:${port}"
${extra}
[log]
level = "info"
${cluster.servers.map((s) => `[[servers]]\nhost = "127.0.0.1"\nport = ${s.port}\nstatus = "${status[s.port] ?? "ONLINE"}"\n`).join("\n")}
[[users]]
name = "${APP_USER}"
password = "${APP_PASSWORD}"
`;

  before(async () => {
    cluster = await Cluster.start(2);
    port = await freePort();
    dir = mkdtempSync(join(tmpdir(), "ferry-cli-"));
    file = join(dir, "ferry.toml");
    writeFileSync(file, config({}));
    proc = spawn(process.execPath, [bin, "start", "--config", file], { stdio: ["ignore", "pipe", "pipe"] });
    proc.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
    proc.stderr!.on("data", (d: Buffer) => (stdout += d.toString()));
    assert.ok(await waitFor(() => stdout.includes("ferry listening"), 10_000), stdout);
  });

  after(async () => {
    proc?.kill("SIGTERM");
    await new Promise((r) => proc.once("exit", r));
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("drains a server whose status the file changes to OFFLINE_SOFT, and refuses an invalid file whole", async () => {
    const c = await connectVia(port);
    await c.query("SET @x = 'still here'");
    const [[before]] = (await c.query("SELECT @@port AS p")) as unknown as [[{ p: number }]];
    writeFileSync(file, config({ [before.p]: "OFFLINE_SOFT" }));
    proc.kill("SIGHUP");
    assert.ok(await waitFor(() => stdout.includes('"result":"moved"'), 5000), "a move was logged");
    const [[moved]] = (await c.query("SELECT @@port AS p, @x AS x")) as unknown as [[{ p: number; x: string }]];
    assert.notEqual(moved.p, before.p);
    assert.equal(moved.x, "still here");
    const line = stdout.split("\n").find((l) => l.includes('"result":"moved"'))!;
    const rec = JSON.parse(line);
    for (const k of ["session", "reason", "from", "to", "ms", "result"]) assert.ok(k in rec, `move log has ${k}`);

    // an invalid file: refused, running configuration kept (the drained server stays drained)
    writeFileSync(file, config({ [before.p]: "SOMETIMES" }));
    proc.kill("SIGHUP");
    assert.ok(await waitFor(() => stdout.includes("configuration reload refused"), 5000));
    assert.match(stdout, /servers\[\d\]\.status/);
    const c2 = await connectVia(port);
    const [[fresh]] = (await c2.query("SELECT @@port AS p")) as unknown as [[{ p: number }]];
    assert.notEqual(fresh.p, before.p, "new sessions still avoid the drained server");
    await c.end();
    await c2.end();
  });

  it("proxy.nice sets the event loop thread's priority, and a reload without it restores the one Ferry started with", async () => {
    const started = getPriority(proc.pid!);
    const mark = stdout.length;
    writeFileSync(file, config({}, "nice = -7"));
    proc.kill("SIGHUP");
    assert.ok(await waitFor(() => stdout.slice(mark).includes("event loop priority set"), 5000), stdout.slice(mark));
    assert.equal(getPriority(proc.pid!), -7);
    // Only the event loop thread: libuv's and V8's helper threads keep theirs.
    const helper = execFileSync("ls", [`/proc/${proc.pid}/task`]).toString().split("\n").map(Number).find((t) => t > 0 && t !== proc.pid)!;
    assert.equal(getPriority(helper), started);
    const c = await connectVia(port);
    const [[one]] = (await c.query("SELECT 1 AS x")) as unknown as [[{ x: number }]];
    assert.equal(one.x, 1);
    await c.end();
    const mark2 = stdout.length;
    writeFileSync(file, config({}));
    proc.kill("SIGHUP");
    assert.ok(await waitFor(() => stdout.slice(mark2).includes("event loop priority set"), 5000), stdout.slice(mark2));
    assert.equal(getPriority(proc.pid!), started);
  });

  it("without the right to raise its priority Ferry says why and runs as started", async (t) => {
    if (process.getuid?.() !== 0) return t.skip("needs root to drop CAP_SYS_NICE");
    const port2 = await freePort();
    const file2 = join(dir, "no-nice.toml");
    writeFileSync(file2, config({}, "nice = -5").replace(`listen = "127.0.0.1:${port}"`, `listen = "127.0.0.1:${port2}"`));
    // Still root, but without CAP_SYS_NICE: lowering a nice value is refused (EACCES).
    const p2 = spawn("setpriv", ["--bounding-set", "-sys_nice", "--inh-caps", "-sys_nice", process.execPath, bin, "start", "--config", file2], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p2.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    p2.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    try {
      assert.ok(await waitFor(() => out.includes("ferry listening"), 10_000), out);
      assert.match(out, /could not set the event loop's priority \(proxy\.nice\)/);
      assert.equal(getPriority(p2.pid!), getPriority());
      const c = await connectVia(port2);
      const [[one]] = (await c.query("SELECT 1 AS x")) as unknown as [[{ x: number }]];
      assert.equal(one.x, 1);
      await c.end();
    } finally {
      if (p2.exitCode === null && p2.signalCode === null) {
        const exited = new Promise((r) => p2.once("exit", r));
        p2.kill("SIGTERM");
        await exited;
      }
    }
  });
});
