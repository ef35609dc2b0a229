// Commands Ferry answers itself instead of forwarding: KILL (translated to the backend connection
// that serves the target session) and COM_CHANGE_USER (re-authenticated by Ferry).

import { randomBytes } from "node:crypto";
import type { ServerConfig } from "../config/runtime-config.js";
import {
  CLIENT_CONNECT_ATTRS, CLIENT_PLUGIN_AUTH, CLIENT_SECURE_CONNECTION, COM_QUERY, ER_ACCESS_DENIED_ERROR,
  ER_KILL_DENIED_ERROR, ER_NO_SUCH_THREAD, ERR_HEADER, SERVER_STATUS_AUTOCOMMIT,
} from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { packetStream } from "../backend/backend-connection.js";
import { decodeErr, encodeCommand, encodeErr, encodeOk } from "../protocol/packets.js";
import { PacketReader } from "../protocol/reader.js";
import { authenticateUser, HandshakeFailure } from "../frontend/client-handshake.js";
import { clientLabels } from "../frontend/tenant-labels.js";
import { homeHostgroup } from "../router/router.js";
import { connectTo, openBackend } from "./backend-login.js";
import type { Session } from "./session.js";
import type { Killable, KillOutcome, KillRequest, SessionRegistry } from "./registry.js";
import type { Logger } from "pino";
import { userLimitError, userSlot } from "./user-limit.js";

const NAMES: Record<number, string> = {
  0x00: "COM_SLEEP", 0x01: "COM_QUIT", 0x02: "COM_INIT_DB", 0x03: "COM_QUERY", 0x04: "COM_FIELD_LIST", 0x05: "COM_CREATE_DB",
  0x06: "COM_DROP_DB", 0x07: "COM_REFRESH", 0x08: "COM_SHUTDOWN", 0x09: "COM_STATISTICS", 0x0a: "COM_PROCESS_INFO",
  0x0b: "COM_CONNECT", 0x0c: "COM_PROCESS_KILL", 0x0d: "COM_DEBUG", 0x0e: "COM_PING", 0x0f: "COM_TIME",
  0x10: "COM_DELAYED_INSERT", 0x11: "COM_CHANGE_USER", 0x12: "COM_BINLOG_DUMP", 0x13: "COM_TABLE_DUMP", 0x14: "COM_CONNECT_OUT",
  0x15: "COM_REGISTER_SLAVE", 0x16: "COM_STMT_PREPARE", 0x17: "COM_STMT_EXECUTE", 0x18: "COM_STMT_SEND_LONG_DATA",
  0x19: "COM_STMT_CLOSE", 0x1a: "COM_STMT_RESET", 0x1b: "COM_SET_OPTION", 0x1c: "COM_STMT_FETCH", 0x1d: "COM_DAEMON",
  0x1e: "COM_BINLOG_DUMP_GTID", 0x1f: "COM_RESET_CONNECTION", 0xfa: "COM_STMT_BULK_EXECUTE",
};

export function commandName(cmd: number): string {
  return `0x${cmd.toString(16).padStart(2, "0")}${NAMES[cmd] ? ` (${NAMES[cmd]})` : ""}`;
}

/** Runs one statement on a fresh connection to a server as the session's user (KILL must not queue behind the victim). */
export async function runOnServer(s: Session, server: ServerConfig, sql: string): Promise<void> {
  const conn = await connectTo(s, server, null);
  try {
    const stream = packetStream(conn.socket, conn.reader);
    if (conn.leftover.length) throw new Error("unexpected data after login");
    conn.socket.write(encodeCommand(COM_QUERY, sql));
    const p = await stream.next();
    if (p.payload[0] === ERR_HEADER) {
      const e = decodeErr(p.payload);
      // 1094: the thread already ended, which is what KILL wanted.
      if (e.errno !== ER_NO_SUCH_THREAD) throw new FerryError(e.errno, e.sqlState, e.message, "backend");
    }
  } finally {
    conn.socket.destroy();
  }
}

export async function killSession(s: Session, id: number, query: boolean): Promise<Buffer> {
  const { registry, remote } = s.deps;
  const request = (by: KillRequest["by"], server: string | null = null): KillRequest => ({ id, query, user: s.userName, by, server });
  const ask = async (req: KillRequest): Promise<Reached | null> => {
    if (!remote) return null;
    const r = await remote.kill(req);
    return r.result === "unknown" ? null : r;
  };
  // Ferry's own ids first, wherever the session lives; then backend thread ids, on the killer's
  // own server first (thread ids repeat across servers), here before in Ferry's other processes.
  let target = registry.byId(id);
  let elsewhere: Reached | null = null;
  if (!target && !registry.owns(id)) elsewhere = await ask(request("id"));
  const own = s.backendAddress;
  if (!target && !elsewhere && own !== null) {
    target = registry.byThreadOn(id, own);
    if (!target) elsewhere = await ask(request("thread", own));
  }
  if (!target && !elsewhere) {
    target = registry.byThreadId(id);
    if (!target) elsewhere = await ask(request("thread"));
  }
  if (elsewhere) return killAnswer(s, elsewhere);
  if (!target) return encodeErr(1, ER_NO_SUCH_THREAD, "HY000", `ferry: Unknown thread id: ${id}`);
  if (target === s) {
    if (query) return encodeOk(1, { statusFlags: s.tracker.statusFlags }, s.auth.capabilities);
    setImmediate(() => s.fatal(new FerryError(1927, "70100", "Connection was killed"), -1));
    return encodeErr(1, 1927, "70100", "ferry: Connection was killed");
  }
  const outcome = await killHere(target, request("id"));
  if (outcome.result === "killed") s.deps.log.info({ session: s.id, target: target.id, query }, "KILL");
  return killAnswer(s, outcome);
}

