// Server side of the connection phase: greet the client, optionally switch to TLS, and
// authenticate it against Ferry's own users (DESIGN §4).

import { randomBytes } from "node:crypto";
import net from "node:net";
import { Duplex } from "node:stream";
import tls from "node:tls";
import type { RuntimeConfig, UserConfig } from "../config/runtime-config.js";
import { clearPassword, FAST_AUTH_SUCCESS, PERFORM_FULL_AUTHENTICATION, REQUEST_PUBLIC_KEY, sha2DecryptPassword, verifySha2Token } from "../protocol/auth/caching-sha2.js";
import { nativeStage1, verifyNativeToken } from "../protocol/auth/native-password.js";
import {
  CLIENT_CONNECT_ATTRS, CLIENT_CONNECT_WITH_DB, CLIENT_DEPRECATE_EOF, CLIENT_FOUND_ROWS,
  CLIENT_IGNORE_SIGPIPE, CLIENT_IGNORE_SPACE, CLIENT_INTERACTIVE, CLIENT_LOCAL_FILES, CLIENT_LONG_FLAG, CLIENT_MULTI_RESULTS,
  CLIENT_MULTI_STATEMENTS, CLIENT_ODBC, CLIENT_PLUGIN_AUTH, CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA, CLIENT_PROTOCOL_41,
  CLIENT_PS_MULTI_RESULTS, CLIENT_RESERVED, CLIENT_SECURE_CONNECTION, CLIENT_SESSION_TRACK, CLIENT_SSL, CLIENT_TRANSACTIONS,
  CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS, CLIENT_COMPRESS, ER_ACCESS_DENIED_ERROR, ER_HANDSHAKE_ERROR, ER_NOT_SUPPORTED_AUTH_MODE, MARIADB_CLIENT_CACHE_METADATA, MARIADB_CLIENT_EXTENDED_METADATA, MARIADB_CLIENT_STMT_BULK_OPERATIONS,
  NATIVE_PASSWORD,
  SERVER_STATUS_AUTOCOMMIT, UTF8MB4_GENERAL_CI,
} from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { PacketStream, type Packet } from "../protocol/packet-stream.js";
import { decodeHandshakeResponse, encodeAuthMoreData, encodeAuthSwitchRequest, encodeHandshakeV10, type HandshakeResponse } from "../protocol/packets.js";
import type { Endpoint } from "../protocol/proxy-header.js";
import { readProxyPrefix } from "./proxy-protocol.js";
import { clientLabels } from "./tenant-labels.js";
import type { TlsMaterial } from "./tls-material.js";

export const SERVER_CAPABILITIES = CLIENT_FOUND_ROWS | CLIENT_LONG_FLAG | CLIENT_CONNECT_WITH_DB | CLIENT_ODBC |
  CLIENT_LOCAL_FILES | CLIENT_IGNORE_SPACE | CLIENT_PROTOCOL_41 | CLIENT_INTERACTIVE | CLIENT_IGNORE_SIGPIPE |
  CLIENT_TRANSACTIONS | CLIENT_RESERVED | CLIENT_SECURE_CONNECTION | CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS |
  CLIENT_PS_MULTI_RESULTS | CLIENT_PLUGIN_AUTH | CLIENT_CONNECT_ATTRS | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA |
  CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS | CLIENT_SESSION_TRACK | CLIENT_DEPRECATE_EOF | CLIENT_COMPRESS;

/**
 * MariaDB extended capabilities Ferry offers: MARIADB_CLIENT_EXTENDED_METADATA, which adds type
 * details (json, uuid, …) to column definitions that the scanner skips by length anyway; when
 * the backends are MariaDB, MARIADB_CLIENT_STMT_BULK_OPERATIONS (COM_STMT_BULK_EXECUTE, answered
 * with OK or ERR); and, when the backend Ferry probed at start offers it and proxy.cache_metadata
 * is on, MARIADB_CLIENT_CACHE_METADATA (the scanner reads the "metadata follows" byte; a session
 * that has it only uses backend connections that have it: backend-login.ts). Capabilities that
 * change the shape of responses otherwise (unit results of bulk commands, progress reports) are
 * not offered.
 *
 * These for clients of a server announcing `serverVersion` with `backendCaps`; `cacheMetadata`:
 * proxy.cache_metadata.
 */
