// users.max_connections: how many client connections each user holds, one count across all of
// Ferry's processes (with proxy.workers > 1 the primary keeps it; workers ask over IPC).

import { ER_TOO_MANY_USER_CONNECTIONS } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";

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
}

/** The refusal of a login (or COM_CHANGE_USER) of a user that holds `max` connections already. */
export function userLimitError(user: string, max: number): FerryError {
  return new FerryError(ER_TOO_MANY_USER_CONNECTIONS, "42000", `refused login of user '${user}': it already has ${max} connections, its users.max_connections`, "client");
}
