// Idle backend connections kept for reuse (proxy.pool_size per server). A session that ends
// between commands gives its connections back instead of closing them. Ferry resets each
// (COM_RESET_CONNECTION: the transaction rolled back, temporary tables dropped, locks released,
// user variables, prepared statements and session variables back to their defaults), gives it
// back what its login set and the reset does not (login-state.ts), switches session tracking on
// again, all in one round trip, and keeps it. A server with an init_connect gets no connection
// kept: a login runs it, a reset does not. A later login that would be
// identical (same server, backend user and credentials, collation, capabilities and database:
// BackendConnection.identity) takes it instead: no TCP handshake, no authentication, no setup
// round trip.
//
// Places in a server's max_connections belong to sessions: a connection leaves its place when it
// joins the pool, and the session that takes it takes a place first. So the pool holds at most
// pool_size connections per server beyond max_connections (per process with proxy.workers > 1).
// An idle connection is closed when unused for proxy.pool_idle_ms, once renewal by
// proxy.backend_max_age_ms could reach it, when its server leaves ONLINE or the configuration,
// when the server closes it, and past pool_size (the one that came back first).

import type { Logger } from "pino";
import type { RuntimeConfig, ServerConfig } from "../config/runtime-config.js";
import { CLIENT_INTERACTIVE, COM_RESET_CONNECTION, COM_QUERY, OK_HEADER } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { decodeErr, encodeCommand } from "../protocol/packets.js";
import { packetStream, quitBackend, SESSION_TRACKING_SQL, trackingAnswer, waitTimeoutOf, type BackendConnection } from "./backend-connection.js";
import { readQueryResult } from "./statement-results.js";

const SWEEP_MS = 1_000;
/**
 * A connection this far into proxy.backend_max_age_ms is not kept: renewals start in the last
 * tenth of the age (session/backend-age.ts), and a session given it would move again at once.
 */
const AGE_SHARE_KEPT = 0.9;

interface Idle {
  conn: BackendConnection;
  key: string;
  /** performance.now() when it came back */
  since: number;
  onGone: () => void;
}

