// A MariaDB Galera cluster on loopback (galera-4, rsync SST), for the tests and benchmarks.

import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort, LocalMariadb } from "./local-mariadb.js";

const run = promisify(execFile);
export const GALERA_PROVIDER = "/usr/lib/galera/libgalera_smm.so";

/** Installs galera-4 and rsync from Debian packages when absent and running as root. */
export async function ensureGalera(): Promise<void> {
  if (existsSync(GALERA_PROVIDER) && existsSync("/usr/bin/rsync")) return;
  if (process.getuid?.() !== 0) throw new Error("Galera tests need galera-4 and rsync: apt-get install -y galera-4 rsync");
  await run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "galera-4", "rsync"], { env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }, maxBuffer: 64 << 20 });
}

/** What a node logs when its state transfer (or the listener for one) failed. */
const TRANSFER_FAILED = /SST request callback failed|Failed to prepare for incremental state transfer|Address already in use/;

export class GaleraCluster {
  readonly nodes: LocalMariadb[] = [];
  private constructor(readonly dir: string, private readonly address: string, private readonly gcomm: number[]) {}

  static async start(n = 3): Promise<GaleraCluster> {
    await ensureGalera();
    const gcomm: number[] = [];
    for (let i = 0; i < n; i++) gcomm.push(await freePort());
    const address = `gcomm://${gcomm.map((p) => `127.0.0.1:${p}`).join(",")}`;
    const c = new GaleraCluster(mkdtempSync(join(tmpdir(), "ferry-galera-")), address, gcomm);
    for (let i = 0; i < n; i++) {
      const node = await LocalMariadb.prepare({ dir: join(c.dir, `node${i}`) });
      node.args = await nodeArgs(i, address, gcomm[i]);
      // Nodes run as the mysql user, as packaged servers do: rsync's SST daemon, started by the
      // server, would otherwise drop from root to "nobody" and could not write the joiner's datadir.
      if (process.getuid?.() === 0) {
        node.runAs = "mysql";
        mkdirSync(node.tmpdir, { recursive: true });
        await run("chown", ["-R", "mysql:mysql", node.dir]);
      }
      c.nodes.push(node);
    }
    await run("chmod", ["755", c.dir]);
    const first = c.nodes[0];
    const base = first.args;
    first.args = [...base, "--wsrep-new-cluster"];
    await first.start(60_000);
    first.args = base; // a restart rejoins the running cluster
    await c.waitSynced(first);
    for (let i = 1; i < n; i++) await c.join(i, 90_000);
    return c;
  }

  /**
   * Starts node i into the running cluster and waits until it is Synced. Its state transfer
   * listens on ports picked beforehand; on a busy machine another process may take one first and
   * the transfer fails (or a restarted node finds its old ports taken). Then it is started again
   * on fresh ports, up to three times.
   */
  private async join(i: number, ms: number): Promise<void> {
    const node = this.nodes[i];
    const log = join(node.dir, "error.log");
    for (let attempt = 1; ; attempt++) {
      // A failed transfer can leave the server up but useless: stop it as soon as it says so.
      const seen = existsSync(log) ? readFileSync(log, "utf8").length : 0;
      const watch = setInterval(() => {
        if (existsSync(log) && TRANSFER_FAILED.test(readFileSync(log, "utf8").slice(seen))) void node.crash();
      }, 500);
      try {
        await node.start(ms);
        await this.waitSynced(node, ms);
        return;
      } catch (e) {
        if (attempt === 3) throw e;
        process.stderr.write(`galera node${i} (port ${node.port}) did not join, attempt ${attempt} of 3: ${(e as Error).message}\n`);
        await node.crash().catch(() => undefined);
        if (existsSync(log)) renameSync(log, `${log}.${attempt}`);
        node.args = await nodeArgs(i, this.address, attempt === 1 ? this.gcomm[i] : (this.gcomm[i] = await freePort()));
      } finally {
        clearInterval(watch);
      }
    }
  }

  /** Waits until the node is Synced in a primary component of the full size. */
  async waitSynced(node: LocalMariadb, ms = 120_000): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      const out = await node.sql("SHOW STATUS WHERE Variable_name IN ('wsrep_local_state_comment','wsrep_cluster_status','wsrep_ready')").catch(() => "");
      if (/Synced/.test(out) && /Primary/.test(out) && /ON/.test(out)) return;
      if (Date.now() > deadline) throw new Error(`galera node ${node.port} not synced: ${out}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Stops the node cleanly and starts it again into the cluster, with fresh transfer ports. */
  async restart(node: LocalMariadb): Promise<void> {
    const i = this.nodes.indexOf(node);
    await node.stop();
    node.args = await nodeArgs(i, this.address, this.gcomm[i]);
    await this.join(i, 60_000);
  }

  async stop(): Promise<void> {
    for (const n of [...this.nodes].reverse()) await n.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A node's Galera options; the ports for incremental and full state transfer are picked here. */
async function nodeArgs(i: number, address: string, gcommPort: number): Promise<string[]> {
  const ist = await freePort();
  const sst = await freePort();
  return [
    "--wsrep-on=ON", `--wsrep-provider=${GALERA_PROVIDER}`, `--wsrep-cluster-address=${address}`, "--wsrep-cluster-name=ferry-test",
    `--wsrep-node-name=node${i}`, `--wsrep-node-address=127.0.0.1:${gcommPort}`,
    `--wsrep-provider-options=base_port=${gcommPort};ist.recv_addr=127.0.0.1:${ist};gcache.size=64M;evs.suspect_timeout=PT3S;evs.inactive_timeout=PT6S`,
    "--wsrep-sst-method=rsync", `--wsrep-sst-receive-address=127.0.0.1:${sst}`, "--binlog-format=ROW", "--innodb-autoinc-lock-mode=2",
    "--wsrep-slave-threads=2",
  ];
}
