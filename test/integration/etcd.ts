// A throwaway etcd (Debian etcd-server) for discovery tests: own data dir, free ports.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { freePort } from "../../src/cli/local-mariadb.js";

export class LocalEtcd {
  private constructor(private readonly proc: ChildProcess, private readonly dir: string, readonly endpoint: string) {}

  static async start(): Promise<LocalEtcd> {
    const dir = mkdtempSync(join(tmpdir(), "ferry-etcd-"));
    const client = await freePort();
    const peer = await freePort();
    const endpoint = `http://127.0.0.1:${client}`;
    const proc = spawn("etcd", [
      "--name", "t", "--data-dir", join(dir, "data"), "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
      "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
      "--initial-cluster", `t=http://127.0.0.1:${peer}`, "--log-level", "error",
    ], { stdio: "ignore" });
    const e = new LocalEtcd(proc, dir, endpoint);
    const c = new Etcd3({ hosts: endpoint });
    try {
      const deadline = Date.now() + 15_000;
      for (;;) {
        if (proc.exitCode !== null) throw new Error(`etcd exited with ${proc.exitCode}`);
        try {
          await c.put("/probe").value("1");
          break;
        } catch (err) {
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    } finally {
      c.close();
    }
    return e;
  }

  client(): Etcd3 {
    return new Etcd3({ hosts: this.endpoint });
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null) {
      await new Promise<void>((resolve) => {
        this.proc.once("exit", () => resolve());
        this.proc.kill("SIGTERM");
      });
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