/** KILL asked for by a session of another Ferry process. */
export async function killForRemote(registry: SessionRegistry<Killable>, log: Logger, req: KillRequest): Promise<KillOutcome> {
  const target = req.by === "id" ? registry.byId(req.id) : req.server !== null ? registry.byThreadOn(req.id, req.server) : registry.byThreadId(req.id);
  if (!target) return { result: "unknown" };
  const outcome = await killHere(target, req);
  if (outcome.result === "killed") log.info({ target: target.id, query: req.query, user: req.user }, "KILL from another Ferry process");
  return outcome;
}

async function killHere(target: Killable, req: KillRequest): Promise<Reached> {
  if (target.userName !== req.user) return { result: "error", errno: ER_KILL_DENIED_ERROR, sqlState: "HY000", message: `ferry: You are not owner of thread ${req.id}` };
  try {
    await target.kill(req.query);
  } catch (e) {
    // The killer's own session is fine: it answers with the failure instead of closing.
    const err = e instanceof FerryError ? e : new FerryError(1105, "HY000", (e as Error).message);
    return { result: "error", errno: err.errno, sqlState: err.sqlState, message: `ferry: KILL ${req.query ? "QUERY " : ""}${req.id} failed: ${err.message.replace(/^ferry: /, "")}` };
  }
  return { result: "killed", target: target.id };
}

type Reached = Exclude<KillOutcome, { result: "unknown" }>;

function killAnswer(s: Session, o: Reached): Buffer {
  if (o.result === "error") return encodeErr(1, o.errno, o.sqlState, o.message);
  return encodeOk(1, { statusFlags: s.tracker.statusFlags }, s.auth.capabilities);
}

/** COM_CHANGE_USER: authenticate the new user, log in to a backend as that user, start a fresh session state. */
export async function changeUser(s: Session, payload: Buffer): Promise<Buffer> {
  const caps = s.auth.capabilities;
  const r = new PacketReader(payload, 1);
  let username: string, token: Buffer, database: string | null = null, collation = s.auth.collation, plugin: string | null = null;
  const attributes = new Map<string, string>();
  try {
    username = r.nulString();
    token = caps & CLIENT_SECURE_CONNECTION ? r.bytes(r.u8()) : r.nulBytes();
    if (r.remaining) database = r.nulString() || null;
    if (r.remaining >= 2) collation = r.u16() & 0xff;
    if (caps & CLIENT_PLUGIN_AUTH && r.remaining) plugin = r.nulString();
    if (caps & CLIENT_CONNECT_ATTRS && r.remaining) {
      const end = r.pos + r.lenenc();
      while (r.pos < end) attributes.set(r.lenencString(), r.lenencString());
    }
  } catch (e) {
    throw new FerryError(1043, "08S01", `refused COM_CHANGE_USER: malformed packet (${(e as Error).message})`, "client");
  }
  const host = s.auth.clientAddr;
  const named = clientLabels(username, attributes);
  const user = named.labels === null ? undefined : s.deps.config().users.get(named.user);
  const stream = s.loop.input.openPacketStream();
  const denied = (seq: number) => new HandshakeFailure(new FerryError(ER_ACCESS_DENIED_ERROR, "28000",
    `Access denied for user '${username}'@'${host}' (using password: ${token.length ? "YES" : "NO"})`, "client"), seq, s.client);
  try {
    if (!user || !user.active) throw denied(1);
    // Always switch with a fresh salt: the token in COM_CHANGE_USER was made with the old one.
    const salt = randomBytes(20).map((b) => 0x21 + (b % 0x5e));
    const proof = await authenticateUser({
      stream, conn: s.client, user, salt: Buffer.from(salt), token, clientPlugin: `${plugin ?? ""}\0switch`, clientCapabilities: caps,
      seq: 1, secure: s.auth.secure, tls: s.deps.tls, sha2Cache: s.deps.sha2Cache, denied,
    });
    const newAuth = { ...s.auth, user, database: database ?? user.defaultSchema, collation, attributes, stage1: proof.stage1, password: proof.password, labels: named.labels ?? {} };
    const old = s.auth;
    // Another user counts toward its own users.max_connections from here; the same user keeps its place.
    const switching = user.name !== old.user.name;
    if (switching && !(await s.deps.slots.acquire(userSlot(user.name), user.maxConnections))) {
      throw new HandshakeFailure(userLimitError(user.name, user.maxConnections), proof.seq, s.client);
    }
    s.auth = newAuth;
    let backend;
    const home = homeHostgroup(s.deps.config(), user, newAuth.clientAddr, newAuth.labels);
    try {
      backend = await openBackend(s, home, newAuth.database);
    } catch (e) {
      s.auth = old;
      if (switching) s.deps.slots.release(userSlot(user.name));
      throw e;
    }
    if (switching) {
      s.releaseUserSlot();
      s.userSlot = userSlot(user.name);
    }
    const previous = s.detachBackend();
    previous?.socket.destroy();
    s.parked.dropAll();
    s.tracker.reset();
    s.tracker.role = null; // the new login's own
    s.homeHostgroup = home;
    s.tracker.schema = newAuth.database;
    s.tracker.collation = collation;
    s.attachBackend(backend);
    s.loginWaitTimeout = backend.waitTimeout;
    s.loop.input.closePacketStream(stream);
    return encodeOk(proof.seq, { statusFlags: SERVER_STATUS_AUTOCOMMIT }, caps);
  } catch (e) {
    s.loop.input.closePacketStream(stream);
    throw e;
  }
}