export function mariadbCapabilitiesFor(serverVersion: string, backendCaps: number, cacheMetadata: boolean): number {
  return MARIADB_CLIENT_EXTENDED_METADATA | (serverVersion.includes("MariaDB") ? MARIADB_CLIENT_STMT_BULK_OPERATIONS : 0) |
    (cacheMetadata ? backendCaps & MARIADB_CLIENT_CACHE_METADATA : 0);
}

export interface HandshakeContext {
  connectionId: number;
  serverVersion: string;
  /** the MariaDB extended capabilities of the backend whose version is announced (0 when unknown) */
  backendMariadbCapabilities: number;
  config: RuntimeConfig;
  tls: TlsMaterial;
  /** users who completed caching_sha2_password full authentication since start (keyed by name + password) */
  sha2Cache: Set<string>;
  /** the client came through the Unix socket: its address is "localhost" */
  local?: boolean;
}

export interface AuthenticatedClient {
  socket: Duplex;
  user: UserConfig;
  capabilities: number;
  /** MariaDB extended capabilities the client asked for, of those Ferry offered */
  mariadbCapabilities: number;
  collation: number;
  database: string | null;
  attributes: Map<string, string>;
  /** SHA1(password) proven by a mysql_native_password exchange */
  stage1: Buffer | null;
  /** plaintext password, when the client sent it (full authentication) or the config holds it */
  password: string | null;
  /** sequence id for the packet that ends the connection phase (OK or ERR) */
  nextSeq: number;
  leftover: Buffer;
  secure: boolean;
  /** the client's address (routing by CIDR): from the PROXY header when a trusted proxy sent one */
  clientAddr: string;
  /** the client's address and port */
  client: Endpoint;
  /** the address of the proxy that relayed the client with a PROXY header, else null */
  proxiedBy: string | null;
  /** where the client connected to (Ferry's listener, or the proxy's as its header says) */
  destination: Endpoint;
  /** tenant labels from "user?key=value" or the ferry_labels connection attribute */
  labels: Record<string, string>;
}

/** A handshake failure that should be reported to the client with this ERR before closing. */
export class HandshakeFailure extends Error {
  constructor(readonly error: FerryError, readonly seq: number, readonly socket: Duplex) {
    super(error.message);
  }
}

function scramble(): Buffer {
  // Printable, NUL-free bytes, as servers send: some clients treat the scramble as a C string.
  const b = randomBytes(20);
  for (let i = 0; i < 20; i++) b[i] = 0x21 + (b[i] % 0x5e);
  return b;
}

