// Benchmark: sysbench through (a) the server directly, (b) Ferry, (c) Ferry with the read/write-split
// query rules, (d) HAProxy in TCP mode, in one run. Ferry runs with proxy.nice = NICE (README: "CPU
// priority"), HAProxy at its default priority; the 16-thread tests also run each proxy at the
// other's priority, and a relay of Ferry's socket I/O alone (node-pipe.ts), in the same rounds.
// Prints a table of medians with ratios against direct and HAProxy, CPU µs per query of each proxy
// process (from /proc/PID/stat), the other-priority pair, the Node pipe, point_select over TLS, a
// bulk-transfer test (MB/s), connection churn (connects/s, CPU per connect) and Ferry's peak RSS.
// Each sysbench run also records the share of the guest's CPU time the host took meanwhile
// (steal, /proc/stat); the 16-thread tests are also summed up over the rounds without steal.
//   node dist/bench/run.js [--time 5] [--runs 3] [--focus]

import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import { ensureMariadb, findBinary, freePort, LocalMariadb } from "../src/cli/local-mariadb.js";
import { connectChurn } from "./connect-churn.js";
import { roundOrder } from "./round-order.js";
import { waitPort } from "./wait-port.js";

const run = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const { values } = parseArgs({ options: {
  time: { type: "string", default: "5" }, runs: { type: "string", default: "3" }, "bulk-rows": { type: "string", default: "200000" },
  // only the proxy core's floor test (point_select, 16 threads, direct / Ferry / HAProxy, both priorities): for many rounds
  focus: { type: "boolean", default: false },
} });
const TIME = Number(values.time), RUNS = Number(values.runs), BULK_ROWS = Number(values["bulk-rows"]), FOCUS = values.focus;
const HZ = 100; // USER_HZ on Linux
const WARMUP_SECONDS = 3;
/** Ferry's proxy.nice in the main table (HAProxy: 0, its default; at -6 it is slower here) */
const NICE = -6;

/** A process and its children (Ferry's worker processes), from /proc/PID/task/PID/children. */
function processTree(pid: number): number[] {
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    // gone, or no children file: the process alone
  }
  return [pid, ...children.flatMap(processTree)];
}

/** CPU time of a process and its children, in ticks. */
function cpuTicks(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    const f = readFileSync(`/proc/${p}/stat`, "utf8").split(") ")[1].split(" ");
    ticks += Number(f[11]) + Number(f[12]); // utime + stime
  }
  return ticks;
}

/** The nice value of a process's main thread (field 19 of /proc/PID/stat). */
function niceOf(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")[16]);
}

/** The peak RSS of a process plus those of its children. */
function peakRssMb(pid: number): number {
  let kb = 0;
  for (const p of processTree(pid)) {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, "utf8"));
    kb += m ? Number(m[1]) : NaN;
  }
  return kb / 1024;
}

/** The machine's CPU time so far, in ticks: [all, of which stolen by the host, of which idle or waiting for I/O] (the "cpu" line of /proc/stat). */
function machineTicks(): [number, number, number] {
  const f = readFileSync("/proc/stat", "utf8").split("\n", 1)[0].trim().split(/\s+/).slice(1, 9).map(Number);
  return [f.reduce((a, b) => a + b, 0), f[7], f[3] + f[4]];
}

/**
 * A round counts as clean when the host took less than this share of the guest's CPU time during
 * every target's run in it. Steal hits a one-thread proxy harder than a two-thread one: while the
 * host holds the vCPU Ferry's event loop runs on, every session waits; HAProxy's other thread goes on.
 */
const STEAL_LIMIT = 0.05;

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

interface Target { name: string; port: number; pid: number | null; /** the nice value the proxy is meant to run at */ nice?: number }

