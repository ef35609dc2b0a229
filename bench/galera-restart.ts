// oltp_read_write-shaped load through a proxy while every node of a 3-node Galera cluster restarts
// in turn: per-second QPS (the dip) and client errors, through Ferry (nodes drained with SIGHUP
// first) and through HAProxy (nodes set to drain over its runtime socket first), in one run.
// sysbench prepares the tables; the load itself is generated here because sysbench 1.0.20
// crashes (SIGSEGV) when told to ignore the errors a failing node produces.
//   node dist/bench/galera-restart.js [--threads 8] [--time 60]

import { execFile, spawn, type ChildProcess } from "node:child_process";
import mysql from "mysql2/promise";
import { mkdtempSync, openSync, renameSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import { GaleraCluster } from "../src/cli/local-galera.js";
import { findBinary, freePort } from "../src/cli/local-mariadb.js";
import { waitPort } from "./wait-port.js";

const run = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const { values } = parseArgs({ options: { threads: { type: "string", default: "8" }, time: { type: "string", default: "60" } } });
const THREADS = Number(values.threads), TIME = Number(values.time);
const sb = (port: number) => ["--db-driver=mysql", "--mysql-host=127.0.0.1", `--mysql-port=${port}`, "--mysql-user=bench", "--mysql-password=bench", "--mysql-db=sbtest", "--tables=4", "--table-size=10000"];

interface Outcome { perSecond: number[]; errors: Map<string, number>; restartWindow: [number, number] }

/**
 * oltp_read_write-shaped transactions from `clients` mysql2 connections for TIME seconds while
 * `restart` runs: BEGIN, 10 point selects, a range select, an indexed and a non-indexed update,
 * a delete and an insert of the same row, COMMIT. Errors are counted by code, and the
 * transaction is rolled back and the connection replaced if it broke (as an application would).
 */
async function scenario(port: number, restart: () => Promise<void>): Promise<Outcome> {
  const t0 = Date.now();
  const perSecond: number[] = [];
  const errors = new Map<string, number>();
  let stop = false;
  const count = (): void => {
    const sec = Math.floor((Date.now() - t0) / 1000);
    while (perSecond.length <= sec) perSecond.push(0);
    perSecond[sec]++;
  };
  const connect = () => mysql.createConnection({ host: "127.0.0.1", port, user: "bench", password: "bench", database: "sbtest" });
  const worker = async (w: number): Promise<void> => {
    let c = await connect();
    while (!stop) {
      const table = `sbtest${1 + Math.floor(Math.random() * 4)}`;
      const id = () => 1 + Math.floor(Math.random() * 10000);
      try {
        await c.query("BEGIN"); count();
        for (let i = 0; i < 10; i++) { await c.query(`SELECT c FROM ${table} WHERE id = ?`, [id()]); count(); }
        const lo = id();
        await c.query(`SELECT c FROM ${table} WHERE id BETWEEN ? AND ?`, [lo, lo + 99]); count();
        await c.query(`UPDATE ${table} SET k = k + 1 WHERE id = ?`, [id()]); count();
        await c.query(`UPDATE ${table} SET c = ? WHERE id = ?`, [`w${w}-${Date.now()}`, id()]); count();
        const d = id();
        await c.query(`DELETE FROM ${table} WHERE id = ?`, [d]); count();
        await c.query(`INSERT INTO ${table} (id, k, c, pad) VALUES (?, ?, ?, ?)`, [d, d, "x", "y"]); count();
        await c.query("COMMIT"); count();
      } catch (e) {
        const code = (e as { code?: string }).code ?? "unknown";
        errors.set(code, (errors.get(code) ?? 0) + 1);
        try { await c.query("ROLLBACK"); } catch { c.destroy(); c = await connect().catch(() => c); }
      }
    }
    await c.end().catch(() => undefined);
  };
  const workers = Array.from({ length: THREADS }, (_, w) => worker(w));
  await new Promise((r) => setTimeout(r, 8000)); // steady state first
  const from = (Date.now() - t0) / 1000;
  await restart();
  const to = (Date.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, Math.max(0, TIME * 1000 - (Date.now() - t0))));
  stop = true;
  await Promise.all(workers);
  return { perSecond, errors, restartWindow: [from, to] };
}

