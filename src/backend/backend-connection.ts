// One connection from Ferry to a server: connect, optional TLS, client-side authentication, and
// session tracking switched on. After connectBackend() resolves, the socket belongs to a session,
// which reads it in forwarding mode.

import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import type { Duplex } from "node:stream";
import type { ServerConfig } from "../config/runtime-config.js";
import {
  CACHING_SHA2_PASSWORD, CLEAR_PASSWORD, CLIENT_CONNECT_ATTRS, CLIENT_CONNECT_WITH_DB, CLIENT_DEPRECATE_EOF,
  CLIENT_FOUND_ROWS, CLIENT_IGNORE_SPACE, CLIENT_INTERACTIVE, CLIENT_LOCAL_FILES, CLIENT_LONG_FLAG, CLIENT_LONG_PASSWORD,
  CLIENT_MULTI_RESULTS, CLIENT_MULTI_STATEMENTS, CLIENT_PLUGIN_AUTH, CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
  CLIENT_PROTOCOL_41, CLIENT_PS_MULTI_RESULTS, CLIENT_SECURE_CONNECTION, CLIENT_SESSION_TRACK, CLIENT_SSL,
  CLIENT_TRANSACTIONS, COM_QUERY, COM_QUIT, ED25519, ERR_HEADER, NATIVE_PASSWORD, OK_HEADER,
} from "../protocol/constants.js";
import { ed25519Sign } from "../protocol/auth/ed25519.js";
import { FerryError } from "../protocol/errors.js";
import { FAST_AUTH_SUCCESS, PERFORM_FULL_AUTHENTICATION, REQUEST_PUBLIC_KEY, sha2EncryptPassword, sha2Token } from "../protocol/auth/caching-sha2.js";
import { nativeTokenFromStage1, nativeStage1 } from "../protocol/auth/native-password.js";
import { PacketStream } from "../protocol/packet-stream.js";
import {
  decodeErr, decodeHandshakeV10, decodeOk, encodeCommand, encodeHandshakeResponse, encodePacket, type HandshakeV10,
  type SessionTrackInfo,
} from "../protocol/packets.js";
import { encodeProxyV2, type Endpoint } from "../protocol/proxy-header.js";
import { PacketReader } from "../protocol/reader.js";
import { okStatus } from "../protocol/response-scanner.js";
import { readQueryResult } from "./statement-results.js";
import { loginVariables, restoreStatement, selfAssignments } from "./login-state.js";
import { copyingSink, SocketReader } from "../lib/socket-reader.js";
import { SocketWriter } from "../lib/socket-writer.js";

/** Client capabilities passed through to the backend because they change what the server sends. */
const PASS_THROUGH = CLIENT_FOUND_ROWS | CLIENT_LONG_FLAG | CLIENT_LOCAL_FILES | CLIENT_IGNORE_SPACE | CLIENT_INTERACTIVE |
  CLIENT_TRANSACTIONS | CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS | CLIENT_PS_MULTI_RESULTS | CLIENT_SESSION_TRACK |
  CLIENT_DEPRECATE_EOF | CLIENT_LONG_PASSWORD;
/** What Ferry itself needs from any backend. */
const REQUIRED = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;

export interface BackendCredentials {
  user: string;
  /** plaintext, when known */
  password: string | null;
  /** SHA1(password), enough for mysql_native_password */
  stage1: Buffer | null;
}

export interface BackendConnectOptions {
  server: ServerConfig;
  credentials: BackendCredentials;
  database: string | null;
  collation: number;
  clientCapabilities: number;
  /** MariaDB extended capabilities to request (only those Ferry offered its client) */
  mariadbCapabilities: number;
  attributes: Map<string, string>;
  timeoutMs: number;
  /** switch on session tracking (only when the client itself accepts tracking data) */
  trackSession: boolean;
  /** TCP keepalive: probes after this much silence (0: off) */
  keepAliveMs: number;
  /** the client this connection serves, for a server that takes PROXY headers; absent: Ferry's own connection */
  relay?: { source: Endpoint; destination: Endpoint };
}

