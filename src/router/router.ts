// Where a session goes. The router scores the servers of a hostgroup and says which is best; the
// session decides when to go. Score (lower is better):
//
//   (connections + 1) / weight  ×  latency factor  ×  zone factor
//
// latency factor = 1 + latency_weight × (server's EWMA round trip − the hostgroup's best − 1 ms)
// / max(best, 1 ms), when positive, capped at 10, once servers have 20 samples (sub-millisecond
// differences and a handful of round trips are noise, not load) and while their last sample is
// under 10 s old (a server that lost its sessions because it was slow must not stay shunned on
// what it measured then: its next sessions start a fresh average); zone factor = zone_penalty for
// servers outside Ferry's zone (when one is set).
// Only ONLINE servers under their max_connections, carrying every label the session asks for,
// are candidates; a server that recently refused a connection goes to the back of the line.

import { performance } from "node:perf_hooks";
import type { Route, RuntimeConfig, ServerConfig, UserConfig } from "../config/runtime-config.js";
import type { Slots } from "../lib/slots.js";

const LATENCY_DEADBAND_MS = 1;
/** the key a server's connections are counted under when shared (lib/slots.ts) */
const serverSlot = (address: string): string => `server ${address}`;
/** round trips a server needs before its latency counts (a handful says nothing) */
const MIN_SAMPLES = 20;
/** a latency average with no sample for this long says nothing about the server now */
const LATENCY_STALE_MS = 10_000;

/** Per-server numbers the data plane updates in place (no lookup per command). */
export class ServerStats {
  connections = 0;
  /** of those, connections being replaced by a fresh one (Router.beginLeaving) */
  leaving = 0;
  /** EWMA of command round trips, ms; 0 until the first sample */
  latencyMs = 0;
  samples = 0;
  /** performance.now() of the last sample */
  lastSampleAt = -Infinity;
  /** performance.now() until which the server counts as having refused a connection */
  failedUntil = -Infinity;

  /** A command's round trip of `ms`, ended at `now` (performance.now()); a stale average starts afresh. */
  observe(ms: number, now = performance.now()): void {
    if (now - this.lastSampleAt > LATENCY_STALE_MS) this.samples = 0;
    this.lastSampleAt = now;
    this.samples++;
    // a faster start, then a slow-moving average
    const alpha = this.samples < 20 ? 1 / this.samples : 0.05;
    this.latencyMs += (ms - this.latencyMs) * alpha;
  }

  /** The average when it counts at `now` (enough samples, the last one recent), else null. */
  latencyAt(now: number): number | null {
    return this.samples >= MIN_SAMPLES && now - this.lastSampleAt <= LATENCY_STALE_MS ? this.latencyMs : null;
  }
}

export class Router {
  private readonly stats = new Map<string, ServerStats>();

  /**
   * `shared`: with proxy.workers > 1, the count of every process's connections per server, which
   * keeps a server's max_connections for Ferry as a whole. Alone, this process's own count is it.
   */
  constructor(private readonly config: () => RuntimeConfig, private readonly shared: Slots | null = null) {}

  statsOf(address: string): ServerStats {
    let s = this.stats.get(address);
    if (!s) {
      s = new ServerStats();
      this.stats.set(address, s);
    }
    return s;
  }

  connectionCount(address: string): number {
    return this.stats.get(address)?.connections ?? 0;
  }

  /**
   * Servers of a hostgroup that accept new sessions with these labels, best first. Connections
   * being replaced (beginLeaving) do not count in the scores: they close once their replacement
   * is up.
   */
  candidates(hostgroup: number, labels: Readonly<Record<string, string>> | null = null): ServerConfig[] {
    const cfg = this.config();
    const count = (s: ServerConfig): number => {
      const st = this.statsOf(s.address);
      return st.connections - st.leaving;
    };
    const list = cfg.servers.filter((s) => takesSessions(s, hostgroup, labels) && this.connectionCount(s.address) < s.maxConnections);
    if (list.length < 2) return list;
    const now = performance.now();
    const best = this.bestLatency(list, now);
    const scores = new Map(list.map((s) => [s, ((count(s) + 1) / s.weight) * this.penalty(s, best, cfg, now)]));
    const failed = (s: ServerConfig): number => (this.statsOf(s.address).failedUntil > now ? 1 : 0);
    return list.sort((a, b) => failed(a) - failed(b) || scores.get(a)! - scores.get(b)!);
  }

