// The event loop thread's scheduling priority (`proxy.nice`). Ferry forwards every query of every
// session on one thread. Under the kernel's fair scheduler that thread gets the share of one
// thread, the same as any single client or server thread: on a machine whose cores are busy with
// clients or servers as well, the thread every session waits on waits in the run queue itself.
// A lower nice value gives it a larger share, as nginx's `worker_priority` does for its workers.
//
// Linux keeps a nice value per thread; os.setPriority() without a pid sets the calling thread's,
// which is the event loop's. Lowering it needs root or CAP_SYS_NICE: without them Ferry says so
// and runs as it was started. With the key unset Ferry leaves the priority it was started with
// (e.g. under `nice`), and goes back to it when a reload removes the key.

import { getPriority, setPriority } from "node:os";
import type { Logger } from "pino";

export class LoopPriority {
  /** the thread's nice value before Ferry first changed it */
  private original: number | null = null;

  /** Sets the event loop thread's nice value; `nice` undefined: the value Ferry was started with. */
  apply(nice: number | undefined, log: Logger): void {
    if (nice === undefined && this.original === null) return;
    const want = nice ?? this.original!;
    const before = getPriority();
    if (want === before) return;
    try {
      setPriority(want);
    } catch (e) {
      log.warn({ nice: want, err: (e as Error).message }, "could not set the event loop's priority (proxy.nice): a value below the current one needs root or CAP_SYS_NICE; it stays as it was");
      return;
    }
    if (this.original === null) this.original = before;
    log.info({ nice: want, was: before }, "event loop priority set");
  }
}
