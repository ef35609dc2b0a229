// users.max_connections: how many client connections each user holds, one count across all of
// Ferry's processes (with proxy.workers > 1 the primary keeps it; workers ask over IPC).

export interface UserSlots {
  /** Takes one of `user`'s connections when fewer than `max` are taken (true); false when all are. */
  acquire(user: string, max: number): Promise<boolean>;
  release(user: string): void;
}

export class LocalUserSlots implements UserSlots {
  private readonly taken = new Map<string, number>();

  tryAcquire(user: string, max: number): boolean {
    const n = this.taken.get(user) ?? 0;
    if (n >= max) return false;
    this.taken.set(user, n + 1);
    return true;
  }

  acquire(user: string, max: number): Promise<boolean> {
    return Promise.resolve(this.tryAcquire(user, max));
  }

  release(user: string): void {
    const n = this.taken.get(user) ?? 0;
    if (n <= 1) this.taken.delete(user);
    else this.taken.set(user, n - 1);
  }

  count(user: string): number {
    return this.taken.get(user) ?? 0;
  }
}

export const ER_TOO_MANY_USER_CONNECTIONS = 1203;

export function userLimitMessage(user: string, max: number): string {
  return `ferry: refused login of user '${user}': it already has ${max} connections, its users.max_connections`;
}