/** `tlsDir`: connect with TLS, from the directory holding sysbench's cacert.pem, client-cert.pem and client-key.pem. */
async function sysbench(test: string, port: number, threads: number, psMode = "auto", tlsDir: string | null = null, time = TIME): Promise<{ qps: number; p95: number; queries: number }> {
  const { stdout } = await run("sysbench", [test, "--db-driver=mysql", "--mysql-host=127.0.0.1", `--mysql-port=${port}`, "--mysql-user=bench",
    "--mysql-password=bench", "--mysql-db=sbtest", "--tables=4", "--table-size=10000", `--threads=${threads}`, `--time=${time}`,
    "--report-interval=0", "--percentile=95", `--db-ps-mode=${psMode}`, ...(tlsDir ? ["--mysql-ssl=on"] : []), "run"], { maxBuffer: 16 << 20, ...(tlsDir ? { cwd: tlsDir } : {}) });
  const q = /queries:\s+(\d+)\s+\(([\d.]+) per sec/.exec(stdout);
  const p = /95th percentile:\s+([\d.]+)/.exec(stdout);
  if (!q || !p) throw new Error(`cannot parse sysbench output:\n${stdout}`);
  return { queries: Number(q[1]), qps: Number(q[2]), p95: Number(p[1]) };
}

interface Medians { qps: number; p95: number; cpu: number; steal: number }

/**
 * RUNS rounds of `bench` on every target, medians per target (CPU µs per query of the target's
 * process, NaN for the bare server; the share of the guest's CPU time the host took during the
 * run). Rounds interleave the targets, so drift on the machine (caches, other load) hits each
 * alike, in the orders of roundOrder(). `clean`: the medians over the rounds with less than
 * STEAL_LIMIT steal in every run, and how many there were. `verbose`: print each round.
 */
async function interleavedRounds(targets: Target[], bench: (t: Target) => Promise<{ qps: number; p95: number; queries: number }>, verbose = false): Promise<{ all: Map<string, Medians>; clean: Map<string, Medians>; cleanRounds: number }> {
  const samples = new Map<string, { qps: number[]; p95: number[]; cpu: number[]; steal: number[] }>(targets.map((t) => [t.name, { qps: [], p95: [], cpu: [], steal: [] }]));
  for (let r = 0; r < RUNS; r++) {
    for (const t of roundOrder(targets, r)) {
      const before = t.pid ? cpuTicks(t.pid) : 0;
      const [all0, stolen0, idle0] = machineTicks();
      const s = await bench(t);
      const [all1, stolen1, idle1] = machineTicks();
      const cpu = t.pid ? ((cpuTicks(t.pid) - before) / HZ) * 1e6 / s.queries : NaN;
      const steal = all1 > all0 ? (stolen1 - stolen0) / (all1 - all0) : 0;
      const x = samples.get(t.name)!;
      x.qps.push(s.qps);
      x.p95.push(s.p95);
      x.cpu.push(cpu);
      x.steal.push(steal);
      // Idle: no thread runnable on a vCPU. A one-thread proxy leaves the other vCPU idle whenever
      // every session waits on its thread (preempted, or its vCPU stolen).
      const idle = all1 > all0 ? (idle1 - idle0) / (all1 - all0) : 0;
      if (verbose) console.log(`round ${r + 1} ${t.name}: ${s.qps.toFixed(0)} QPS, ${t.pid ? cpu.toFixed(1) : "-"} µs/query, steal ${(steal * 100).toFixed(1)}%, idle ${(idle * 100).toFixed(1)}%`);
    }
  }
  const cleanAt = [...Array(RUNS).keys()].filter((r) => [...samples.values()].every((x) => x.steal[r] < STEAL_LIMIT));
  const medians = (rounds: number[]): Map<string, Medians> => new Map([...samples].map(([k, x]) => {
    const m = (v: number[]) => (rounds.length > 0 ? median(rounds.map((r) => v[r])) : NaN);
    return [k, { qps: m(x.qps), p95: m(x.p95), cpu: m(x.cpu), steal: m(x.steal) }];
  }));
  return { all: medians([...Array(RUNS).keys()]), clean: medians(cleanAt), cleanRounds: cleanAt.length };
}

async function main(): Promise<void> {
  await ensureMariadb((s) => console.log(s));
  if (!findBinary("sysbench")) throw new Error("sysbench is not installed: apt-get install -y sysbench");
  const dir = mkdtempSync(join(tmpdir(), "ferry-bench-"));
  const procs: ChildProcess[] = [];
  const tlsDir = makeCertificates(join(dir, "tls"));
  const db = await LocalMariadb.create({ dir: join(dir, "db"), args: ["--innodb-buffer-pool-size=256M",
    `--ssl-cert=${join(tlsDir, "server-cert.pem")}`, `--ssl-key=${join(tlsDir, "server-key.pem")}`, `--ssl-ca=${join(tlsDir, "cacert.pem")}`] });
  try {
    await db.sql("CREATE USER 'bench'@'%' IDENTIFIED BY 'bench'; GRANT ALL ON *.* TO 'bench'@'%'; CREATE DATABASE sbtest;");
    await run("sysbench", ["oltp_read_only", "--db-driver=mysql", "--mysql-host=127.0.0.1", `--mysql-port=${db.port}`, "--mysql-user=bench", "--mysql-password=bench",
      "--mysql-db=sbtest", "--tables=4", "--table-size=10000", "prepare"], { maxBuffer: 16 << 20 });

    const startFerry = async (name: string, port: number, toml: string): Promise<ChildProcess> => {
      const cfg = join(dir, `${name}.toml`);
      writeFileSync(cfg, toml);
      const p = spawn(process.execPath, [join(root, "bin/ferry"), "start", "--config", cfg], { stdio: ["ignore", "ignore", "inherit"] });
      procs.push(p);
      await waitPort(port);
      return p;
    };
    const plainFerry = (port: number, nice: string) => `[proxy]\nlisten = "127.0.0.1:${port}"\n${nice}[log]\nlevel = "warn"\n` +
      `[[servers]]\nhost = "127.0.0.1"\nport = ${db.port}\n[[users]]\nname = "bench"\npassword = "bench"\n`;
    const ferryPort = await freePort();
    const ferry = await startFerry("ferry", ferryPort, plainFerry(ferryPort, `nice = ${NICE}\n`) +
      `[tls]\nenabled = true\ncert = "${join(tlsDir, "server-cert.pem")}"\nkey = "${join(tlsDir, "server-key.pem")}"\n`);
    const ferry0Port = await freePort();
    const ferry0 = await startFerry("ferry-nice-0", ferry0Port, plainFerry(ferry0Port, ""));
    // The same Ferry with the README's read/write-split rules, the server in both hostgroups: what rules cost.
    const rulesPort = await freePort();
    const ferryRules = await startFerry("ferry-rules", rulesPort, `[proxy]\nlisten = "127.0.0.1:${rulesPort}"\nnice = ${NICE}\n[log]\nlevel = "warn"\n` +
      `[[servers]]\nhost = "127.0.0.1"\nport = ${db.port}\nhostgroup = 0\n[[servers]]\nhost = "127.0.0.1"\nport = ${db.port}\nhostgroup = 1\n` +
      `[[users]]\nname = "bench"\npassword = "bench"\ndefault_hostgroup = 0\n` +
      `[[query_rules]]\nrule_id = 100\nmatch_digest = "^SELECT .* (FOR UPDATE|LOCK IN SHARE MODE)"\ndestination_hostgroup = 0\napply = true\n` +
      `[[query_rules]]\nrule_id = 200\nmatch_digest = "^SELECT"\ndestination_hostgroup = 1\napply = true\n`);
    const targets: Target[] = [{ name: "direct", port: db.port, pid: null }, { name: "ferry", port: ferryPort, pid: ferry.pid!, nice: NICE }];
    /**
     * Run in the same rounds as the 16-thread tests only: each proxy at the other's priority, and a
     * relay of Ferry's socket I/O alone at Ferry's priority (node-pipe.ts): what one Node event
     * loop costs here before Ferry does any work of its own.
     */
    const extra16: Target[] = [{ name: "ferry, nice 0", port: ferry0Port, pid: ferry0.pid!, nice: 0 }];
    // The same Ferry with proxy.workers = 2: two event loops, as HAProxy runs two threads here. At
    // nice 0, like HAProxy: two loops already have two threads' share, and at -6 they cost more CPU
    // per query for no more QPS (bench/README.md, 2026-12-03).
    const ferry2Port = await freePort();
    const ferry2 = await startFerry("ferry-2-workers", ferry2Port, plainFerry(ferry2Port, `workers = 2\n`));
    extra16.push({ name: "ferry, 2 workers", port: ferry2Port, pid: ferry2.pid!, nice: 0 });
    const pipePort = await freePort();
    const pipe = spawn(process.execPath, [join(root, "dist/bench/node-pipe.js"), String(pipePort), String(db.port), String(NICE)], { stdio: ["ignore", "ignore", "inherit"] });
    procs.push(pipe);
    await waitPort(pipePort);
    extra16.push({ name: "node pipe", port: pipePort, pid: pipe.pid!, nice: NICE });
    if (findBinary("haproxy")) {
      const startHaproxy = async (name: string, nice: number): Promise<Target> => {
        const port = await freePort();
        const hcfg = join(dir, `${name}.cfg`);
        writeFileSync(hcfg, `global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\nlisten mysql\n  bind 127.0.0.1:${port}\n  server db 127.0.0.1:${db.port}\n`);
        // `nice` execs HAProxy in place (same pid); HAProxy has no setting of its own for this.
        const hap = spawn("nice", ["-n", String(nice), findBinary("haproxy")!, "-db", "-f", hcfg], { stdio: "ignore" });
        procs.push(hap);
        await waitPort(port);
        return { name: nice === 0 ? "haproxy" : `haproxy, nice ${nice}`, port, pid: hap.pid!, nice };
      };
      targets.push(await startHaproxy("haproxy", 0));
      extra16.push(await startHaproxy("haproxy-nice", NICE));
    } else {
      console.log("haproxy not installed: no HAProxy column (apt-get install -y haproxy)");
    }
    // A bench run without the right to lower nice values (not root) measures something else: say so.
    for (const t of [...targets, ...extra16]) {
      if (t.pid === null || t.nice === undefined) continue;
      const nice = niceOf(t.pid);
      if (nice !== t.nice) console.log(`warning: ${t.name} runs at nice ${nice}, not ${t.nice} (lowering it needs root or CAP_SYS_NICE)`);
    }

    // Warm-up, not measured: Node compiles Ferry's and the relay's hot paths while they first run
    // (V8's optimizing compiler), which would otherwise fall into the first round of the first test.
    for (const t of [...targets, ...extra16]) await sysbench("oltp_point_select", t.port, 16, "auto", null, WARMUP_SECONDS);

    const rows: string[] = [];
    rows.push("| test | threads | target | QPS (median) | p95 ms | CPU µs/query (proxy) | QPS vs direct | QPS vs HAProxy | CPU vs HAProxy | steal |");
    rows.push("|---|---|---|---|---|---|---|---|---|---|");
    const fmt = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : "-");
    // The same tests with each proxy at the other's priority: what proxy.nice changes for Ferry, and
    // that the same priority does not help HAProxy.
    const pipeRows = [`| Node pipe at nice ${NICE} (node-pipe.ts) | threads | QPS | vs HAProxy | CPU µs/q | CPU vs HAProxy | ferry QPS vs pipe | ferry CPU vs pipe |`, "|---|---|---|---|---|---|---|---|"];
    const pct = (x: number) => (Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : "-");
    // The 16-thread tests over the rounds the host took (almost) nothing from: the machine the floor is set for.
    const cleanRows = [`| rounds with < ${STEAL_LIMIT * 100}% steal in every run | threads | rounds | QPS ferry | QPS haproxy | ferry vs HAProxy | CPU vs HAProxy | node pipe vs HAProxy | ferry, 2 workers, vs HAProxy |`, "|---|---|---|---|---|---|---|---|---|"];
    // Ferry with two processes (proxy.workers = 2); CPU and RSS summed over them.
    const workerRows = [`| Ferry, proxy.workers = 2, nice 0 | threads | QPS | vs HAProxy | vs one-process Ferry | CPU µs/q (all processes) | CPU vs HAProxy |`, "|---|---|---|---|---|---|---|"];
    const prioRows = [`| other priorities | threads | QPS ferry at nice 0 | vs HAProxy | CPU µs/q | QPS haproxy at nice ${NICE} | ferry vs it | CPU µs/q |`, "|---|---|---|---|---|---|---|---|"];
    for (const test of FOCUS ? ["oltp_point_select"] : ["oltp_point_select", "oltp_read_only"]) {
      for (const threads of FOCUS ? [16] : [1, 16]) {
        const all = threads === 16 ? [...targets, ...extra16] : targets;
        const rounds = await interleavedRounds(all, (t) => sysbench(test, t.port, threads), FOCUS || threads === 16);
        const res = rounds.all;
        const d = res.get("direct")!, h = res.get("haproxy");
        for (const t of targets) {
          const m = res.get(t.name)!;
          rows.push(`| ${test} | ${threads} | ${t.name} | ${m.qps.toFixed(0)} | ${m.p95.toFixed(2)} | ${fmt(m.cpu, 1)} | ${fmt(m.qps / d.qps)} | ${h ? fmt(m.qps / h.qps) : "-"} | ${h && t.pid ? fmt(m.cpu / h.cpu) : "-"} | ${pct(m.steal)} |`);
        }
        console.log(rows.slice(-targets.length).join("\n"));
        if (threads === 16) {
          const f = res.get("ferry")!, f0 = res.get("ferry, nice 0")!, hn = res.get(`haproxy, nice ${NICE}`);
          prioRows.push(`| ${test} | ${threads} | ${f0.qps.toFixed(0)} | ${h ? fmt(f0.qps / h.qps) : "-"} | ${fmt(f0.cpu, 1)} | ${hn ? hn.qps.toFixed(0) : "-"} | ${hn ? fmt(f.qps / hn.qps) : "-"} | ${hn ? fmt(hn.cpu, 1) : "-"} |`);
          console.log(prioRows[prioRows.length - 1]);
          const p = res.get("node pipe")!;
          pipeRows.push(`| ${test} | ${threads} | ${p.qps.toFixed(0)} | ${h ? fmt(p.qps / h.qps) : "-"} | ${fmt(p.cpu, 1)} | ${h ? fmt(p.cpu / h.cpu) : "-"} | ${fmt(f.qps / p.qps)} | ${fmt(f.cpu / p.cpu)} |`);
          console.log(pipeRows[pipeRows.length - 1]);
          const w = res.get("ferry, 2 workers")!;
          workerRows.push(`| ${test} | ${threads} | ${w.qps.toFixed(0)} | ${h ? fmt(w.qps / h.qps) : "-"} | ${fmt(w.qps / f.qps)} | ${fmt(w.cpu, 1)} | ${h ? fmt(w.cpu / h.cpu) : "-"} |`);
          console.log(workerRows[workerRows.length - 1]);
          const cf = rounds.clean.get("ferry")!, ch = rounds.clean.get("haproxy"), cp = rounds.clean.get("node pipe")!, cw = rounds.clean.get("ferry, 2 workers")!;
          cleanRows.push(`| ${test} | ${threads} | ${rounds.cleanRounds} of ${RUNS} | ${fmt(cf.qps, 0)} | ${ch ? fmt(ch.qps, 0) : "-"} | ${ch ? fmt(cf.qps / ch.qps) : "-"} | ${ch ? fmt(cf.cpu / ch.cpu) : "-"} | ${ch ? fmt(cp.qps / ch.qps) : "-"} | ${ch ? fmt(cw.qps / ch.qps) : "-"} |`);
          console.log(cleanRows[cleanRows.length - 1]);
        }
      }
    }
    rows.push("", ...cleanRows, "", ...workerRows, "", ...prioRows, "", ...pipeRows);

    if (FOCUS) {
      console.log(`\n${new Date().toISOString()} · ${RUNS} rounds of ${TIME}s each · Ferry at proxy.nice ${NICE}, HAProxy at 0, unless marked\n`);
      console.log(rows.join("\n"));
      return;
    }

    // Query rules: the same statements as text (COM_QUERY, which rules see), Ferry without and with
    // the read/write-split rule set, rounds alternating which goes first.
    rows.push("", "| query rules (r/w split set), text protocol | threads | QPS ferry | QPS ferry+rules | ratio | CPU µs/q ferry | CPU µs/q ferry+rules |", "|---|---|---|---|---|---|---|");
    const pair: Target[] = [{ name: "ferry", port: ferryPort, pid: ferry.pid! }, { name: "ferry+rules", port: rulesPort, pid: ferryRules.pid! }];
    for (const test of ["oltp_point_select", "oltp_read_only"]) {
      // Two targets: roundOrder() alternates which goes first.
      const res = (await interleavedRounds(pair, (t) => sysbench(test, t.port, 16, "disable"))).all;
      const f = res.get("ferry")!, fr = res.get("ferry+rules")!;
      rows.push(`| ${test} | 16 | ${f.qps.toFixed(0)} | ${fr.qps.toFixed(0)} | ${(fr.qps / f.qps).toFixed(2)} | ${f.cpu.toFixed(1)} | ${fr.cpu.toFixed(1)} |`);
      console.log(rows[rows.length - 1]);
    }

    // TLS clients: point_select with sysbench connecting over TLS. The server and Ferry hold the
    // same certificate; Ferry ends TLS and talks plainly to the server, HAProxy passes it through
    // (the server does the cryptography), so only the QPS figures compare across targets.
    rows.push("", "| TLS clients, oltp_point_select | threads | target | QPS (median) | p95 ms | CPU µs/query (proxy) | QPS vs direct |", "|---|---|---|---|---|---|---|");
    const tls = (await interleavedRounds(targets, (t) => sysbench("oltp_point_select", t.port, 16, "auto", tlsDir))).all;
    const tlsDirect = tls.get("direct")!.qps;
    for (const t of targets) {
      const m = tls.get(t.name)!;
      rows.push(`| | 16 | ${t.name} | ${m.qps.toFixed(0)} | ${m.p95.toFixed(2)} | ${Number.isFinite(m.cpu) ? m.cpu.toFixed(1) : "-"} | ${(m.qps / tlsDirect).toFixed(2)} |`);
    }
    console.log(rows.slice(-targets.length).join("\n"));

    // Bulk: BULK_ROWS rows of ~1 KB read through each target by the mariadb client, without TLS
    // (Ferry offers TLS and the client would take it; the bare server and HAProxy do not).
    await db.sql(`USE sbtest; CREATE TABLE bulk (id INT PRIMARY KEY, pad VARCHAR(1024)); INSERT INTO bulk SELECT seq, REPEAT(CHAR(65 + seq % 26), 1000) FROM seq_1_to_${BULK_ROWS};`);
    rows.push("", "| bulk read | target | MB/s (median) | vs direct | vs HAProxy |", "|---|---|---|---|---|");
    const rates = new Map<string, number[]>(targets.map((t) => [t.name, []]));
    for (let r = 0; r < RUNS; r++) {
      for (const t of targets) {
        const t0 = process.hrtime.bigint();
        const { stdout } = await run("sh", ["-c", `mariadb --no-defaults --skip-ssl -h127.0.0.1 -P${t.port} -ubench -pbench -N -B --quick -e 'SELECT * FROM sbtest.bulk' | wc -c`], { maxBuffer: 1 << 20 });
        const secs = Number(process.hrtime.bigint() - t0) / 1e9;
        rates.get(t.name)!.push(Number(stdout.trim()) / 1e6 / secs);
      }
    }
    const bulk = new Map([...rates].map(([k, v]) => [k, median(v)]));
    for (const t of targets) {
      const m = bulk.get(t.name)!, h = bulk.get("haproxy");
      rows.push(`| ${BULK_ROWS} x 1 KB | ${t.name} | ${m.toFixed(1)} | ${(m / bulk.get("direct")!).toFixed(2)} | ${h ? (m / h).toFixed(2) : "-"} |`);
    }
    // The floor's measure: Ferry's peak through the bulk test (and every test before it); churn, last, raises it further.
    const rssThroughBulk = peakRssMb(ferry.pid!);
    // Connection churn (connect-churn.ts): 8 clients connecting, querying once and leaving, back to back.
    rows.push("", "| connection churn, 8 clients | target | connects/s (median) | vs direct | vs HAProxy | CPU µs per connect (proxy) |", "|---|---|---|---|---|---|");
    // The same rounds as the sysbench tests, a connection counting as a query: "qps" is connects/s, "cpu" µs per connect.
    const { all: churn } = await interleavedRounds(targets, async (t) => {
      const t0 = performance.now();
      const connects = await connectChurn(t.port, 8, TIME);
      return { qps: connects / ((performance.now() - t0) / 1000), p95: NaN, queries: connects };
    });
    for (const t of targets) {
      const m = churn.get(t.name)!, h = churn.get("haproxy");
      rows.push(`| | ${t.name} | ${m.qps.toFixed(0)} | ${(m.qps / churn.get("direct")!.qps).toFixed(2)} | ${h ? (m.qps / h.qps).toFixed(2) : "-"} | ${t.pid ? m.cpu.toFixed(0) : "-"} |`);
    }
    rows.push("", `Ferry peak RSS through the bulk test: ${rssThroughBulk.toFixed(1)} MB; over the whole run (connection churn last): ${peakRssMb(ferry.pid!).toFixed(1)} MB; with proxy.workers = 2 (16-thread tests only), both processes together: ${peakRssMb(ferry2.pid!).toFixed(1)} MB`);
    const version = (await run(process.execPath, ["--version"])).stdout.trim();
    console.log(`\n${new Date().toISOString()} · node ${version} · ${RUNS} runs of ${TIME}s each · sysbench 4 tables x 10000 rows · Ferry at proxy.nice ${NICE}, HAProxy at 0, unless marked\n`);
    console.log(rows.join("\n"));
  } finally {
    for (const p of procs) p.kill("SIGTERM");
    await db.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

/**
 * A CA, a server certificate for 127.0.0.1 and a client certificate, in the file names sysbench
 * reads from its working directory when it connects with --mysql-ssl=on.
 */
function makeCertificates(dir: string): string {
  mkdirSync(dir);
  const ssl = (...args: string[]): void => { execFileSync("openssl", args, { cwd: dir, stdio: "ignore" }); };
  ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "cacert.pem", "-days", "2", "-subj", "/CN=ferry-bench-ca");
  writeFileSync(join(dir, "san.cnf"), "subjectAltName=IP:127.0.0.1\n");
  for (const who of ["server", "client"]) {
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${who}-key.pem`, "-out", `${who}.csr`, "-subj", `/CN=ferry-bench-${who}`);
    ssl("x509", "-req", "-in", `${who}.csr`, "-CA", "cacert.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-out", `${who}-cert.pem`, "-days", "2", "-extfile", "san.cnf");
  }
  return dir;
}
