// Counted places: at most `max` taken per key at once. Ferry counts a user's client connections
// (users.max_connections) and its backend connections to a server (the server's max_connections)
// this way; with proxy.workers > 1 the primary keeps one count for every process and the
// workers ask it over IPC (workers/pool.ts).

export interface Slots {
  /** Takes one of `key`'s places when fewer than `max` are taken (true); false when all are. */
  acquire(key: string, max: number): Promise<boolean>;
  release(key: string): void;
}

export class LocalSlots implements Slots {
  private readonly taken = new Map<string, number>();

  tryAcquire(key: string, max: number): boolean {
    const n = this.taken.get(key) ?? 0;
    if (n >= max) return false;
    this.taken.set(key, n + 1);
    return true;
  }

  acquire(key: string, max: number): Promise<boolean> {
    return Promise.resolve(this.tryAcquire(key, max));
  }

  release(key: string): void {
    const n = this.taken.get(key) ?? 0;
    if (n <= 1) this.taken.delete(key);
    else this.taken.set(key, n - 1);
  }
}
