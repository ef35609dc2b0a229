// The operator's path: `ferry start --config FILE`, edit a server's status in the file, SIGHUP.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
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
});
