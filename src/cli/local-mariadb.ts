// Throwaway local MariaDB servers (own datadir, loopback port), for `ferry demo` and the tests.

import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, cpSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { probeServer } from "../backend/backend-connection.js";

const run = promisify(execFile);
const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

export function findBinary(name: string): string | null {
  for (const dir of (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/usr/bin", "/usr/local/sbin"])) {
    const p = join(dir, name);
    if (dir && existsSync(p)) return p;
  }
  return null;
}

/** Makes sure mariadbd is present; installs Debian's mariadb-server when running as root. */
export async function ensureMariadb(log: (s: string) => void = () => undefined): Promise<void> {
  if (findBinary("mariadbd") && findBinary("mariadb-install-db")) return;
  if (!isRoot || !findBinary("apt-get")) {
    throw new Error("mariadbd is not installed. Install it with: sudo apt-get install -y mariadb-server mariadb-client");
  }
  log("mariadbd not found: installing mariadb-server from Debian packages (apt-get)...");
  await run("apt-get", ["update", "-qq"], { maxBuffer: 64 << 20 });
  await run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "mariadb-server", "mariadb-client"], {
    maxBuffer: 64 << 20, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

let template: Promise<string> | null = null;

// Servers this process started die with it, even when it ends on an error or a test timeout.
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const p of running) p.kill("SIGKILL");
});

/** One initialised datadir per process, copied for each server: install-db runs once. */
function templateDatadir(): Promise<string> {
  template ??= (async () => {
    const dir = join(tmpdir(), `ferry-mariadb-template-${process.pid}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    // Own tmpdir: a server starting elsewhere deletes "#sql*" files in its tmpdir, /tmp included.
    const tmp = `${dir}-tmp`;
    mkdirSync(tmp, { recursive: true });
    const args = ["--no-defaults", `--datadir=${dir}`, "--auth-root-authentication-method=normal", "--skip-test-db", `--tmpdir=${tmp}`];
    if (isRoot) args.push("--user=root");
    await run(findBinary("mariadb-install-db")!, args, { maxBuffer: 64 << 20 });
    process.once("exit", () => {
      rmSync(dir, { recursive: true, force: true });
      rmSync(tmp, { recursive: true, force: true });
    });
    return dir;
  })();
  return template;
}

export interface LocalMariadbOptions {
  dir: string;
  port?: number;
  args?: string[];
}

export class LocalMariadb {
  readonly dir: string;
  readonly port: number;
  readonly socket: string;
  /** extra mariadbd options; may be changed before a restart */
  args: string[];
  /** system user mariadbd runs as when Ferry's process is root (default root) */
  runAs = "root";
  private proc: ChildProcess | null = null;

  private constructor(dir: string, port: number, args: string[]) {
    this.dir = dir;
    this.port = port;
    this.socket = join(dir, "mysqld.sock");
    this.args = args;
  }

  /** A server whose options are chosen after its port is known (a Galera node needs its own address). */
  static async prepare(o: LocalMariadbOptions): Promise<LocalMariadb> {
    const port = o.port ?? (await freePort());
    const src = await templateDatadir();
    mkdirSync(o.dir, { recursive: true });
    cpSync(src, join(o.dir, "data"), { recursive: true });
    return new LocalMariadb(o.dir, port, o.args ?? []);
  }

  static async create(o: LocalMariadbOptions): Promise<LocalMariadb> {
    const port = o.port ?? (await freePort());
    const src = await templateDatadir();
    mkdirSync(o.dir, { recursive: true });
    cpSync(src, join(o.dir, "data"), { recursive: true });
    const m = new LocalMariadb(o.dir, port, o.args ?? []);
    await m.start();
    return m;
  }

  get pid(): number {
    return this.proc?.pid ?? -1;
  }

  get tmpdir(): string {
    return join(this.dir, "tmp");
  }

  /** Starts the server; one still running (unresponsive, say) is killed first, so none is left behind. */
  async start(timeoutMs = 30_000): Promise<void> {
    await this.crash();
    mkdirSync(this.tmpdir, { recursive: true });
    const args = [
      "--no-defaults", `--datadir=${join(this.dir, "data")}`, `--port=${this.port}`, `--socket=${this.socket}`,
      "--bind-address=127.0.0.1", `--pid-file=${join(this.dir, "mariadbd.pid")}`, `--log-error=${join(this.dir, "error.log")}`,
      "--max-allowed-packet=256M", "--local-infile=1", "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=48M",
      "--skip-name-resolve", "--max-connections=2000", "--innodb-flush-log-at-trx-commit=2", `--tmpdir=${this.tmpdir}`,
      ...this.args,
    ];
    if (isRoot) args.push(`--user=${this.runAs}`);
    this.proc = spawn(findBinary("mariadbd")!, args, { stdio: "ignore" });
    const proc = this.proc;
    running.add(proc);
    proc.once("exit", () => running.delete(proc));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`mariadbd exited with ${proc.exitCode}${this.logErrors()}`);
      try {
        await probeServer({ host: "127.0.0.1", port: this.port }, 1000);
        // The server answering must be this one, not an earlier one still holding the port (this
        // process then exits, unable to bind, and is reported above).
        if (this.pidInFile() === proc.pid) return;
        throw new Error("another process answers on the port");
      } catch {
        if (Date.now() > deadline) {
          await this.crash();
          throw new Error(`mariadbd on port ${this.port} did not start in ${timeoutMs / 1000} s${this.logErrors()}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private pidInFile(): number {
    try {
      return Number(readFileSync(join(this.dir, "mariadbd.pid"), "utf8").trim());
    } catch {
      return -1;
    }
  }

  /** The last error lines of the server's log, to explain a failed start. */
  private logErrors(): string {
    const log = join(this.dir, "error.log");
    if (!existsSync(log)) return "";
    const lines = readFileSync(log, "utf8").split("\n").filter((l) => /\[ERROR\]/.test(l)).slice(-5);
    return `; see ${log}${lines.length ? `:\n${lines.join("\n")}` : ""}`;
  }

  /** Runs SQL as root over the unix socket with the mariadb client. */
  async sql(statements: string): Promise<string> {
    const { stdout } = await run(findBinary("mariadb")!, ["--no-defaults", "-S", this.socket, "-uroot", "-N", "-B", "-e", statements], { maxBuffer: 64 << 20 });
    return stdout;
  }

  /** Clean shutdown; resolves when the process has exited. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once("exit", () => resolve());
      p.kill("SIGTERM");
      setTimeout(() => p.kill("SIGKILL"), 20_000).unref();
    });
  }

  /** kill -9, as a crash. */
  async crash(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once("exit", () => resolve());
      p.kill("SIGKILL");
    });
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