  /** The best (lowest) latency EWMA among servers whose average counts, Infinity when none does. */
  bestLatency(group: readonly ServerConfig[], now = performance.now()): number {
    let best = Infinity;
    for (const g of group) {
      const ms = this.stats.get(g.address)?.latencyAt(now) ?? null;
      if (ms !== null && ms < best) best = ms;
    }
    return best;
  }

  /**
   * How much more loaded than its connections say a server counts (≥ 1): the latency factor
   * against the hostgroup's best latency, and the zone factor.
   */
  penalty(s: ServerConfig, best: number, cfg: RuntimeConfig = this.config(), now = performance.now()): number {
    const b = cfg.balancer;
    let factor = 1;
    if (b.latency_weight > 0 && best < Infinity) {
      const mine = this.stats.get(s.address)?.latencyAt(now) ?? null;
      if (mine !== null) {
        const gap = mine - best - LATENCY_DEADBAND_MS;
        if (gap > 0) factor *= Math.min(10, 1 + (b.latency_weight * gap) / Math.max(best, LATENCY_DEADBAND_MS));
      }
    }
    if (b.zone !== undefined && s.labels[b.zone_label] !== b.zone) factor *= b.zone_penalty;
    return factor;
  }

  /** True when the hostgroup has ONLINE servers for these labels and each holds its max_connections. */
  full(hostgroup: number, labels: Readonly<Record<string, string>> | null = null): boolean {
    const online = this.config().servers.filter((s) => takesSessions(s, hostgroup, labels));
    return online.length > 0 && online.every((s) => this.connectionCount(s.address) >= s.maxConnections);
  }

  /**
   * Takes a place for one more connection to `server` when it has one under its max_connections
   * (across processes when shared); release() gives it back.
   */
  async acquire(server: ServerConfig): Promise<boolean> {
    const s = this.statsOf(server.address);
    if (s.connections >= server.maxConnections) return false;
    // Counted here at once, so that candidates() sees it while the shared count is asked.
    s.connections++;
    if (this.shared === null || await this.shared.acquire(serverSlot(server.address), server.maxConnections)) return true;
    s.connections--;
    return false;
  }

  /**
   * A connection to `address` is being replaced by a fresh one (a renewal): the servers are scored
   * as if it were gone, so renewals running together spread as new sessions would. endLeaving()
   * once the replacement is made or has failed.
   */
  beginLeaving(address: string): void {
    this.statsOf(address).leaving++;
  }

  endLeaving(address: string): void {
    const s = this.statsOf(address);
    if (s.leaving > 0) s.leaving--;
  }

  release(address: string): void {
    const s = this.statsOf(address);
    if (s.connections === 0) return;
    s.connections--;
    this.shared?.release(serverSlot(address));
  }

  /** A server that refused a connection goes to the back of the line for a while. */
  reportFailure(address: string, backoffMs = 2000, now = performance.now()): void {
    this.statsOf(address).failedUntil = now + backoffMs;
  }

  reportSuccess(address: string): void {
    this.statsOf(address).failedUntil = -Infinity;
  }
}

/** A server of `hostgroup`, ONLINE with a weight, carrying the labels: one that takes new sessions when it has room. */
function takesSessions(s: ServerConfig, hostgroup: number, labels: Readonly<Record<string, string>> | null): boolean {
  return s.hostgroup === hostgroup && s.status === "ONLINE" && s.weight > 0 && hasLabels(s, labels);
}

export function hasLabels(s: ServerConfig, labels: Readonly<Record<string, string>> | null): boolean {
  if (labels === null) return true;
  for (const k in labels) if (s.labels[k] !== labels[k]) return false;
  return true;
}

function routeMatches(r: Route, user: UserConfig, clientAddr: string, labels: Readonly<Record<string, string>>): boolean {
  if (r.username !== null && r.username !== user.name) return false;
  if (r.clientAddr !== null && !r.clientAddr.matches(clientAddr)) return false;
  for (const k in r.labels) if (labels[k] !== r.labels[k]) return false;
  return true;
}

/** The hostgroup a new session lives in: the first matching route, else the user's default. */
export function homeHostgroup(cfg: RuntimeConfig, user: UserConfig, clientAddr: string, labels: Readonly<Record<string, string>>): number {
  for (const r of cfg.routes) if (routeMatches(r, user, clientAddr, labels)) return r.destinationHostgroup;
  return user.defaultHostgroup;
}
