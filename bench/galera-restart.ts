// sysbench oltp_read_write through a proxy while every node of a 3-node Galera cluster restarts in
// turn: per-second QPS (the dip) and errors, through Ferry (nodes drained with SIGHUP first) and
// through HAProxy (nodes set to drain over its runtime socket first), in one run.
//   node dist/bench/galera-restart.js [--threads 8] [--time 60]

import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import { GaleraCluster } from "../src/cli/local-galera.js";
import { findBinary, freePort } from "../src/cli/local-mariadb.js";
import { probeServerVersion } from "../src/backend/backend-connection.js";

const run = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const { values } = parseArgs({ options: { threads: { type: "string", default: "8" }, time: { type: "string", default: "60" } } });
const THREADS = Number(values.threads), TIME = Number(values.time);
const sb = (port: number) => ["--db-driver=mysql", "--mysql-host=127.0.0.1", `--mysql-port=${port}`, "--mysql-user=bench", "--mysql-password=bench", "--mysql-db=sbtest", "--tables=4", "--table-size=10000"];

async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try { await probeServerVersion("127.0.0.1", port, 500); return; } catch { await new Promise((r) => setTimeout(r, 100)); }
  }
  throw new Error(`nothing answers on ${port}`);
}

interface Outcome { perSecond: number[]; errors: number; reconnects: number; restartWindow: [number, number] }

/** Runs sysbench against port while `restart` runs; returns per-second QPS and error counts. */
async function scenario(port: number, restart: () => Promise<void>): Promise<Outcome> {
  const proc = spawn("sysbench", ["oltp_read_write", ...sb(port), `--threads=${THREADS}`, `--time=${TIME}`, "--report-interval=1", "--mysql-ignore-errors=all", "run"]);
  let out = "";
  proc.stdout.on("data", (d: Buffer) => (out += d.toString()));
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, 8000)); // steady state first
  const from = (Date.now() - t0) / 1000;
  await restart();
  const to = (Date.now() - t0) / 1000;
  await new Promise((r) => proc.once("exit", r));
  const perSecond = [...out.matchAll(/\[ (\d+)s \].*?qps: ([\d.]+)/g)].map((m) => Number(m[2]));
  const errors = Number(/ignored errors:\s+(\d+)/.exec(out)?.[1] ?? NaN);
  const reconnects = Number(/reconnects:\s+(\d+)/.exec(out)?.[1] ?? NaN);
  return { perSecond, errors, reconnects, restartWindow: [from, to] };
}

function summary(name: string, o: Outcome): string {
  const [a, b] = o.restartWindow;
  const before = o.perSecond.slice(2, Math.floor(a));
  const during = o.perSecond.slice(Math.floor(a), Math.ceil(b));
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? NaN;
  return `| ${name} | ${med(before).toFixed(0)} | ${med(during).toFixed(0)} | ${Math.min(...during).toFixed(0)} | ${(b - a).toFixed(0)} s | ${o.errors} | ${o.reconnects} |`;
}

async function haproxyCommand(sock: string, cmd: string): Promise<string> {
  return new Promise((resolveCmd, reject) => {
    const c = net.connect(sock, () => c.end(cmd + "\n"));
    let out = "";
    c.on("data", (d) => (out += d.toString()));
    c.on("end", () => resolveCmd(out));
    c.on("error", reject);
  });
}

async function main(): Promise<void> {
  if (!findBinary("sysbench")) throw new Error("sysbench is not installed: apt-get install -y sysbench");
  const dir = mkdtempSync(join(tmpdir(), "ferry-galera-bench-"));
  const procs: ChildProcess[] = [];
  const galera = await GaleraCluster.start(3);
  try {
    await galera.nodes[0].sql("CREATE USER 'bench'@'%' IDENTIFIED BY 'bench'; GRANT ALL ON *.* TO 'bench'@'%'; CREATE DATABASE sbtest;");
    await run("sysbench", ["oltp_read_write", ...sb(galera.nodes[0].port), "prepare"], { maxBuffer: 16 << 20 });
    for (const n of galera.nodes) await galera.waitSynced(n);

    // Ferry, drained node by node with SIGHUP
    const fport = await freePort();
    const file = join(dir, "ferry.toml");
    const config = (drained: number | null) => `[proxy]\nlisten = "127.0.0.1:${fport}"\n[log]\nlevel = "warn"\n` +
      galera.nodes.map((n) => `[[servers]]\nhost = "127.0.0.1"\nport = ${n.port}\nstatus = "${n.port === drained ? "OFFLINE_SOFT" : "ONLINE"}"\n`).join("") +
      `[[users]]\nname = "bench"\npassword = "bench"\n`;
    writeFileSync(file, config(null));
    const ferry = spawn(process.execPath, [join(root, "bin/ferry"), "start", "--config", file], { stdio: "ignore" });
    procs.push(ferry);
    await waitPort(fport);
    const viaFerry = await scenario(fport, async () => {
      for (const node of galera.nodes) {
        writeFileSync(file, config(node.port));
        ferry.kill("SIGHUP");
        await new Promise((r) => setTimeout(r, 1500)); // idle-between-transactions sessions move within milliseconds
        await galera.restart(node);
        writeFileSync(file, config(null));
        ferry.kill("SIGHUP");
      }
    });

    // HAProxy, with each node set to drain over the runtime API before its restart
    const hport = await freePort();
    const sock = join(dir, "haproxy.sock");
    const hcfg = join(dir, "haproxy.cfg");
    writeFileSync(hcfg, `global\n  maxconn 4096\n  stats socket ${sock} level admin\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n` +
      `listen galera\n  bind 127.0.0.1:${hport}\n  balance leastconn\n` + galera.nodes.map((n, i) => `  server n${i} 127.0.0.1:${n.port} check inter 500 fall 2 rise 2\n`).join(""));
    const hap = spawn(findBinary("haproxy")!, ["-db", "-f", hcfg], { stdio: "ignore" });
    procs.push(hap);
    await waitPort(hport);
    const viaHaproxy = await scenario(hport, async () => {
      for (const [i, node] of galera.nodes.entries()) {
        await haproxyCommand(sock, `set server galera/n${i} state drain`);
        await new Promise((r) => setTimeout(r, 1500));
        await galera.restart(node);
        await haproxyCommand(sock, `set server galera/n${i} state ready`);
      }
    });
    console.log(`\n${new Date().toISOString()} · sysbench oltp_read_write, ${THREADS} threads, ${TIME} s, 4 tables x 10000 rows, errors ignored and counted\n`);
    console.log("| proxy | QPS before (median/s) | QPS during restarts (median/s) | lowest second | restart window | errors | reconnects |");
    console.log("|---|---|---|---|---|---|---|");
    console.log(summary("ferry", viaFerry));
    console.log(summary("haproxy", viaHaproxy));
  } finally {
    for (const p of procs) p.kill("SIGTERM");
    await galera.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