export class BackendPool {
  /** idle connections, oldest first */
  private idle: Idle[] = [];
  /** connections being reset before they join `idle` */
  private resetting = new Set<BackendConnection>();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly config: () => RuntimeConfig, private readonly log: Logger) {}

  start(): void {
    this.timer = setInterval(() => this.sweep(), SWEEP_MS);
    this.timer.unref();
  }

  /** Closes every idle connection and takes no more. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const e of [...this.idle]) this.close(e);
    for (const c of this.resetting) c.socket.destroy();
  }

  static keyOf(identity: string, database: string | null): string {
    return `${identity}|${database ?? ""}`;
  }

  /** Whether connections to `server` may be pooled: not when each carries its client's PROXY header. */
  accepts(server: ServerConfig): boolean {
    return !this.stopped && this.config().proxy.pool_size > 0 && !server.sendProxyProtocol;
  }

  /**
   * An idle connection for this login, when there is one (the caller holds a place for it in its
   * server's max_connections). The most recently returned goes first: the others age out when
   * load falls.
   */
  take(identity: string, database: string | null): BackendConnection | null {
    const key = BackendPool.keyOf(identity, database);
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const e = this.idle[i];
      if (e.key !== key) continue;
      this.unlink(e, i);
      return e.conn;
    }
    return null;
  }

  /**
   * A session ended between commands on `conn` (which the session no longer reads, and whose
   * place it gave back): reset it and keep it, or close it.
   */
  give(conn: BackendConnection): void {
    if (!this.accepts(conn.server) || this.tooOld(conn, performance.now()) || conn.leftover.length > 0 || conn.socket.destroyed || conn.loginRestore === null) {
      this.discard(conn);
      return;
    }
    this.resetting.add(conn);
    this.reset(conn).then((database) => {
      this.resetting.delete(conn);
      if (!this.accepts(conn.server) || !this.online(conn.server)) return this.discard(conn);
      this.keep(conn, BackendPool.keyOf(conn.identity, database));
    }, (e: Error) => {
      this.resetting.delete(conn);
      this.log.debug({ server: conn.server.address, err: e.message }, "could not reset a backend connection for reuse; closing it");
      this.discard(conn);
    });
  }

  /** Closes the idle connections whose server left ONLINE or the configuration (a reload). */
  prune(): void {
    for (const e of [...this.idle]) if (!this.online(e.conn.server)) this.close(e);
  }

  private tooOld(conn: BackendConnection, now: number): boolean {
    const maxAge = this.config().proxy.backend_max_age_ms;
    return maxAge > 0 && now - conn.openedAt >= maxAge * AGE_SHARE_KEPT;
  }

  private online(server: ServerConfig): boolean {
    return this.config().servers.some((s) => s.address === server.address && s.hostgroup === server.hostgroup && s.status === "ONLINE");
  }

  private async reset(conn: BackendConnection): Promise<string | null> {
    const stream = packetStream(conn.socket, conn.reader);
    const timeoutMs = this.config().proxy.backend_connect_timeout_ms;
    const timer = setTimeout(() => conn.socket.destroy(new FerryError(2013, "HY000", `no answer to COM_RESET_CONNECTION within ${timeoutMs} ms`, "backend")), timeoutMs);
    try {
      // One round trip: the reset; what the login set that the reset does not give back: for an
      // interactive client's connection its wait_timeout (a login gives it interactive_timeout,
      // the reset the global wait_timeout), and the character set and per-user limits
      // (login-state.ts); tracking on again (the reset turns it off); and what the connection
      // holds now: the database the session last chose (the key does not rest on Ferry's
      // tracking of it), its wait_timeout, and the server's init_connect.
      const tracked = conn.initialTrack !== null;
      const restore = [
        ...((conn.capabilities & CLIENT_INTERACTIVE) !== 0 ? ["SET SESSION wait_timeout = @@interactive_timeout"] : []),
        conn.loginRestore!,
      ];
      conn.socket.write(Buffer.concat([
        encodeCommand(COM_RESET_CONNECTION),
        ...restore.map((sql) => encodeCommand(COM_QUERY, sql)),
        ...(tracked ? [encodeCommand(COM_QUERY, SESSION_TRACKING_SQL)] : []),
        encodeCommand(COM_QUERY, "SELECT DATABASE(), @@wait_timeout, @@global.init_connect"),
      ]));
      for (let i = 1 + restore.length; i > 0; i--) {
        const p = await stream.next();
        if (p.payload[0] !== OK_HEADER) throw new FerryError(1105, "HY000", `resetting the connection failed: ${decodeErr(p.payload).message}`, "backend");
      }
      if (tracked) conn.initialTrack = trackingAnswer((await stream.next()).payload, conn.server.address, conn.capabilities).initialTrack;
      const { rows, error } = await readQueryResult(stream, conn.capabilities);
      if (error || rows.length !== 1) throw new FerryError(1105, "HY000", "SELECT DATABASE() failed after COM_RESET_CONNECTION", "backend");
      const [db, wait, initConnect] = rows[0];
      // A login runs init_connect (for users without SUPER), a reset does not: such a connection
      // would not hold what a new login would.
      if (initConnect !== null && initConnect.length > 0) throw new FerryError(1105, "HY000", "the server has an init_connect, which a reset does not run again", "backend");
      conn.waitTimeout = waitTimeoutOf(wait);
      return db === null ? null : db.toString("utf8");
    } finally {
      clearTimeout(timer);
      const rest = stream.detach();
      if (conn.reader) conn.reader.sink = null;
      if (rest.length) conn.socket.destroy();
    }
  }

  private keep(conn: BackendConnection, key: string): void {
    const e: Idle = { conn, key, since: performance.now(), onGone: () => this.gone(e) };
    // Anything the server sends an idle connection (an error before it disconnects) ends it.
    if (conn.reader) conn.reader.sink = { onChunk: e.onGone };
    else conn.socket.on("data", e.onGone);
    conn.socket.on("close", e.onGone);
    conn.socket.on("error", e.onGone);
    this.idle.push(e);
    // Past pool_size on this server, the connection that came back first goes.
    const onServer = this.idle.filter((x) => x.conn.server.address === conn.server.address);
    if (onServer.length > this.config().proxy.pool_size) this.close(onServer[0]);
  }

  /** Takes `e` out of the pool, its place now the holder's. */
  private unlink(e: Idle, at = this.idle.indexOf(e)): void {
    if (at >= 0) this.idle.splice(at, 1);
    const c = e.conn;
    if (c.reader) c.reader.sink = null;
    else c.socket.off("data", e.onGone);
    c.socket.off("close", e.onGone);
    c.socket.off("error", e.onGone);
  }

  private gone(e: Idle): void {
    if (!this.idle.includes(e)) return;
    this.log.debug({ server: e.conn.server.address }, "idle pooled backend connection closed by the server");
    this.close(e);
  }

  private close(e: Idle): void {
    this.unlink(e);
    this.discard(e.conn);
  }

  /** Ends a connection that is not kept. */
  private discard(conn: BackendConnection): void {
    if (conn.socket.destroyed) conn.socket.on("error", () => undefined);
    else quitBackend(conn);
  }

  private sweep(): void {
    const p = this.config().proxy;
    const now = performance.now();
    for (const e of [...this.idle]) {
      // Never kept until the server's own wait_timeout would end it.
      const waitMs = e.conn.waitTimeout !== null ? e.conn.waitTimeout * 1000 * 0.9 : Infinity;
      if (this.tooOld(e.conn, now) || now - e.since >= Math.min(p.pool_idle_ms, waitMs) || !this.online(e.conn.server) || p.pool_size === 0) this.close(e);
    }
  }
}