export interface BackendConnection {
  socket: Duplex;
  /** reads the socket in place of "data" events (absent on TLS connections, which emit "data") */
  reader: SocketReader | null;
  /** writes forwarded chunks (its onDrain belongs to the session the connection serves) */
  out: SocketWriter;
  server: ServerConfig;
  threadId: number;
  serverVersion: string;
  capabilities: number;
  /** MariaDB extended capabilities agreed with the server (the client's, where the server has them) */
  mariadbCapabilities: number;
  /** status flags of the login's OK packet (SERVER_STATUS_NO_BACKSLASH_ESCAPES matters for quoting) */
  statusFlags: number;
  /** session state reported by the server during setup (initial variable values) */
  initialTrack: SessionTrackInfo | null;
  /** bytes already read past the connection phase (normally empty) */
  leftover: Buffer;
  /** the session's wait_timeout in seconds right after login (null: the server did not say) */
  waitTimeout: number | null;
  /**
   * The SET statement giving a reset session what its login set (login-state.ts); null when the
   * server did not say, and then the connection is not pooled.
   */
  loginRestore: string | null;
  /** performance.now() when the login completed (proxy.backend_max_age_ms counts from here) */
  openedAt: number;
  /** what its login was: server, user, credentials, collation, capabilities (the pool's key, pool.ts) */
  identity: string;
}

/**
 * What makes two logins to a server interchangeable: the same hostgroup and server, backend user
 * and credentials, collation, capabilities and session tracking. The database is apart: a
 * connection's changes with USE.
 */
export function loginIdentity(o: BackendConnectOptions): string {
  const c = o.credentials;
  const secret = createHash("sha1").update(c.password !== null ? `p${c.password}` : `s${c.stage1?.toString("hex") ?? ""}`).digest("hex");
  return `${o.server.hostgroup}/${o.server.address}|${c.user}|${secret}|${o.collation}|${o.clientCapabilities & PASS_THROUGH}|${o.mariadbCapabilities}|${o.trackSession ? 1 : 0}`;
}

// wait_timeout set to itself: the OK then reports the session's value (the server gives an
// interactive client interactive_timeout), without a round trip of its own.
export const SESSION_TRACKING_SQL =
  "SET session_track_system_variables='*', session_track_schema=ON, session_track_state_change=ON, wait_timeout=@@wait_timeout";

export async function connectBackend(o: BackendConnectOptions): Promise<BackendConnection> {
  // TLS wraps the raw socket's handle, so only plain connections read through a SocketReader.
  let reader: SocketReader | null = o.server.useSsl ? null : new SocketReader();
  let socket: Duplex = net.connect({
    ...endpointOf(o.server), noDelay: true, keepAlive: o.keepAliveMs > 0, keepAliveInitialDelay: o.keepAliveMs,
    ...(reader ? { onread: reader.onread } : {}),
  });
  const raw = socket as net.Socket;
  // Nothing keeps a view of a backend read buffer past its socket's close (a client socket that
  // queued one has renewed the reader), so its buffers are free once the socket closes.
  if (reader) {
    reader.watchClose(raw);
    reader.release();
  }
  // The header leads everything, TLS included; net queues it until the connection is up.
  if (o.server.sendProxyProtocol) raw.write(encodeProxyV2(o.relay?.source ?? null, o.relay?.destination ?? null));
  const timer = setTimeout(() => raw.destroy(new FerryError(2013, "HY000", `backend ${o.server.address} did not complete login within ${o.timeoutMs} ms`, "backend")), o.timeoutMs);
  try {
    let stream = packetStream(socket, reader);
    const first = await stream.next();
    if (first.payload[0] === ERR_HEADER) {
      const e = decodeErr(first.payload);
      throw new FerryError(e.errno, e.sqlState, `backend ${o.server.address} refused the connection: ${e.message}`, "backend");
    }
    const hs = decodeHandshakeV10(first.payload);
    if (!(hs.capabilities & CLIENT_PROTOCOL_41)) throw new FerryError(2012, "HY000", `backend ${o.server.address} does not speak protocol 4.1`, "backend");
    let caps = REQUIRED | (o.clientCapabilities & PASS_THROUGH & hs.capabilities);
    if (hs.capabilities & CLIENT_CONNECT_ATTRS) caps |= CLIENT_CONNECT_ATTRS;
    if (o.database) caps |= CLIENT_CONNECT_WITH_DB;
    // The server takes collation and MariaDB capabilities from the first packet it reads: with TLS
    // that is the SSL request, so both packets carry the same ones.
    const collation = o.collation || hs.collation;
    const mariadbCaps = o.mariadbCapabilities & hs.mariadbCapabilities;
    let seq = first.seq + 1;
    let secure = false;
    if (o.server.useSsl) {
      if (!(hs.capabilities & CLIENT_SSL)) throw new FerryError(2026, "HY000", `backend ${o.server.address} does not offer TLS but use_ssl is set`, "backend");
      caps |= CLIENT_SSL;
      socket.write(encodeHandshakeResponse(sslRequest(caps, collation, mariadbCaps), seq++));
      stream.detach();
      socket = await startTls(raw, o.server);
      stream = new PacketStream(socket);
      secure = true;
    }
    // A greeting naming a plugin Ferry does not speak is answered as native; the server switches if it must.
    const plugin = BACKEND_PLUGINS.has(hs.authPluginName) ? hs.authPluginName : NATIVE_PASSWORD;
    socket.write(encodeHandshakeResponse({
      capabilities: caps, maxPacketSize: 0x40000000, collation, username: o.credentials.user,
      authResponse: authToken(plugin, hs.authPluginData, o.credentials), database: o.database, authPluginName: plugin,
      attributes: o.attributes, mariadbCapabilities: mariadbCaps, sslRequest: false,
    }, seq));
    const statusFlags = await authenticate(stream, socket, o, hs, plugin, secure);
    const track = o.trackSession && hs.capabilities & CLIENT_SESSION_TRACK;
    const loginVars = loginVariables(hs.serverVersion);
    if (track) socket.write(encodeCommand(COM_QUERY, SESSION_TRACKING_SQL + selfAssignments(loginVars)));
    const { initialTrack, waitTimeout, loginRestore } = await readSetup(stream, socket, o.server.address, caps, !!track, loginVars);
    const leftover = stream.detach();
    if (reader) {
      reader.sink = null;
      reader.attach(socket);
    }
    return { socket, reader, out: new SocketWriter(socket), statusFlags, server: o.server, threadId: hs.connectionId, serverVersion: hs.serverVersion, capabilities: caps, mariadbCapabilities: mariadbCaps, initialTrack, leftover, waitTimeout, loginRestore, openedAt: performance.now(), identity: loginIdentity(o) };
  } catch (e) {
    socket.destroy();
    reader = null;
    if (e instanceof FerryError) throw e;
    throw new FerryError(2013, "HY000", `backend ${o.server.address}: ${(e as Error).message}`, "backend");
  } finally {
    clearTimeout(timer);
  }
}

