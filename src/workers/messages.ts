// What Ferry's primary process and its worker processes say to each other over the IPC channel
// (Node's advanced serialization: Maps and Sets cross as they are). A client connection crosses
// as the handle sent with a "conn" message.

import type { TopologyOverlay } from "../config/runtime-config.js";
import type { ConfigFile } from "../config/schema.js";
import type { TlsPems } from "../frontend/tls-material.js";
import type { KillOutcome, KillRequest } from "../session/registry.js";
import type { PlaneStats } from "./data-plane.js";

export interface StartState {
  file: ConfigFile;
  overlay: TopologyOverlay;
  serverVersion: string;
  backendMariadbCapabilities: number;
  tls: TlsPems;
  /** caching_sha2_password fast-path entries known so far */
  sha2: string[];
  logLevel: string;
  /** log lines go to the primary, which writes them where it logs (a destination given to startFerry); else to the inherited standard output */
  logToPrimary: boolean;
}

export type ToWorker =
  | ({ t: "start"; index: number; instances: number } & StartState)
  | { t: "config"; file: ConfigFile; overlay: TopologyOverlay }
  | { t: "tls"; tls: TlsPems }
  /** with the client socket as handle; the worker answers "released" with `token` when it ends */
  | { t: "conn"; token: number; local: boolean }
  | { t: "kill"; rid: number; req: KillRequest }
  | { t: "killed"; rid: number; outcome: KillOutcome }
  | { t: "sha2"; key: string }
  | { t: "slot-answer"; rid: number; key: string; granted: boolean }
  | { t: "shutdown"; waitMs: number };

export type FromWorker =
  | { t: "ready" }
  /** it holds the connection of "conn" `token` now: the primary closes its copy */
  | { t: "adopted"; token: number }
  | { t: "released"; token: number }
  /** a KILL for a session of another process: the primary routes it */
  | { t: "kill"; rid: number; req: KillRequest }
  | { t: "killed"; rid: number; outcome: KillOutcome }
  | { t: "sha2"; key: string }
  /** users' and servers' max_connections: the primary keeps the one count (lib/slots.ts) */
  | { t: "slot"; rid: number; key: string; max: number }
  | { t: "slot-release"; key: string }
  | { t: "stats"; stats: PlaneStats }
  /** a log line, when StartState.logToPrimary */
  | { t: "log"; line: string };

/** A Set that says when it gains an entry; entries learnt from another process are added quietly. */
export class AnnouncingSet extends Set<string> {
  onAdd: ((key: string) => void) | null = null;

  override add(key: string): this {
    if (!this.has(key)) {
      super.add(key);
      this.onAdd?.(key);
    }
    return this;
  }

  addQuietly(key: string): void {
    super.add(key);
  }
}

/** Requests to other processes that wait for an answer, each for at most `timeoutMs`. */
export class PendingAnswers<T> {
  private next = 1;
  private readonly waiting = new Map<number, { resolve: (v: T) => void; timer: NodeJS.Timeout; owner: number }>();

  constructor(private readonly timeoutMs: number, private readonly onTimeout: () => T) {}

  /** A request id, and the promise its answer settles; `owner`: the process asked. */
  open(owner: number): [number, Promise<T>] {
    const rid = this.next++;
    const p = new Promise<T>((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(rid);
        resolve(this.onTimeout());
      }, this.timeoutMs);
      this.waiting.set(rid, { resolve, timer, owner });
    });
    return [rid, p];
  }

  /** Settles request `rid` with `v`: false when nobody waits for it any more (it timed out). */
  answer(rid: number, v: T): boolean {
    const w = this.waiting.get(rid);
    if (!w) return false;
    this.waiting.delete(rid);
    clearTimeout(w.timer);
    w.resolve(v);
    return true;
  }

  /** Answers every request `owner` still owes with `v` (it went away). */
  dropOwner(owner: number, v: T): void {
    for (const [rid, w] of this.waiting) if (w.owner === owner) this.answer(rid, v);
  }
}
