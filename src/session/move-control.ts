// When a session moves (DESIGN §5): a move is requested (drain, rebalance, backend lost, a
// connection past backend_max_age_ms) and runs at the session's first command boundary where it
// is movable, within the shared MoveSlots. A failed move leaves the session where it was and is
// retried with backoff. A session whose backend is gone gives a waiting command
// reconnect_timeout_ms to find a new one.

import type { ServerConfig } from "../config/runtime-config.js";
import { CR_SERVER_LOST } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { switchHostgroup } from "./hostgroup-switch.js";
import { guarded } from "./internal-error.js";
import { moveSession, type MoveOutcome } from "./migrator.js";
import type { Session } from "./session.js";

export class MoveControl {
  /** why the session should move, while a move is wanted */
  reason: string | null = null;
  private target: ServerConfig | null = null;
  /** the wanted move renews the connection: to the best server, the current one included */
  private renewing = false;
  moving = false;
  private attempts = 0;
  private notBefore = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private lostDeadline: NodeJS.Timeout | null = null;

  constructor(private readonly s: Session) {}

  /** Asks for a move; it happens at the first command boundary where the session is movable. */
  request(reason: string, target: ServerConfig | null = null, renew = false): void {
    if (this.s.isClosed) return;
    this.reason = reason;
    this.target = target;
    this.renewing = renew;
    this.notBefore = 0;
    this.maybeContained();
  }

  /** The level at which the running attempt logs its failures (connect failures included). */
  get failureLevel(): "warn" | "debug" {
    return failureLevel(this.moving ? this.attempts + 1 : 1);
  }

  /** Withdraws a request that has not started. */
  cancel(): void {
    if (this.moving) return;
    this.reason = null;
    this.target = null;
    this.renewing = false;
    this.attempts = 0;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
  }

  /** maybe() called from outside the session's own flow (sweeps over many sessions, the retry timer): a fault ends this session only. */
  private maybeContained(): void {
    guarded(this.s, () => this.maybe());
  }

  /** Starts the wanted move if the session is at a movable boundary. */
  maybe(): void {
    const s = this.s;
    if (this.reason === null || this.moving || s.isClosed || !s.loop.atMovableBoundary) return;
    // Timers count from the event loop's cached time and may fire a little before Date.now()
    // reaches notBefore: a retry that comes early is armed again, never dropped.
    const wait = this.notBefore - Date.now();
    if (wait > 0) {
      if (this.retryTimer === null) this.retryIn(wait);
      return;
    }
    this.moving = true;
    s.loop.beginBusy();
    void this.run(this.reason);
  }

  private async run(reason: string): Promise<void> {
    const s = this.s;
    const slots = s.deps.moves;
    await slots.acquire();
    try {
      if (s.isClosed) return;
      const m = await moveSession(s, this.target, this.renewing).catch((e: unknown) => this.goHome(e));
      slots.moved++;
      s.log.info({ reason, from: m.from, to: m.to, ms: Math.round(m.ms * 10) / 10, result: "moved" }, "session moved");
      this.reason = null;
      this.target = null;
      this.renewing = false;
      this.attempts = 0;
      s.lostFrom = null;
      if (this.lostDeadline) {
        clearTimeout(this.lostDeadline);
        this.lostDeadline = null;
      }
    } catch (e) {
      if (s.isClosed) return;
      slots.failed++;
      this.attempts++;
      const delay = Math.min(5000, 50 * 2 ** Math.min(this.attempts, 7));
      s.log[failureLevel(this.attempts)]({ reason, from: s.backendAddress ?? s.lostFrom, err: (e as Error).message, attempt: this.attempts, retryInMs: delay, result: "failed" }, "session move failed");
      this.notBefore = Date.now() + delay;
      this.retryIn(delay);
    } finally {
      slots.release();
      this.moving = false;
      if (!s.isClosed) guarded(s, s.loop.endBusy);
    }
  }

  private retryIn(ms: number): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.maybeContained();
    }, ms);
    this.retryTimer.unref();
  }

  /** A connection of another hostgroup with nowhere to go: the session goes home instead. */
  private async goHome(e: unknown): Promise<MoveOutcome> {
    const s = this.s;
    if (s.hostgroup === s.homeHostgroup || s.isClosed) throw e;
    const from = s.backendAddress ?? s.lostFrom;
    const t0 = performance.now();
    await switchHostgroup(s, s.homeHostgroup, true);
    return { from, to: s.backendAddress ?? "?", ms: performance.now() - t0 };
  }

  /** A command arrived while there is no backend: give the reconnect a bounded time. */
  awaitReconnect(): void {
    const s = this.s;
    if (this.lostDeadline || s.isClosed) return;
    const ms = s.deps.config().proxy.reconnect_timeout_ms;
    this.lostDeadline = setTimeout(() => {
      this.lostDeadline = null;
      if (!s.hasBackend) {
        s.fatal(new FerryError(CR_SERVER_LOST, "HY000", `lost connection to backend ${s.lostFrom ?? "?"} and no other server took the session within ${ms} ms`, "backend"), 1);
      }
    }, ms);
    this.lostDeadline.unref();
    this.maybe();
  }

  /** The session closed: no timers left behind. */
  clear(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.lostDeadline) clearTimeout(this.lostDeadline);
  }
}

/** A long outage retries every 5 s: warnings for the first three attempts, then about once a minute. */
function failureLevel(attempt: number): "warn" | "debug" {
  return attempt <= 3 || attempt % 12 === 0 ? "warn" : "debug";
}
