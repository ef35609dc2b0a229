// Time to drain N idle sessions off one server: Ferry runs as its own process (bin/ferry start);
// N clients connect (each with a user variable), the file marks their server OFFLINE_SOFT, SIGHUP,
// and the clock runs until Ferry has logged N completed moves. Then every client checks its state.
//   node dist/bench/drain.js [--sessions 1000]

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import mysql from "mysql2/promise";
import { ensureMariadb, freePort, LocalMariadb } from "../src/cli/local-mariadb.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const { values } = parseArgs({ options: { sessions: { type: "string", default: "1000" } } });
const N = Number(values.sessions);

async function main(): Promise<void> {
  await ensureMariadb((s) => console.log(s));
  const dir = mkdtempSync(join(tmpdir(), "ferry-drain-"));
  const servers = [await LocalMariadb.create({ dir: join(dir, "a") }), await LocalMariadb.create({ dir: join(dir, "b") })];
  for (const s of servers) await s.sql("CREATE USER 'bench'@'%' IDENTIFIED BY 'bench'; GRANT ALL ON *.* TO 'bench'@'%';");
  const port = await freePort();
  const file = join(dir, "ferry.toml");
  const config = (drained: number | null) => `[proxy]\nlisten = "127.0.0.1:${port}"\n[log]\nlevel = "info"\n` +
    servers.map((s) => `[[servers]]\nhost = "127.0.0.1"\nport = ${s.port}\nstatus = "${s.port === drained ? "OFFLINE_SOFT" : drained === null && s !== servers[0] ? "OFFLINE_SOFT" : "ONLINE"}"\n`).join("") +
    `[[users]]\nname = "bench"\npassword = "bench"\n`;
  writeFileSync(file, config(null)); // only server a takes sessions at first
  const ferry = spawn(process.execPath, [join(root, "bin/ferry"), "start", "--config", file], { stdio: ["ignore", "pipe", "inherit"] });
  let moved = 0, failed = 0, out = "";
  let resolveAll: () => void = () => undefined;
  const allMoved = new Promise<void>((r) => (resolveAll = r));
  ferry.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
    let i: number;
    while ((i = out.indexOf("\n")) >= 0) {
      const line = out.slice(0, i);
      out = out.slice(i + 1);
      if (line.includes('"result":"moved"') && ++moved === N) resolveAll();
      if (line.includes('"result":"failed"')) failed++;
    }
  });
  try {
    for (let i = 0; i < 100; i++) {
      try { await (await mysql.createConnection({ host: "127.0.0.1", port, user: "bench", password: "bench" })).end(); break; } catch { await new Promise((r) => setTimeout(r, 100)); }
    }
    const clients: mysql.Connection[] = [];
    for (let i = 0; i < N; i += 50) {
      const batch = await Promise.all(Array.from({ length: Math.min(50, N - i) }, () => mysql.createConnection({ host: "127.0.0.1", port, user: "bench", password: "bench" })));
      await Promise.all(batch.map((c, j) => c.query(`SET @n = ${i + j}`)));
      clients.push(...batch);
    }
    writeFileSync(file, config(servers[0].port)); // a drained, b online
    const t0 = performance.now();
    ferry.kill("SIGHUP");
    await Promise.race([allMoved, new Promise((_, rej) => setTimeout(() => rej(new Error(`only ${moved} of ${N} moved in 60 s`)), 60_000))]);
    const ms = performance.now() - t0;
    const answers = await Promise.all(clients.map((c) => c.query("SELECT @n AS n, @@port AS p")));
    const wrong = answers.filter(([rows], i) => Number((rows as { n: number }[])[0].n) !== i || (rows as { p: number }[])[0].p !== servers[1].port).length;
    console.log(`| ${N} idle sessions | ${ms.toFixed(0)} ms | ${failed} failed attempts | ${wrong} sessions with wrong state or server |`);
    await Promise.all(clients.map((c) => c.end()));
  } finally {
    ferry.kill("SIGTERM");
    await Promise.all(servers.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