function summary(name: string, o: Outcome): string {
  const [a, b] = o.restartWindow;
  const before = o.perSecond.slice(2, Math.floor(a));
  const during = o.perSecond.slice(Math.floor(a), Math.ceil(b));
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? NaN;
  const lowest = during.length ? Math.min(...during).toFixed(0) : "-";
  process.stderr.write(`${name} per second: ${o.perSecond.map((q) => q.toFixed(0)).join(" ")}\n`);
  const conflicts = o.errors.get("ER_LOCK_DEADLOCK") ?? 0;
  const other = [...o.errors].filter(([k]) => k !== "ER_LOCK_DEADLOCK");
  const otherText = other.length ? other.map(([k, n]) => `${n} ${k}`).join(", ") : "0";
  return `| ${name} | ${med(before).toFixed(0)} | ${during.length ? med(during).toFixed(0) : "-"} | ${lowest} | ${(b - a).toFixed(0)} s | ${otherText} | ${conflicts} |`;
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
  const say = (m: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);
  say("starting a 3-node Galera cluster");
  const galera = await GaleraCluster.start(3);
  try {
    await galera.nodes[0].sql("CREATE USER 'bench'@'%' IDENTIFIED BY 'bench'; GRANT ALL ON *.* TO 'bench'@'%'; CREATE DATABASE sbtest;");
    say("sysbench prepare");
    await run("sysbench", ["oltp_read_write", ...sb(galera.nodes[0].port), "prepare"], { maxBuffer: 16 << 20 });
    for (const n of galera.nodes) await galera.waitSynced(n);

    // Ferry, drained node by node with SIGHUP
    const fport = await freePort();
    const file = join(dir, "ferry.toml");
    const config = (drained: number | null) => `[proxy]\nlisten = "127.0.0.1:${fport}"\n[log]\nlevel = "info"\n` +
      galera.nodes.map((n) => `[[servers]]\nhost = "127.0.0.1"\nport = ${n.port}\nstatus = "${n.port === drained ? "OFFLINE_SOFT" : "ONLINE"}"\n`).join("") +
      `[[users]]\nname = "bench"\npassword = "bench"\n`;
    // Replace the file atomically, as editors do: Ferry may read it the moment it is signalled.
    const writeConfig = (text: string): void => {
      writeFileSync(`${file}.new`, text);
      renameSync(`${file}.new`, file);
    };
    writeConfig(config(null));
    const ferryLog = join(tmpdir(), "ferry-galera-bench.log");
    const ferry = spawn(process.execPath, [join(root, "bin/ferry"), "start", "--config", file], { stdio: ["ignore", openSync(ferryLog, "w"), "inherit"] });
    procs.push(ferry);
    await waitPort(fport);
    say("through Ferry");
    const viaFerry = await scenario(fport, async () => {
      for (const node of galera.nodes) {
        writeConfig(config(node.port));
        ferry.kill("SIGHUP");
        await new Promise((r) => setTimeout(r, 1500)); // idle-between-transactions sessions move within milliseconds
        say(`restarting node ${node.port}`);
        await galera.restart(node);
        writeConfig(config(null));
        ferry.kill("SIGHUP");
      }
    });

    if (process.env.ONLY_FERRY) {
      console.log(summary("ferry", viaFerry));
      return;
    }
    // HAProxy, with each node set to drain over the runtime API before its restart
    const hport = await freePort();
    const sock = join(dir, "haproxy.sock");
    const hcfg = join(dir, "haproxy.cfg");
    writeFileSync(hcfg, `global\n  maxconn 4096\n  stats socket ${sock} level admin\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n` +
      `listen galera\n  bind 127.0.0.1:${hport}\n  balance leastconn\n` + galera.nodes.map((n, i) => `  server n${i} 127.0.0.1:${n.port} check inter 500 fall 2 rise 2\n`).join(""));
    const hap = spawn(findBinary("haproxy")!, ["-db", "-f", hcfg], { stdio: "ignore" });
    procs.push(hap);
    await waitPort(hport);
    say("through HAProxy");
    const viaHaproxy = await scenario(hport, async () => {
      for (const [i, node] of galera.nodes.entries()) {
        await haproxyCommand(sock, `set server galera/n${i} state drain`);
        await new Promise((r) => setTimeout(r, 1500));
        await galera.restart(node);
        await haproxyCommand(sock, `set server galera/n${i} state ready`);
      }
    });
    console.log(`\n${new Date().toISOString()} · oltp_read_write-shaped transactions, ${THREADS} clients, ${TIME} s, 4 tables x 10000 rows\n`);
    console.log("| proxy | QPS before (median/s) | QPS during restarts (median/s) | lowest second | restart window | client errors | Galera certification conflicts (1213) |");
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
