// The primary's side of proxy.workers > 1. The primary listens, admits each connection against
// max_connections (one count for all processes), and gives it, still unread, to the process that
// serves the fewest clients: itself (process 0) or a worker (1…n-1). It routes KILL between
// processes, keeps the counts of users' and servers' max_connections for all, passes on
// configurations, TLS material and caching_sha2_password fast-path entries, sums the workers'
// figures, and replaces a worker that dies.

import { fork, type ChildProcess } from "node:child_process";
import type net from "node:net";
import type { Logger } from "pino";
import type { TopologyOverlay } from "../config/runtime-config.js";
import type { ConfigFile } from "../config/schema.js";
import type { TlsPems } from "../frontend/tls-material.js";
import { LocalSlots } from "../lib/slots.js";
import type { KillOutcome, KillRequest } from "../session/registry.js";
import type { DataPlane, PlaneStats } from "./data-plane.js";
import { PendingAnswers, type AnnouncingSet, type FromWorker, type StartState, type ToWorker } from "./messages.js";

const WORKER_ENTRY = new URL("./worker-main.js", import.meta.url);
/** how long a worker may take to start, and to answer a KILL */
const START_TIMEOUT_MS = 20_000;
const KILL_TIMEOUT_MS = 10_000;
const RESTART_DELAY_MS = 1_000;
/**
 * A worker reports its figures every 250 ms: one silent this long has a stuck event loop (its
 * clients get nothing either), and is killed, so that another takes its place.
 */
const WATCHDOG_MS = 10_000;
/** how often the watchdog looks; a look this much later than due means the primary itself was not running */
const WATCHDOG_CHECK_MS = 1_000;
const WATCHDOG_LATE_MS = 3 * WATCHDOG_CHECK_MS;

interface Worker {
  index: number;
  proc: ChildProcess;
  ready: boolean;
  /** connections it serves: token → release of the primary's count */
  open: Map<number, () => void>;
  /** connections sent to it that it has not confirmed yet: token → the primary's copy */
  passing: Map<number, net.Socket>;
  /** places its sessions hold in `slots`, per key */
  slots: Map<string, number>;
  stats: PlaneStats | null;
  /** Date.now() of its last message */
  heardAt: number;
}

export class WorkerPool {
  private readonly workers: (Worker | null)[] = [];
  private readonly answers = new PendingAnswers<KillOutcome>(KILL_TIMEOUT_MS, () => ({
    result: "error", errno: 1105, sqlState: "HY000", message: "ferry: KILL failed: the Ferry process of that session did not answer",
  }));
  /** users' and servers' max_connections, counted for every process */
  readonly slots = new LocalSlots();
  private nextToken = 1;
  private selfOpen = 0;
  private stopping = false;

  constructor(
    readonly instances: number,
    private readonly plane: () => DataPlane,
    private readonly state: () => StartState,
    private readonly sha2: AnnouncingSet,
    private readonly log: Logger,
    /** where the workers' log lines go when they send them (StartState.logToPrimary) */
    private readonly logSink: NodeJS.WritableStream | null = null,
  ) {
    sha2.onAdd = (key) => this.broadcast({ t: "sha2", key });
  }

  private watchdog: NodeJS.Timeout | null = null;
  private lastCheck = 0;

  /** Starts the workers; resolves when all are ready. */
  async start(): Promise<void> {
    await Promise.all(Array.from({ length: this.instances - 1 }, (_, i) => this.spawn(i + 1)));
    this.lastCheck = Date.now();
    this.watchdog = setInterval(() => this.checkAlive(), WATCHDOG_CHECK_MS);
    this.watchdog.unref();
  }

  private checkAlive(): void {
    const now = Date.now();
    const late = now - this.lastCheck > WATCHDOG_LATE_MS;
    this.lastCheck = now;
    if (late) {
      // The primary was stopped or starved (SIGSTOP, a paused VM): timers run before the workers'
      // queued reports are read, and their silence may be its own. Count again from now.
      for (const w of this.workers) if (w) w.heardAt = now;
      return;
    }
    for (const w of this.workers) {
      if (!w?.ready || now - w.heardAt < WATCHDOG_MS) continue;
      this.log.error({ worker: w.index, pid: w.proc.pid, silentMs: now - w.heardAt }, "worker process stopped answering; killing it");
      w.ready = false; // no more connections for it
      w.proc.kill("SIGKILL");
    }
  }

