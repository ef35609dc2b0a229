// Evens out long-lived sessions across a hostgroup: when the spread (the most loaded server's
// load over the least loaded one's) exceeds `rebalance_ratio` (typically after a server joins, or
// when one turns slow), up to `rebalance_moves_per_second` sessions a second are asked to move
// from the most loaded server to the least loaded one. A server's load is its sessions relative
// to its weighted share, times the router's penalty (latency and zone, as in its score), so the
// loop settles where the scores of new sessions would. Sessions move at their own movable
// boundaries; the router only says where.

import type { Logger } from "pino";
import type { RuntimeConfig, ServerConfig } from "../config/runtime-config.js";
import type { Router } from "../router/router.js";
import type { SessionRegistry } from "./registry.js";
import { SessionSweep } from "./session-sweep.js";
import type { Session } from "./session.js";

export class Rebalancer extends SessionSweep {
  constructor(registry: SessionRegistry<Session>, config: () => RuntimeConfig, log: Logger, private readonly router: Router | null = null) {
    super(registry, config, log);
  }

  /** One round: at most moves_per_second requests across all hostgroups. */
  tick(_now?: number): number {
    const cfg = this.config();
    const ratio = cfg.proxy.rebalance_ratio;
    if (ratio <= 0) return 0;
    let budget = cfg.proxy.rebalance_moves_per_second;
    const groups = new Map<number, ServerConfig[]>();
    for (const s of cfg.servers) {
      if (s.status !== "ONLINE" || s.weight <= 0) continue;
      const g = groups.get(s.hostgroup) ?? [];
      g.push(s);
      groups.set(s.hostgroup, g);
    }
    for (const [hostgroup, servers] of groups) {
      if (servers.length < 2 || budget <= 0) continue;
      const on = new Map<string, Session[]>(servers.map((s) => [s.address, []]));
      let total = 0;
      for (const sess of this.registry.all()) {
        if (sess.hostgroup !== hostgroup || sess.isClosed) continue;
        const list = sess.backendAddress ? on.get(sess.backendAddress) : undefined;
        if (!list) continue;
        list.push(sess);
        total++;
      }
      // Shares: weight over penalty, so a slow server's share shrinks as its score grows.
      const best = this.router ? this.router.bestLatency(servers) : Infinity;
      const penalty = new Map(servers.map((s) => [s.address, this.router ? this.router.penalty(s, best, cfg) : 1]));
      const share = (s: ServerConfig): number => s.weight / penalty.get(s.address)!;
      const shares = servers.reduce((n, s) => n + share(s), 0);
      const target = (s: ServerConfig): number => (total * share(s)) / shares;
      const load = (s: ServerConfig): number => on.get(s.address)!.length / target(s);
      const busiest = servers.reduce((a, b) => (load(b) > load(a) ? b : a));
      const idlest = servers.reduce((a, b) => (load(b) < load(a) ? b : a));
      // spread: most over least loaded, relative to their weighted targets (an empty server: infinite)
      const lo = load(idlest);
      if (total === 0 || (lo > 0 && load(busiest) / lo <= ratio)) continue;
      const count = on.get(busiest.address)!.length;
      const surplus = Math.min(Math.floor(count - target(busiest)), Math.ceil(target(idlest) - on.get(idlest.address)!.length), budget);
      if (surplus < 1) continue;
      let asked = 0;
      for (const sess of on.get(busiest.address)!) {
        if (asked >= surplus) break;
        if (sess.pendingMove !== null) continue;
        sess.requestMove("rebalance", idlest);
        asked++;
      }
      budget -= asked;
      if (asked) this.log.info({ hostgroup, from: busiest.address, to: idlest.address, sessions: asked }, "rebalancing sessions");
    }
    return cfg.proxy.rebalance_moves_per_second - budget;
  }
}