export async function clientHandshake(socket: net.Socket, ctx: HandshakeContext): Promise<AuthenticatedClient> {
  const salt = scramble();
  let caps = SERVER_CAPABILITIES;
  if (ctx.tls.context) caps |= CLIENT_SSL;
  const mariadbCaps = mariadbCapabilitiesFor(ctx.serverVersion, ctx.backendMariadbCapabilities, ctx.config.proxy.cache_metadata);
  socket.write(encodeHandshakeV10({
    protocolVersion: 10, serverVersion: ctx.serverVersion, connectionId: ctx.connectionId, authPluginData: salt,
    capabilities: caps, mariadbCapabilities: mariadbCaps, collation: UTF8MB4_GENERAL_CI, statusFlags: SERVER_STATUS_AUTOCOMMIT,
    authPluginName: NATIVE_PASSWORD,
  }));
  const peer: Endpoint = { address: ctx.local ? "localhost" : socket.remoteAddress ?? "unknown", port: socket.remotePort ?? 0 };
  const prefix = await readProxyPrefix(socket, ctx.config.proxyProtocolNetworks, peer.address);
  let conn: Duplex = socket;
  let stream = new PacketStream(conn, 1 << 20);
  if (prefix.rest.length) stream.push(prefix.rest);
  socket.resume();
  let secure = false;
  let pkt = await stream.next();
  let resp = parseResponse(pkt, conn);
  if (resp.sslRequest) {
    if (!ctx.tls.context) throw new HandshakeFailure(new FerryError(ER_HANDSHAKE_ERROR, "08S01", "refused TLS: TLS is not enabled on this listener", "client"), pkt.seq + 1, conn);
    const early = stream.detach();
    conn = await startServerTls(socket, early, ctx.tls.context);
    secure = true;
    stream = new PacketStream(conn, 1 << 20);
    pkt = await stream.next();
    resp = parseResponse(pkt, conn);
    if (resp.sslRequest) throw new HandshakeFailure(new FerryError(ER_HANDSHAKE_ERROR, "08S01", "Bad handshake: second SSL request", "client"), pkt.seq + 1, conn);
  }
  const relayed = prefix.header?.source ?? null;
  const client = relayed ?? peer;
  const host = client.address;
  const denied = (seq: number): HandshakeFailure => new HandshakeFailure(new FerryError(ER_ACCESS_DENIED_ERROR, "28000",
    `Access denied for user '${resp.username}'@'${host}' (using password: ${resp.authResponse.length ? "YES" : "NO"})`, "client"), seq, conn);
  const named = clientLabels(resp.username, resp.attributes);
  if (named.labels === null) {
    throw new HandshakeFailure(new FerryError(ER_ACCESS_DENIED_ERROR, "28000", `ferry: refused login: malformed tenant labels in '${resp.username}' (expected user?key=value,key2=value2)`, "client"), pkt.seq + 1, conn);
  }
  const user = ctx.config.users.get(named.user);
  if (!user || !user.active) throw denied(pkt.seq + 1);

  const proof = await authenticateUser({ stream, conn, user, salt, token: resp.authResponse, clientPlugin: resp.authPluginName,
    clientCapabilities: resp.capabilities, seq: pkt.seq + 1, secure, tls: ctx.tls, sha2Cache: ctx.sha2Cache, denied });
  const database = resp.capabilities & CLIENT_CONNECT_WITH_DB ? resp.database : null;
  return {
    socket: conn, user, capabilities: resp.capabilities,
    mariadbCapabilities: resp.capabilities & 1 ? 0 : resp.mariadbCapabilities & mariadbCaps, collation: resp.collation, database: database ?? user.defaultSchema,
    attributes: resp.attributes, stage1: proof.stage1, password: proof.password, nextSeq: proof.seq, leftover: stream.detach(), secure,
    clientAddr: host, labels: named.labels, client, proxiedBy: relayed ? peer.address : null,
    destination: prefix.header?.destination ?? { address: socket.localAddress ?? "", port: socket.localPort ?? 0 },
  };
}

export interface AuthExchange {
  stream: PacketStream;
  conn: Duplex;
  user: UserConfig;
  salt: Buffer;
  /** the client's first answer, computed for clientPlugin */
  token: Buffer;
  clientPlugin: string | null;
  clientCapabilities: number;
  /** sequence id of Ferry's next packet */
  seq: number;
  secure: boolean;
  tls: TlsMaterial;
  sha2Cache: Set<string>;
  denied(seq: number): HandshakeFailure;
}

export interface AuthProof {
  stage1: Buffer | null;
  password: string | null;
  /** sequence id for the final OK */
  seq: number;
}