/** Ends a backend connection politely with COM_QUIT; the server closes its side, and errors from here on are expected. */
export function quitBackend(conn: BackendConnection): void {
  conn.socket.on("error", () => undefined);
  conn.socket.end(encodeCommand(COM_QUIT));
}

/** Whole-packet reading of a backend connection for Ferry's own statements. */
export function packetStream(socket: Duplex, reader: SocketReader | null): PacketStream {
  const stream = new PacketStream(socket, 16 * 1024 * 1024, reader !== null);
  if (reader) reader.sink = copyingSink((c) => stream.push(c));
  return stream;
}

/**
 * What a connection's setup tells: its initial session state (with tracking), its wait_timeout
 * (s), and what its login set that a reset does not give back (login-state.ts).
 */
export interface SetupAnswer {
  initialTrack: SessionTrackInfo | null;
  waitTimeout: number | null;
  loginRestore: string | null;
}

/**
 * The answer to SESSION_TRACKING_SQL (followed by `loginVars` assigned to themselves): the
 * session's initial state as the server reports it, and its wait_timeout and login variables
 * taken out of it (takeOwnReadings).
 */
export function trackingAnswer(payload: Buffer, address: string, caps: number, loginVars: string[] = []): SetupAnswer {
  if (payload[0] !== OK_HEADER) throw new FerryError(1105, "HY000", `backend ${address} refused session tracking: ${decodeErr(payload).message}`, "backend");
  const initialTrack = decodeOk(payload, caps).track;
  return { initialTrack, ...takeOwnReadings(initialTrack, loginVars) };
}

/**
 * Takes wait_timeout and the login variables out of the state a SESSION_TRACKING_SQL reported
 * (they are Ferry's own readings, not changes the client made): their values, null when the
 * server did not report them all.
 */
export function takeOwnReadings(track: SessionTrackInfo | null, loginVars: string[] = []): { waitTimeout: number | null; loginRestore: string | null } {
  const vars = track ? track.systemVariables : [];
  const take = (name: string): string | undefined => {
    const at = vars.findIndex(([k]) => k.toLowerCase() === name);
    return at < 0 ? undefined : vars.splice(at, 1)[0][1];
  };
  const wait = take("wait_timeout");
  const login = loginVars.map((v): [string, string | undefined] => [v, take(v)]);
  const known = login.every(([, value]) => value !== undefined);
  return { waitTimeout: wait === undefined ? null : Number(wait), loginRestore: known ? restoreStatement(login as [string, string][]) : null };
}

