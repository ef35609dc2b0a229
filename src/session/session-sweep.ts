// A check over all sessions that runs once a second (idle timeouts, connection age, rebalancing).
// The timer does not keep the process alive.

import type { Logger } from "pino";
import type { RuntimeConfig } from "../config/runtime-config.js";
import type { SessionRegistry } from "./registry.js";
import type { Session } from "./session.js";

export const SWEEP_MS = 1000;

export abstract class SessionSweep {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    protected readonly registry: SessionRegistry<Session>,
    protected readonly config: () => RuntimeConfig,
    protected readonly log: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.tick(performance.now()), SWEEP_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One round at `now` (performance.now()); returns how many sessions it acted on. */
  abstract tick(now: number): number;
}
