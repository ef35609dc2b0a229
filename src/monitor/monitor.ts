// The health monitor (control plane): its own connection to every known server, with the monitor
// user, checked every interval_ms. Each round is one pipelined exchange:
//
//   SHOW GLOBAL VARIABLES (read_only, wsrep_on, wsrep_desync)
//   SHOW GLOBAL STATUS    (wsrep_local_state, wsrep_ready, wsrep_cluster_status)
//   SHOW REPLICA STATUS   (only for servers with max_replication_lag)
//
// Verdicts: failure_threshold consecutive failed rounds (connect, timeout, error) → SHUNNED; a
// replica behind by more than max_replication_lag (stopped replication counts as lag_when_null)
// → SHUNNED until it catches up; a Galera node that is not Synced, not ready, desynced or outside
// the primary component → SHUNNED. A shunned server is ONLINE again after recovery_threshold
// healthy rounds in a row. read_only feeds the replication hostgroups. The monitor never
// raises a server above the status the configuration gives it. Every change of verdict is a
// BackendStatus event, and the server publishes a new RuntimeConfig from it.

import type { Logger } from "pino";
import { connectBackend, type BackendConnection } from "../backend/backend-connection.js";
import { runOwnStatements, type StatementResult } from "../backend/own-statements.js";
import type { RuntimeConfig, ServerConfig } from "../config/runtime-config.js";
import { UTF8MB4_GENERAL_CI } from "../protocol/constants.js";
import { stackOf } from "../lib/error-stack.js";

export type HealthStatus = "ONLINE" | "SHUNNED";

/** A server's health changed (DESIGN §1). */
export interface BackendStatus {
  address: string;
  status: HealthStatus;
  reason: string;
}

export interface ServerHealth {
  address: string;
  /** epoch ms of the last finished round; 0 before the first */
  lastCheck: number;
  /** round trip of the last successful round, ms */
  pingMs: number | null;
  lastError: string | null;
  consecutiveFailures: number;
  /** healthy rounds in a row while SHUNNED (it returns at recovery_threshold) */
  consecutiveHealthy: number;
  readOnly: boolean | null;
  /** seconds behind its primary; null when not a replica or not checked */
  replicationLag: number | null;
  galera: { state: number; ready: boolean; desync: boolean; clusterStatus: string } | null;
  status: HealthStatus;
  reason: string | null;
}

const VARIABLES = "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('read_only', 'wsrep_on', 'wsrep_desync')";
const GALERA_STATUS = "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state', 'wsrep_ready', 'wsrep_cluster_status')";
const REPLICA_STATUS = "SHOW REPLICA STATUS";
const WSREP_SYNCED = 4;

function pairs(r: StatementResult): Map<string, string> {
  const m = new Map<string, string>();
  for (const row of r.rows) if (row[0] && row[1]) m.set(row[0].toString("utf8").toLowerCase(), row[1].toString("utf8"));
  return m;
}

class ServerProbe {
  conn: BackendConnection | null = null;
  busy = false;
  warned = false;
  readonly health: ServerHealth;

  constructor(address: string) {
    this.health = { address, lastCheck: 0, pingMs: null, lastError: null, consecutiveFailures: 0, consecutiveHealthy: 0, readOnly: null, replicationLag: null, galera: null, status: "ONLINE", reason: null };
  }

  close(): void {
    this.conn?.socket.destroy();
    this.conn = null;
  }
}

