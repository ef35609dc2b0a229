// Ferry's own connection ids and the table KILL uses to find a session.

export interface Killable {
  readonly id: number;
  readonly userName: string;
  /** thread id of the backend connection currently serving the session, or -1 */
  readonly backendThreadId: number;
  readonly backendAddress: string | null;
  kill(query: boolean): Promise<void>;
}

export class SessionRegistry<T extends Killable = Killable> {
  private nextId = 1;
  private readonly sessions = new Map<number, T>();

  allocateId(): number {
    const id = this.nextId;
    this.nextId = this.nextId >= 0xfffffffe ? 1 : this.nextId + 1;
    return id;
  }

  add(s: T): void {
    this.sessions.set(s.id, s);
  }

  remove(s: T): void {
    if (this.sessions.get(s.id) === s) this.sessions.delete(s.id);
  }

  get size(): number {
    return this.sessions.size;
  }

  all(): IterableIterator<T> {
    return this.sessions.values();
  }

  /**
   * A KILL target: Ferry's own id first; otherwise a backend thread id that one session currently
   * uses (applications learn it from CONNECTION_ID()), preferring the killer's own server.
   */
  find(id: number, preferServer: string | null): T | null {
    const own = this.sessions.get(id);
    if (own) return own;
    let found: T | null = null;
    for (const s of this.sessions.values()) {
      if (s.backendThreadId !== id) continue;
      if (s.backendAddress === preferServer) return s;
      found ??= s;
    }
    return found;
  }
}
