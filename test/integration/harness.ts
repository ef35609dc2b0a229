// Real mariadbd processes and a Ferry in front of them, shared by the tests of one file.

import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import mysql from "mysql2/promise";
import { LocalMariadb } from "../../src/cli/local-mariadb.js";
import { parseConfig } from "../../src/config/load.js";
import type { ConfigFile } from "../../src/config/schema.js";
import { startFerry, type FerryServer } from "../../src/server.js";

export const APP_USER = "app";
export const APP_PASSWORD = "app-secret";

export class Cluster {
  readonly dir: string;
  readonly servers: LocalMariadb[] = [];
  private constructor(dir: string) {
    this.dir = dir;
  }

  static async start(n: number, args: string[] = []): Promise<Cluster> {
    const c = new Cluster(mkdtempSync(join(tmpdir(), "ferry-test-")));
    for (let i = 0; i < n; i++) {
      const s = await LocalMariadb.create({ dir: join(c.dir, `s${i}`), args });
      await s.sql(`CREATE USER '${APP_USER}'@'%' IDENTIFIED BY '${APP_PASSWORD}'; GRANT ALL ON *.* TO '${APP_USER}'@'%';
        CREATE DATABASE app; CREATE USER 'other'@'%' IDENTIFIED BY 'other'; GRANT ALL ON app.* TO 'other'@'%';`);
      c.servers.push(s);
    }
    return c;
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Collects Ferry's JSON log lines so tests can assert on them (and on what they never contain). */
export class LogSink extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    if (process.env.FERRY_TEST_LOG) appendFileSync(process.env.FERRY_TEST_LOG, chunk);
    cb();
  }
}

/**
 * Ferry's configuration for a cluster; `status` gives a server (by port) a status other than ONLINE.
 * A login no server takes is refused at once (backend_wait_ms = 0) unless `extra` says otherwise.
 */
export function proxyConfig(cluster: Cluster, extra = "", users?: string, status: Record<number, string> = {}, serverExtra = ""): ConfigFile {
  const servers = cluster.servers.map((s) => `[[servers]]\nhost = "127.0.0.1"\nport = ${s.port}\nhostgroup = 0\nstatus = "${status[s.port] ?? "ONLINE"}"\n${serverExtra}\n`).join("\n");
  const wait = extra.includes("backend_wait_ms") ? "" : "backend_wait_ms = 0\n";
  const text = `[proxy]\nlisten = "127.0.0.1:0"\n${wait}${extra}\n${servers}\n${users ?? `[[users]]\nname = "${APP_USER}"\npassword = "${APP_PASSWORD}"\n`}`;
  return parseConfig(text, "test config");
}

export async function startProxy(cluster: Cluster, extra = "", users?: string, status: Record<number, string> = {}, serverExtra = ""): Promise<{ ferry: FerryServer; logs: LogSink }> {
  const logs = new LogSink();
  const ferry = await startFerry(proxyConfig(cluster, extra, users, status, serverExtra), { logLevel: "debug", logDestination: logs });
  return { ferry, logs };
}

/** Polls cond every 20 ms until it holds or ms pass; returns whether it held. */
export async function waitFor(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function connectVia(port: number, opts: mysql.ConnectionOptions = {}): Promise<mysql.Connection> {
  return mysql.createConnection({ host: "127.0.0.1", port, user: APP_USER, password: APP_PASSWORD, database: "app", ...opts });
}

export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { t = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms); });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(t);
  }
}

type Row = Record<string, unknown>;

/** The first row of a query's result (text protocol, or binary when params are given). */
export async function one(c: mysql.Connection, sql: string, params?: unknown[]): Promise<Row> {
  const [rows] = params ? await c.execute(sql, params as never) : await c.query(sql);
  return (rows as Row[])[0];
}

/** The port of the backend serving the connection now. */
export const portOf = async (c: mysql.Connection): Promise<number> => Number((await one(c, "SELECT @@port AS p")).p);

export const MONITOR_USER = "monitor";
export const MONITOR_PASSWORD = "monitor-secret";

export const monitorGrants = `CREATE USER '${MONITOR_USER}'@'%' IDENTIFIED BY '${MONITOR_PASSWORD}';
  GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR ON *.* TO '${MONITOR_USER}'@'%';`;

/**
 * A primary and a replica: servers[0] writes a binary log, servers[1] replicates from it by
 * position and is read_only. Both have the app and monitor users.
 */
export async function startReplicated(): Promise<Cluster> {
  const c = await Cluster.start(2, ["--log-bin=mariadb-bin", "--binlog-format=ROW"]);
  const [primary, replica] = c.servers;
  await primary.sql(`${monitorGrants} CREATE USER 'repl'@'%' IDENTIFIED BY 'repl'; GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';`);
  await replica.sql(`${monitorGrants} SET GLOBAL server_id = 2; SET GLOBAL read_only = ON;`);
  replica.args.push("--server-id=2", "--read-only=ON"); // the same identity after a restart
  const [file, pos] = (await primary.sql("SHOW MASTER STATUS")).trim().split("\t");
  await replica.sql(`CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${primary.port}, MASTER_USER='repl', MASTER_PASSWORD='repl',
    MASTER_LOG_FILE='${file}', MASTER_LOG_POS=${pos}; START SLAVE;`);
  // columns 11 and 12 of SHOW SLAVE STATUS: Slave_IO_Running, Slave_SQL_Running
  const running = await waitFor(async () => (await replica.sql("SHOW SLAVE STATUS")).split("\t").slice(10, 12).join() === "Yes,Yes", 10_000);
  if (!running) throw new Error(`replication did not start: ${await replica.sql("SHOW SLAVE STATUS")}`);
  return c;
}
