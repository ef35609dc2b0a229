// Opening a backend connection for a session: which servers to try, in what order, how often, and
// which failures end the attempt. Used for a session's first connection, a move, a switch of
// hostgroup and COM_CHANGE_USER.

import type { ServerConfig } from "../config/runtime-config.js";
import { connectBackend, loginIdentity, quitBackend, type BackendConnectOptions, type BackendConnection } from "../backend/backend-connection.js";
import { CLIENT_SESSION_TRACK, FERRY_NO_BACKEND, MARIADB_CLIENT_CACHE_METADATA } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import type { Session } from "./session.js";

/**
 * A server that works, but cannot serve this session (it lacks a capability the client agreed to
 * with Ferry): the next server is tried, and the router keeps this one's standing for other sessions.
 */
export class UnsuitableBackend extends FerryError {}

/** Login errors that are the client's (credentials, database, an authentication plugin Ferry cannot speak): no other server would answer differently. */
const LOGIN_ERRORS = new Set([1044, 1045, 1049, 1251]);

/** Tries the hostgroup's servers best-first, a bounded number of times. */
export async function openBackend(s: Session, hostgroup: number, database: string | null): Promise<BackendConnection> {
  const router = s.deps.router;
  const candidates = router.candidates(hostgroup, s.labels);
  if (candidates.length === 0) {
    const which = s.labels ? ` with labels ${JSON.stringify(s.labels)}` : "";
    const why = router.full(hostgroup, s.labels) ? `every ONLINE server${which} of hostgroup ${hostgroup} holds its max_connections` : `hostgroup ${hostgroup} has no ONLINE server${which}`;
    throw new FerryError(FERRY_NO_BACKEND, "08S01", `no backend available: ${why}`);
  }
  try {
    return await connectFirst(s, candidates, database);
  } catch (e) {
    const err = e as FerryError;
    if (LOGIN_ERRORS.has(err.errno)) throw err;
    throw new FerryError(FERRY_NO_BACKEND, "08S01", `no backend available in hostgroup ${hostgroup}: ${err.message.replace(/^ferry: /, "")}`);
  }
}

/**
 * openBackend for a new session: while no server takes it (none ONLINE, each at its
 * max_connections, or each failing to log in), it tries again with backoff for up to
 * proxy.backend_wait_ms, so that a login during a failover, a restart or Ferry's own start waits
 * for the server that takes over rather than failing. A login refused for the client's own
 * reasons fails at once, and so does one whose client has gone.
 */
export async function openBackendWaiting(s: Session, hostgroup: number, database: string | null): Promise<BackendConnection> {
  const waitMs = s.deps.config().proxy.backend_wait_ms;
  const t0 = performance.now();
  let delay = 50;
  try {
    for (;;) {
      try {
        return await openBackend(s, hostgroup, database);
      } catch (e) {
        const err = e as FerryError;
        const waited = performance.now() - t0;
        if (err.errno !== FERRY_NO_BACKEND || s.isClosed) throw err;
        if (waited >= waitMs) {
          if (s.loginRetries === 0) throw err;
          throw new FerryError(err.errno, err.sqlState, `${err.message} (waited ${Math.round(waited)} ms for a server: proxy.backend_wait_ms)`, err.origin);
        }
        if (s.loginRetries === 0) s.log.info({ err: err.message, waitMs }, "no server takes the session yet; waiting for one");
        s.loginRetries++;
        await new Promise((r) => setTimeout(r, Math.min(delay, waitMs - waited)));
        delay = Math.min(delay * 2, 500);
      }
    }
  } finally {
    s.loginRetries = 0;
  }
}

/**
 * Logs in to the first of `candidates` (best first) that accepts, trying at most
 * backend_connect_attempts of them. A server holding its max_connections is passed over without
 * counting as a try. A login refused for the client's own reasons (bad credentials, unknown
 * database) ends the attempt at once; any other failure counts against that server (but an
 * UnsuitableBackend does not) and the next is tried. Throws the last failure.
 */
export async function connectFirst(s: Session, candidates: ServerConfig[], database: string | null): Promise<BackendConnection> {
  const router = s.deps.router;
  let last: FerryError | null = null;
  const attempts = s.deps.config().proxy.backend_connect_attempts;
  let tries = 0;
  const pool = s.deps.pool;
  for (const server of candidates) {
    if (tries === attempts) break;
    if (!(await router.acquire(server))) {
      last = new FerryError(FERRY_NO_BACKEND, "08S01", `backend ${server.address} holds its max_connections (${server.maxConnections})`, "backend");
      continue;
    }
    const reused = pool.accepts(server) ? pool.take(loginIdentity(loginOptions(s, server, database)), database) : null;
    if (reused) {
      reused.server = server; // the configuration's current entry for it
      return reused;
    }
    tries++;
    try {
      const conn = await connectTo(s, server, database);
      router.reportSuccess(server.address);
      return conn;
    } catch (e) {
      router.release(server.address);
      last = e instanceof FerryError ? e : new FerryError(2013, "HY000", `backend ${server.address}: ${String(e)}`, "backend");
      if (LOGIN_ERRORS.has(last.errno)) throw last;
      if (!(last instanceof UnsuitableBackend)) router.reportFailure(server.address);
      s.log[s.connectFailureLevel]({ server: server.address, err: last.message }, "backend connect failed");
    }
  }
  throw last ?? new FerryError(FERRY_NO_BACKEND, "08S01", "no backend available: no server to try");
}

/**
 * Logs in to one server as the session's user, with the client's database, collation and
 * attributes. A client that negotiated metadata caching reads a "metadata follows" byte in every
 * column count packet: a server that does not offer the capability would leave it out, so its
 * connection is refused here. After the login, not at the greeting: the connection ends with
 * COM_QUIT, where one closed in its handshake would count toward the server's max_connect_errors.
 */
export async function connectTo(s: Session, server: ServerConfig, database: string | null): Promise<BackendConnection> {
  const conn = await login(s, server, database);
  if ((s.auth.mariadbCapabilities & ~conn.mariadbCapabilities & MARIADB_CLIENT_CACHE_METADATA) !== 0) {
    quitBackend(conn);
    throw new UnsuitableBackend(FERRY_NO_BACKEND, "08S01",
      `backend ${server.address}: refused for this session: the client uses metadata caching, which ${conn.serverVersion} does not offer (set proxy.cache_metadata = false for mixed fleets)`, "backend");
  }
  return conn;
}

function login(s: Session, server: ServerConfig, database: string | null): Promise<BackendConnection> {
  return connectBackend(loginOptions(s, server, database));
}

function loginOptions(s: Session, server: ServerConfig, database: string | null): BackendConnectOptions {
  const a = s.auth;
  const u = a.user;
  return {
    server,
    credentials: { user: u.backendUser, password: u.backendPassword, stage1: u.backendPassword === null ? a.stage1 : null },
    database,
    collation: a.collation,
    clientCapabilities: a.capabilities,
    mariadbCapabilities: a.mariadbCapabilities,
    attributes: a.attributes,
    timeoutMs: s.deps.config().proxy.backend_connect_timeout_ms,
    trackSession: (a.capabilities & CLIENT_SESSION_TRACK) !== 0,
    keepAliveMs: s.deps.config().proxy.tcp_keepalive_ms,
    relay: { source: a.client, destination: a.destination },
  };
}