  /** The sessions of the other processes, as process `from` sees them. */
  remoteFor(from: number): { kill(req: KillRequest): Promise<KillOutcome> } {
    return { kill: (req) => this.route(from, req) };
  }

  /** ClientListener.handOff: the admitted connection goes to the least busy process. */
  handOff(socket: net.Socket, local: boolean, release: () => void): boolean {
    let best: Worker | null = null;
    for (const w of this.workers) if (w?.ready && w.open.size < (best?.open.size ?? this.selfOpen)) best = w;
    if (best === null) {
      this.selfOpen++;
      // The primary serves it (serve() calls this once): its end also lowers the primary's own count.
      this.plane().serve(socket, local, () => {
        this.selfOpen--;
        release();
      });
      return true;
    }
    const token = this.nextToken++;
    best.open.set(token, release);
    // The primary keeps its copy of the connection until the worker says it has it: a worker that
    // dies first takes nothing with it, and the copy is then closed, which the client sees.
    best.passing.set(token, socket);
    // Without its `server`, Node does not track the connection in the worker (a socket list per
    // worker that server.close() polls, and which never lets close() finish once every worker that
    // had one has exited: Node 20's Server.close counts one more connection for that poll and
    // never takes it back when there is no worker left to ask). The primary keeps its own count
    // here, and its copy is closed when the worker adopts the connection.
    (socket as unknown as { server: net.Server | null }).server = null;
    best.proc.send({ t: "conn", token, local } satisfies ToWorker, socket, { keepOpen: true }, (err) => {
      if (!err || !best.passing.delete(token)) return;
      this.log.warn({ worker: best.index, err: err.message }, "could not pass a connection to a worker; it is closed");
      best.open.delete(token);
      socket.destroy();
      release();
    });
    return true;
  }

  config(file: ConfigFile, overlay: TopologyOverlay): void {
    this.broadcast({ t: "config", file, overlay });
  }

  tls(pems: TlsPems): void {
    this.broadcast({ t: "tls", tls: pems });
  }

  /** The workers' figures as last reported (they report every 250 ms). */
  stats(): PlaneStats[] {
    return this.workers.flatMap((w) => (w?.stats ? [w.stats] : []));
  }

  /** The pids of the workers running now. */
  pids(): number[] {
    return this.workers.flatMap((w) => (w?.proc.pid && w.proc.exitCode === null && w.proc.signalCode === null ? [w.proc.pid] : []));
  }

  /** Asks every worker to shut down (sessions finish their transactions for up to waitMs); resolves when all have exited. */
  async shutdown(waitMs: number): Promise<void> {
    this.stopping = true;
    if (this.watchdog) clearInterval(this.watchdog);
    await Promise.all(this.workers.map((w) => {
      if (!w || w.proc.exitCode !== null || w.proc.signalCode !== null) return undefined;
      return new Promise<void>((resolve) => {
        const hard = setTimeout(() => w.proc.kill("SIGKILL"), waitMs + 5_000);
        w.proc.once("exit", () => {
          clearTimeout(hard);
          resolve();
        });
        if (!this.send(w, { t: "shutdown", waitMs })) w.proc.kill("SIGKILL");
      });
    }));
  }

