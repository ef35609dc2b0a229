// One process's data plane: the sessions it serves and what acts on them (router, KILL table,
// move slots, drain, rebalancer, idle sweep). Ferry runs one per process: in the primary always,
// and in each worker process when proxy.workers > 1 (workers/pool.ts). The control plane hands
// it configurations; it never reads files or checks servers itself.

import type net from "node:net";
import type { Logger } from "pino";
import type { RuntimeConfig } from "../config/runtime-config.js";
import { BackendPool } from "../backend/pool.js";
import { ClientListener } from "../frontend/listener.js";
import type { TlsMaterial } from "../frontend/tls-material.js";
import { stackOf } from "../lib/error-stack.js";
import { LoopPriority } from "../lib/loop-priority.js";
import { LocalSlots, type Slots } from "../lib/slots.js";
import { Router } from "../router/router.js";
import { killForRemote } from "../session/ferry-commands.js";
import { applyServerChanges } from "../session/drain.js";
import { BackendAgeSweep } from "../session/backend-age.js";
import { IdleSweep } from "../session/idle-sweep.js";
import { MoveSlots } from "../session/migrator.js";
import { Rebalancer } from "../session/rebalancer.js";
import { SessionRegistry, type KillOutcome, type KillRequest, type RemoteSessions } from "../session/registry.js";
import { Session } from "../session/session.js";
import { StoredFunctionNames } from "../session/stored-functions.js";

export interface DataPlaneOptions {
  /** this process's place among the `instances` processes that serve clients */
  index: number;
  instances: number;
  runtime: RuntimeConfig;
  log: Logger;
  tls: TlsMaterial;
  serverVersion: string;
  backendMariadbCapabilities: number;
  sha2Cache: Set<string>;
  remote?: RemoteSessions;
  /** the counts of users' and servers' max_connections, shared by every process; default: this process's own */
  slots?: Slots;
  handOff?: (socket: net.Socket, local: boolean, release: () => void) => boolean;
}

/**
 * Process `index`'s share of max_concurrent_moves: the shares of all processes add up to `total`,
 * except that each gets at least one (a process that could not move would stall a drain).
 */
export function movesShare(total: number, index: number, instances: number): number {
  return Math.max(1, Math.floor(total / instances) + (index < total % instances ? 1 : 0));
}

/** What the control plane reads of a data plane (summed over processes). */
export interface PlaneStats {
  sessions: number;
  /** sessions per backend address */
  byServer: [string, number][];
  moved: number;
  failed: number;
}

export class DataPlane {
  private runtime: RuntimeConfig;
  private readonly router: Router;
  private readonly pool: BackendPool;
  private readonly registry: SessionRegistry<Session>;
  private readonly moves: MoveSlots;
  readonly listener: ClientListener;
  private readonly rebalancer: Rebalancer;
  private readonly idleSweep: IdleSweep;
  private readonly ageSweep: BackendAgeSweep;
  private readonly priority = new LoopPriority();
  private readonly log: Logger;

  constructor(o: DataPlaneOptions) {
    this.runtime = o.runtime;
    this.log = o.log;
    const config = (): RuntimeConfig => this.runtime;
    // A server's connections are counted in this process alone unless others share the count.
    this.router = new Router(config, o.slots ?? null);
    this.registry = new SessionRegistry<Session>(o.index, o.instances);
    this.moves = new MoveSlots(movesShare(o.runtime.proxy.max_concurrent_moves, o.index, o.instances));
    this.pool = new BackendPool(config, o.log);
    const deps = { config, router: this.router, registry: this.registry, log: o.log, tls: o.tls, sha2Cache: o.sha2Cache, moves: this.moves, remote: o.remote,
      slots: o.slots ?? new LocalSlots(), pool: this.pool, storedFunctions: new StoredFunctionNames() };
    this.listener = new ClientListener({
      config, tls: o.tls, log: o.log, sha2Cache: o.sha2Cache,
      serverVersion: () => o.serverVersion,
      backendMariadbCapabilities: () => o.backendMariadbCapabilities,
      allocateId: () => this.registry.allocateId(),
      handOff: o.handOff,
      onAuthenticated: (id, client, release) => {
        const s = new Session(id, client, deps, release);
        // start() answers the client itself for what can go wrong (no backend, a refused login):
        // what it throws is a fault in Ferry's own code, contained to this session.
        s.start().catch((e: Error) => {
          o.log.error({ session: id, err: stackOf(e) }, "internal error while starting the session; closing it");
          s.close();
        });
      },
    });
    this.rebalancer = new Rebalancer(this.registry, config, o.log, this.router);
    this.idleSweep = new IdleSweep(this.registry, config, o.log);
    this.ageSweep = new BackendAgeSweep(this.registry, config, o.log);
    this.priority.apply(o.runtime.proxy.nice, o.log);
  }

  start(): void {
    this.pool.start();
    this.rebalancer.start();
    this.idleSweep.start();
    this.ageSweep.start();
  }

  /** A new configuration: sessions on servers that left ONLINE start moving. */
  apply(runtime: RuntimeConfig): void {
    this.runtime = runtime;
    this.priority.apply(runtime.proxy.nice, this.log);
    applyServerChanges(this.registry, runtime, this.log, () => this.runtime);
    this.pool.prune();
  }

  /** A connection another process admitted (the primary's listener). */
  serve(socket: net.Socket, local: boolean, release: () => void): void {
    this.listener.serve(socket, local, release);
  }

  kill(req: KillRequest): Promise<KillOutcome> {
    return killForRemote(this.registry, this.log, req);
  }

  stats(): PlaneStats {
    const m = new Map<string, number>();
    for (const s of this.registry.all()) {
      const a = s.backendAddress;
      if (a) m.set(a, (m.get(a) ?? 0) + 1);
    }
    return { sessions: this.registry.size, byServer: [...m], moved: this.moves.moved, failed: this.moves.failed };
  }

  /** Lets sessions finish their transactions for up to `waitMs`, then closes the rest. */
  async shutdown(waitMs: number): Promise<void> {
    this.stopBackground();
    for (const s of [...this.registry.starting]) s.close();
    for (const s of [...this.registry.all()]) s.closeWhenIdle();
    const deadline = Date.now() + waitMs;
    while (this.registry.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (this.registry.size > 0) this.log.warn({ sessions: this.registry.size }, "shutdown wait over: closing sessions still in a transaction");
    this.close();
  }

  close(): void {
    this.stopBackground();
    for (const s of [...this.registry.all(), ...this.registry.starting]) s.close();
  }

  private stopBackground(): void {
    this.pool.stop();
    this.rebalancer.stop();
    this.idleSweep.stop();
    this.ageSweep.stop();
  }
}