export class Monitor {
  private readonly probes = new Map<string, ServerProbe>();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly config: () => RuntimeConfig,
    /** called with the events of one round, when any verdict (or read_only) changed */
    private readonly onChange: (events: BackendStatus[]) => void,
    private readonly log: Logger,
  ) {}

  get enabled(): boolean {
    return this.config().monitor.user !== undefined;
  }

  start(): void {
    if (this.timer || !this.enabled) return;
    const tick = (): void => {
      if (this.stopped) return;
      void this.round().catch((e: unknown) => {
        this.log.error({ err: stackOf(e) }, "monitor: internal error in a check round; the next round runs as usual");
      }).finally(() => {
        if (!this.stopped) this.timer = setTimeout(tick, this.config().monitor.interval_ms);
      });
    };
    tick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const p of this.probes.values()) p.close();
    this.probes.clear();
  }

  /** Last results per server (for the admin interface and tests). */
  results(): ServerHealth[] {
    return [...this.probes.values()].map((p) => ({ ...p.health }));
  }

  /** address → reason, for servers the monitor holds SHUNNED */
  shunned(): Map<string, string> {
    const m = new Map<string, string>();
    for (const p of this.probes.values()) if (p.health.status === "SHUNNED") m.set(p.health.address, p.health.reason ?? "monitor");
    return m;
  }

  readOnly(): Map<string, boolean> {
    const m = new Map<string, boolean>();
    for (const p of this.probes.values()) if (p.health.readOnly !== null) m.set(p.health.address, p.health.readOnly);
    return m;
  }

  /** One check of every known server, in parallel; resolves when all are done. */
  async round(): Promise<void> {
    const cfg = this.config();
    const byAddress = new Map<string, ServerConfig[]>();
    for (const s of cfg.servers) {
      if (s.status === "OFFLINE_HARD") continue;
      const list = byAddress.get(s.address) ?? [];
      list.push(s);
      byAddress.set(s.address, list);
    }
    for (const [address, p] of this.probes) {
      if (!byAddress.has(address)) {
        p.close();
        this.probes.delete(address);
      }
    }
    const events: BackendStatus[] = [];
    let readOnlyChanged = false;
    await Promise.all([...byAddress].map(async ([address, servers]) => {
      let p = this.probes.get(address);
      if (!p) {
        p = new ServerProbe(address);
        this.probes.set(address, p);
      }
      if (p.busy) return;
      p.busy = true;
      const before = { status: p.health.status, readOnly: p.health.readOnly };
      try {
        await this.check(p, servers, cfg);
      } finally {
        p.busy = false;
      }
      if (p.health.readOnly !== before.readOnly) readOnlyChanged = true;
      if (p.health.status !== before.status) events.push({ address, status: p.health.status, reason: p.health.reason ?? "healthy" });
    }));
    if (this.stopped) return;
    for (const e of events) this.log.warn({ server: e.address, status: e.status, reason: e.reason }, "monitor: server status changed");
    if (events.length || readOnlyChanged) this.onChange(events);
  }

  private async check(p: ServerProbe, servers: ServerConfig[], cfg: RuntimeConfig): Promise<void> {
    const m = cfg.monitor;
    const h = p.health;
    const maxLag = Math.min(...servers.map((s) => s.maxReplicationLag || Infinity));
    const t0 = performance.now();
    try {
      if (!p.conn) {
        const s = servers[0];
        p.conn = await connectBackend({
          server: s, credentials: { user: m.user!, password: m.password, stage1: null }, database: null, collation: UTF8MB4_GENERAL_CI,
          clientCapabilities: 0, mariadbCapabilities: 0, attributes: new Map([["program_name", "ferry-monitor"]]), timeoutMs: m.timeout_ms, trackSession: false,
          keepAliveMs: 0, // checked every interval
        });
        p.conn.socket.on("error", () => undefined);
        p.conn.socket.on("close", () => { if (p.conn?.socket.destroyed) p.conn = null; });
      }
      const statements = [{ kind: "query" as const, sql: VARIABLES }, { kind: "query" as const, sql: GALERA_STATUS }];
      if (maxLag < Infinity) statements.push({ kind: "query", sql: REPLICA_STATUS });
      const conn = p.conn;
      let timer: NodeJS.Timeout | undefined;
      const results = await Promise.race([
        runOwnStatements(conn, statements),
        new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${m.timeout_ms} ms`)), m.timeout_ms); }),
      ]).finally(() => clearTimeout(timer));
      // The server answered: that is the health check. A check it refuses (a missing privilege)
      // is reported, not held against the server.
      if (results[0].error) throw new Error(`${results[0].error.errno} ${results[0].error.message}`);
      const refused = results.find((r) => r.error)?.error ?? null;
      h.pingMs = Math.round((performance.now() - t0) * 100) / 100;
      h.lastError = refused ? `check refused: ${refused.errno} ${refused.message}` : null;
      if (refused && !p.warned) {
        p.warned = true;
        this.log.warn({ server: h.address, err: h.lastError }, "monitor: a check was refused; grant the monitor user PROCESS, REPLICATION CLIENT and SLAVE MONITOR");
      }
      h.consecutiveFailures = 0;
      const vars = pairs(results[0]);
      h.readOnly = vars.has("read_only") ? vars.get("read_only") === "ON" || vars.get("read_only") === "1" : null;
      if (vars.get("wsrep_on") === "ON" && !results[1].error) {
        const st = pairs(results[1]);
        h.galera = { state: Number(st.get("wsrep_local_state") ?? -1), ready: st.get("wsrep_ready") === "ON", desync: vars.get("wsrep_desync") === "ON", clusterStatus: st.get("wsrep_cluster_status") ?? "" };
      } else {
        h.galera = null;
      }
      h.replicationLag = maxLag < Infinity && !results[2].error ? replicationLag(results[2], m.lag_when_null) : null;
      const problem = this.verdict(h, maxLag);
      if (problem) {
        h.status = "SHUNNED";
        h.reason = problem;
        h.consecutiveHealthy = 0;
      } else if (h.status === "SHUNNED" && ++h.consecutiveHealthy < m.recovery_threshold) {
        // healthy again, but not for long enough to trust it (no flapping at a lag limit)
      } else {
        h.status = "ONLINE";
        h.reason = null;
        h.consecutiveHealthy = 0;
      }
    } catch (e) {
      p.close();
      h.pingMs = null;
      h.lastError = (e as Error).message;
      h.consecutiveFailures++;
      h.consecutiveHealthy = 0;
      if (h.consecutiveFailures >= m.failure_threshold) {
        h.status = "SHUNNED";
        h.reason = `unreachable: ${h.lastError} (${h.consecutiveFailures} checks in a row)`;
      }
    } finally {
      h.lastCheck = Date.now();
    }
  }

  private verdict(h: ServerHealth, maxLag: number): string | null {
    const g = h.galera;
    if (g) {
      if (g.clusterStatus !== "Primary") return `galera: not in the primary component (wsrep_cluster_status=${g.clusterStatus})`;
      if (!g.ready) return "galera: wsrep_ready=OFF";
      if (g.desync) return "galera: desynced (wsrep_desync=ON)";
      if (g.state !== WSREP_SYNCED) return `galera: not synced (wsrep_local_state=${g.state})`;
    }
    if (h.replicationLag !== null && h.replicationLag > maxLag) return `replication lag ${h.replicationLag} s over max_replication_lag ${maxLag} s`;
    return null;
  }
}

/** Seconds behind from SHOW REPLICA STATUS; null when the server replicates from nobody. */
function replicationLag(r: StatementResult, whenNull: number): number | null {
  if (r.rows.length === 0) return null;
  let worst = 0;
  const col = r.columns.findIndex((c) => c === "Seconds_Behind_Master" || c === "Seconds_Behind_Source");
  for (const row of r.rows) {
    const v = col >= 0 ? row[col] : null;
    const lag = v === null || v === undefined ? whenNull : Number(v.toString("utf8"));
    if (lag > worst) worst = lag;
  }
  return worst;
}