/** Verifies a client's credentials for the user's plugin, switching plugin when the client used another. */
export async function authenticateUser(x: AuthExchange): Promise<AuthProof> {
  const { stream, conn, user, salt } = x;
  const wanted = user.authPlugin;
  let token = x.token;
  let seq = x.seq;
  if (x.clientPlugin !== wanted) {
    if (!(x.clientCapabilities & CLIENT_PLUGIN_AUTH)) {
      if (wanted !== NATIVE_PASSWORD) throw new HandshakeFailure(new FerryError(ER_NOT_SUPPORTED_AUTH_MODE, "08004", "Client does not support authentication protocol requested by server; consider upgrading MySQL client", "client"), seq, conn);
    } else {
      conn.write(encodeAuthSwitchRequest(seq, wanted, salt));
      const p = await stream.next();
      token = p.payload;
      seq = p.seq + 1;
    }
  }
  if (wanted === NATIVE_PASSWORD) {
    const stage1 = verifyNativeToken(token, salt, user.nativeStage2);
    if (!stage1) throw x.denied(seq);
    return { stage1: stage1.length ? stage1 : null, password: user.password, seq };
  }
  const cacheKey = `${user.name}\0${user.password}`;
  const pw = user.password ?? "";
  if (pw === "" && token.length === 0) {
    // empty password: nothing more to exchange
  } else if (x.sha2Cache.has(cacheKey)) {
    if (!verifySha2Token(token, salt, pw)) throw x.denied(seq);
    conn.write(encodeAuthMoreData(seq++, Buffer.from([FAST_AUTH_SUCCESS])));
  } else {
    // Like the server after a restart: the first login of a user takes the full exchange.
    conn.write(encodeAuthMoreData(seq, Buffer.from([PERFORM_FULL_AUTHENTICATION])));
    let p = await stream.next();
    let sent: string;
    if (x.secure) {
      sent = clearPassword(p.payload);
    } else {
      if (p.payload.length === 1 && p.payload[0] === REQUEST_PUBLIC_KEY) {
        conn.write(encodeAuthMoreData(p.seq + 1, Buffer.from(x.tls.rsaPublicKey, "latin1")));
        p = await stream.next();
      }
      try {
        sent = sha2DecryptPassword(p.payload, salt, x.tls.rsaPrivateKey);
      } catch {
        throw x.denied(p.seq + 1);
      }
    }
    seq = p.seq + 1;
    if (sent !== pw) throw x.denied(seq);
    x.sha2Cache.add(cacheKey);
  }
  return { stage1: pw ? nativeStage1(pw) : null, password: pw, seq };
}

function parseResponse(pkt: Packet, conn: Duplex): HandshakeResponse {
  try {
    return decodeHandshakeResponse(pkt.payload);
  } catch (e) {
    throw new HandshakeFailure(new FerryError(ER_HANDSHAKE_ERROR, "08S01", `Bad handshake: ${(e as Error).message}`, "client"), pkt.seq + 1, conn);
  }
}

function startServerTls(socket: net.Socket, early: Buffer, context: tls.SecureContext): Promise<tls.TLSSocket> {
  // Bytes of the TLS ClientHello may already have been read with the SSLRequest: feed them first.
  const transport: Duplex = early.length ? prepend(socket, early) : socket;
  return new Promise((resolve, reject) => {
    const t = new tls.TLSSocket(transport, { isServer: true, secureContext: context });
    t.once("secure", () => resolve(t));
    t.once("error", reject);
    t.once("close", () => reject(new Error("connection closed during TLS handshake")));
  });
}

function prepend(socket: net.Socket, head: Buffer): Duplex {
  const d = new Duplex({
    read() { socket.resume(); },
    write(chunk, _enc, cb) { socket.write(chunk, cb); },
    final(cb) { socket.end(); cb(); },
    destroy(err, cb) { socket.destroy(err ?? undefined); cb(err); },
  });
  d.push(head);
  socket.on("data", (c: Buffer) => { if (!d.push(c)) socket.pause(); });
  socket.on("end", () => d.push(null));
  socket.on("error", (e) => d.destroy(e));
  return d;
}