/** After login: the answer to SESSION_TRACKING_SQL when it was sent (`tracked`), else a SELECT of the same values. */
async function readSetup(stream: PacketStream, socket: Duplex, address: string, caps: number, tracked: boolean, loginVars: string[]): Promise<SetupAnswer> {
  if (tracked) {
    const r = trackingAnswer((await stream.next()).payload, address, caps, loginVars);
    if (r.waitTimeout !== null && r.loginRestore !== null) return r;
    return { ...(await selectSetup(stream, socket, caps, loginVars)), initialTrack: r.initialTrack };
  }
  return selectSetup(stream, socket, caps, loginVars);
}

/** SELECT of wait_timeout and the login variables, for sessions without tracking; nulls when the server refuses or answers oddly. */
async function selectSetup(stream: PacketStream, socket: Duplex, caps: number, loginVars: string[]): Promise<SetupAnswer> {
  socket.write(encodeCommand(COM_QUERY, `SELECT @@wait_timeout${loginVars.map((v) => `, @@${v}`).join("")}`));
  const { rows } = await readQueryResult(stream, caps);
  const row = rows.length === 1 && rows[0].length === 1 + loginVars.length ? rows[0] : null;
  if (row === null) return { initialTrack: null, waitTimeout: null, loginRestore: null };
  return {
    initialTrack: null,
    waitTimeout: waitTimeoutOf(row[0]),
    loginRestore: restoreStatement(loginVars.map((v, i) => [v, row[i + 1]?.toString("utf8") ?? null])),
  };
}

/** A wait_timeout value as a result row holds it; null when missing or not a number. */
export function waitTimeoutOf(value: Buffer | null): number | null {
  const n = value ? Number(value.toString("latin1")) : NaN;
  return Number.isFinite(n) ? n : null;
}

function sslRequest(caps: number, collation: number, mariadbCapabilities: number) {
  return {
    capabilities: caps, maxPacketSize: 0x40000000, collation, username: "", authResponse: Buffer.alloc(0), database: null,
    authPluginName: null, attributes: new Map<string, string>(), mariadbCapabilities, sslRequest: true,
  };
}

/**
 * TLS on a backend connection. With the server's ssl_ca, its certificate must chain to that CA and
 * name the configured host (or address); without it the connection is encrypted, not verified.
 */
function startTls(socket: net.Socket, server: ServerConfig): Promise<tls.TLSSocket> {
  const host = server.host;
  const servername = net.isIP(host) ? undefined : host;
  const verify = server.sslCa !== null ? { ca: readCa(server.sslCa), rejectUnauthorized: true, host } : { rejectUnauthorized: false };
  return new Promise((resolve, reject) => {
    const t = tls.connect({ socket, servername, ...verify });
    t.once("secureConnect", () => resolve(t));
    t.once("error", (e: Error) => {
      const why = server.sslCa !== null ? `TLS certificate refused (ssl_ca ${server.sslCa}): ${e.message}` : `TLS failed: ${e.message}`;
      reject(new FerryError(2026, "HY000", `backend ${server.address}: ${why}`, "backend"));
    });
  });
}

/** CA files, read again only when they change on disk. */
const caCache = new Map<string, { mtimeMs: number; pem: string }>();

function readCa(path: string): string {
  try {
    const mtimeMs = statSync(path).mtimeMs;
    const hit = caCache.get(path);
    if (hit && hit.mtimeMs === mtimeMs) return hit.pem;
    const pem = readFileSync(path, "utf8");
    caCache.set(path, { mtimeMs, pem });
    return pem;
  } catch (e) {
    throw new FerryError(2026, "HY000", `cannot read ssl_ca ${path}: ${(e as Error).message}`, "backend");
  }
}

/** Authentication plugins Ferry can answer as a client of a server. */
const BACKEND_PLUGINS = new Set([NATIVE_PASSWORD, CACHING_SHA2_PASSWORD, CLEAR_PASSWORD, ED25519]);

