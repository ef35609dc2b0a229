// Ferry's own connection ids and the table KILL uses to find a session.
//
// With several Ferry processes (proxy.workers), process k of n hands out the ids k+1, k+1+n,
// k+1+2n, …: an id names the process its session lives in, and KILL for a session elsewhere goes
// to that process through `RemoteSessions`.

export interface Killable {
  readonly id: number;
  readonly userName: string;
  /** thread id of the backend connection currently serving the session, or -1 */
  readonly backendThreadId: number;
  readonly backendAddress: string | null;
  kill(query: boolean): Promise<void>;
}

/** How a KILL for a session of another process ended, in the words of the process that ran it. */
export type KillOutcome =
  | { result: "unknown" }
  | { result: "killed"; target: number }
  | { result: "error"; errno: number; sqlState: string; message: string };

export interface KillRequest {
  id: number;
  query: boolean;
  /** the killer's user: only the session's own user may kill it */
  user: string;
  /** "id": `id` is a Ferry connection id; "thread": a backend thread id */
  by: "id" | "thread";
  /** with "thread": only a session on this server (thread ids repeat across servers); null: any */
  server: string | null;
}

/** The sessions of the other Ferry processes. */
export interface RemoteSessions {
  kill(req: KillRequest): Promise<KillOutcome>;
}

const MAX_ID = 0xfffffffe;

export class SessionRegistry<T extends Killable = Killable> {
  private nextId: number;
  private readonly sessions = new Map<number, T>();
  /** sessions still looking for their first server (not in the map yet): closed with the rest */
  readonly starting = new Set<T>();

  /** `index` of `instances`: this process's place among Ferry's processes */
  constructor(readonly index = 0, readonly instances = 1) {
    this.nextId = index + 1;
  }

  allocateId(): number {
    const id = this.nextId;
    this.nextId = this.nextId + this.instances > MAX_ID ? this.index + 1 : this.nextId + this.instances;
    return id;
  }

  /** Whether `id` is one this process hands out. */
  owns(id: number): boolean {
    return id >= 1 && (id - 1) % this.instances === this.index;
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

  byId(id: number): T | null {
    return this.sessions.get(id) ?? null;
  }

  /** A session that uses backend thread `id`, on any server. */
  byThreadId(id: number): T | null {
    for (const s of this.sessions.values()) if (s.backendThreadId === id) return s;
    return null;
  }

  /** The session that uses backend thread `id` on `server`. */
  byThreadOn(id: number, server: string): T | null {
    for (const s of this.sessions.values()) if (s.backendThreadId === id && s.backendAddress === server) return s;
    return null;
  }
}