  private spawn(index: number): Promise<void> {
    const proc = fork(WORKER_ENTRY, [], { serialization: "advanced", stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const w: Worker = { index, proc, ready: false, open: new Map(), passing: new Map(), slots: new Map(), stats: null, heardAt: Date.now() };
    this.workers[index - 1] = w;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`ferry: worker ${index} did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      proc.on("message", (m: FromWorker) => {
        w.heardAt = Date.now();
        if (m.t === "ready") {
          clearTimeout(timer);
          w.ready = true;
          resolve();
        } else {
          this.onMessage(w, m);
        }
      });
      proc.on("error", (e) => this.log.error({ worker: index, err: e.message }, "worker process error"));
      proc.once("exit", (code, signal) => {
        clearTimeout(timer);
        this.gone(w, code, signal);
        if (!w.ready) reject(new Error(`ferry: worker ${index} exited while starting (${signal ?? `code ${code}`})`));
      });
      this.send(w, { t: "start", index, instances: this.instances, ...this.state() });
    });
  }

  private onMessage(w: Worker, m: FromWorker): void {
    switch (m.t) {
      case "adopted":
        // Closing the primary's copy leaves the worker's open: no FIN goes out while it holds one.
        w.passing.get(m.token)?.destroy();
        w.passing.delete(m.token);
        return;
      case "released": {
        const release = w.open.get(m.token);
        w.open.delete(m.token);
        release?.();
        return;
      }
      case "kill":
        void this.route(w.index, m.req).then((outcome) => this.send(w, { t: "killed", rid: m.rid, outcome }));
        return;
      case "killed":
        this.answers.answer(m.rid, m.outcome);
        return;
      case "sha2":
        this.sha2.addQuietly(m.key);
        this.broadcast({ t: "sha2", key: m.key }, w);
        return;
      case "slot": {
        const granted = this.slots.tryAcquire(m.key, m.max);
        if (granted) w.slots.set(m.key, (w.slots.get(m.key) ?? 0) + 1);
        this.send(w, { t: "slot-answer", rid: m.rid, key: m.key, granted });
        return;
      }
      case "slot-release": {
        const n = w.slots.get(m.key) ?? 0;
        if (n === 0) return;
        if (n === 1) w.slots.delete(m.key);
        else w.slots.set(m.key, n - 1);
        this.slots.release(m.key);
        return;
      }
      case "stats":
        w.stats = m.stats;
        return;
      case "log":
        this.logSink?.write(m.line);
        return;
    }
  }

  /** A worker exited: its clients are gone with it; one takes its place unless Ferry is stopping. */
  private gone(w: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    for (const socket of w.passing.values()) socket.destroy();
    w.passing.clear();
    for (const release of w.open.values()) release();
    w.open.clear();
    for (const [key, n] of w.slots) for (let i = 0; i < n; i++) this.slots.release(key);
    w.slots.clear();
    w.ready = false;
    w.stats = null;
    this.answers.dropOwner(w.index, { result: "unknown" });
    if (this.stopping || this.workers[w.index - 1] !== w) return;
    this.log.error({ worker: w.index, pid: w.proc.pid, code, signal }, "worker process exited; its clients were disconnected; starting another");
    setTimeout(() => {
      if (this.stopping) return;
      this.spawn(w.index).catch((e: Error) => this.log.error({ worker: w.index, err: e.message }, "could not start a worker in place of one that exited"));
    }, RESTART_DELAY_MS).unref();
  }

  /**
   * Routes a KILL from process `from`: a Ferry id goes to the process that handed it out; a
   * backend thread id is asked of each other process in turn.
   */
  private async route(from: number, req: KillRequest): Promise<KillOutcome> {
    if (req.by === "id") {
      const owner = (req.id - 1) % this.instances;
      return owner === from ? { result: "unknown" } : this.ask(owner, req);
    }
    for (let i = 0; i < this.instances; i++) {
      if (i === from) continue;
      const r = await this.ask(i, req);
      if (r.result !== "unknown") return r;
    }
    return { result: "unknown" };
  }

  private ask(index: number, req: KillRequest): Promise<KillOutcome> {
    if (index === 0) return this.plane().kill(req);
    const w = this.workers[index - 1];
    if (!w?.ready) return Promise.resolve({ result: "unknown" });
    const [rid, answer] = this.answers.open(index);
    if (!this.send(w, { t: "kill", rid, req })) this.answers.answer(rid, { result: "unknown" });
    return answer;
  }

  private broadcast(m: ToWorker, except: Worker | null = null): void {
    // Workers still starting too: their "start" went first, so they apply this after it.
    for (const w of this.workers) if (w && w !== except) this.send(w, m);
  }

  private send(w: Worker, m: ToWorker): boolean {
    if (!w.proc.connected) return false;
    w.proc.send(m, (err: Error | null) => {
      if (err) this.log.warn({ worker: w.index, err: err.message }, "could not send to a worker");
    });
    return true;
  }
}