function authToken(plugin: string, nonce: Buffer, c: BackendCredentials): Buffer {
  switch (plugin) {
    case NATIVE_PASSWORD: {
      const stage1 = c.password !== null ? (c.password === "" ? null : nativeStage1(c.password)) : c.stage1;
      return stage1 && stage1.length ? nativeTokenFromStage1(stage1, nonce) : Buffer.alloc(0);
    }
    case CACHING_SHA2_PASSWORD:
      return c.password ? sha2Token(c.password, nonce) : Buffer.alloc(0);
    case CLEAR_PASSWORD:
      return Buffer.from((c.password ?? "") + "\0", "utf8");
    case ED25519:
      return ed25519Sign(nonce.subarray(0, 32), Buffer.from(c.password ?? "", "utf8"));
    default:
      return Buffer.alloc(0);
  }
}

async function authenticate(stream: PacketStream, socket: Duplex, o: BackendConnectOptions, hs: HandshakeV10, plugin: string, secure: boolean): Promise<number> {
  let nonce = hs.authPluginData;
  for (let round = 0; round < 8; round++) {
    const p = await stream.next();
    const h = p.payload[0];
    if (h === OK_HEADER) return okStatus(p.payload, 0, p.payload.length);
    if (h === ERR_HEADER) {
      const e = decodeErr(p.payload);
      throw new FerryError(e.errno, e.sqlState, `backend ${o.server.address} refused login for '${o.credentials.user}': ${e.message}`, "backend");
    }
    if (h === 0xfe) { // AuthSwitchRequest
      const r = new PacketReader(p.payload, 1);
      plugin = r.nulString();
      nonce = r.restBytes();
      // The scrambles of the password plugins end with a NUL; ed25519's 32-byte nonce is taken whole.
      if (plugin !== ED25519 && nonce.length && nonce[nonce.length - 1] === 0) nonce = nonce.subarray(0, nonce.length - 1);
      if (!BACKEND_PLUGINS.has(plugin)) {
        throw new FerryError(1251, "08004", `backend ${o.server.address} wants authentication plugin ${plugin} for '${o.credentials.user}', which Ferry does not speak (it speaks ${[...BACKEND_PLUGINS].join(", ")})`, "backend");
      }
      if ((plugin === CACHING_SHA2_PASSWORD || plugin === ED25519) && o.credentials.password === null) {
        throw new FerryError(1045, "28000", `backend ${o.server.address} wants ${plugin} for '${o.credentials.user}', which needs the plaintext password in Ferry's config (password or backend_password)`, "backend");
      }
      socket.write(encodePacket(p.seq + 1, authToken(plugin, nonce, o.credentials)));
      continue;
    }
    if (h === 0x01 && plugin === CACHING_SHA2_PASSWORD) { // AuthMoreData
      const status = p.payload[1];
      if (status === FAST_AUTH_SUCCESS) continue;
      if (status === PERFORM_FULL_AUTHENTICATION) {
        const password = o.credentials.password ?? "";
        if (secure) socket.write(encodePacket(p.seq + 1, Buffer.from(password + "\0", "utf8")));
        else socket.write(encodePacket(p.seq + 1, Buffer.from([REQUEST_PUBLIC_KEY])));
        continue;
      }
      // the server's public key, in answer to REQUEST_PUBLIC_KEY
      const pem = p.payload.subarray(1).toString("latin1");
      socket.write(encodePacket(p.seq + 1, sha2EncryptPassword(o.credentials.password ?? "", nonce, pem)));
      continue;
    }
    throw new FerryError(2027, "HY000", `backend ${o.server.address} sent an unexpected packet (0x${h.toString(16)}) during login`, "backend");
  }
  throw new FerryError(2027, "HY000", `backend ${o.server.address}: login did not finish`, "backend");
}

/**
 * What a server's greeting announces: its version and its MariaDB extended capabilities (0 for
 * MySQL). Used to advertise the backends' version and capabilities, and as a readiness probe.
 */
/** Where net.connect reaches a server: its Unix socket, or a host and port. */
export type ServerEndpoint = { path: string } | { host: string; port: number };

export function endpointOf(server: ServerConfig): ServerEndpoint {
  return server.socketPath !== null ? { path: server.socketPath } : { host: server.host, port: server.port };
}

/** Reads a server's greeting: its version and MariaDB capabilities. */
export async function probeServer(to: ServerEndpoint, timeoutMs: number): Promise<{ serverVersion: string; mariadbCapabilities: number }> {
  const socket = net.connect(to);
  const timer = setTimeout(() => socket.destroy(new Error("timeout")), timeoutMs);
  try {
    const stream = new PacketStream(socket);
    const p = await stream.next();
    const hs = decodeHandshakeV10(p.payload);
    return { serverVersion: hs.serverVersion, mariadbCapabilities: hs.mariadbCapabilities };
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
}
