// What a session does with each client command, decided on its first packet: forward it (and
// with which response shape), route it to another hostgroup first, answer it itself (KILL,
// COM_CHANGE_USER, COM_QUIT), or refuse it with an error while the session goes on.

import {
  COM_CHANGE_USER, COM_CREATE_DB, COM_DEBUG, COM_DROP_DB, COM_FIELD_LIST, COM_INIT_DB, COM_PING, COM_PROCESS_INFO,
  COM_PROCESS_KILL, COM_QUERY, COM_QUIT, COM_REFRESH, COM_RESET_CONNECTION, COM_SET_OPTION, COM_SHUTDOWN, COM_STATISTICS,
  COM_STMT_BULK_EXECUTE, COM_STMT_CLOSE, COM_STMT_EXECUTE, COM_STMT_FETCH, COM_STMT_PREPARE, COM_STMT_RESET,
  COM_STMT_SEND_LONG_DATA, ER_NET_PACKETS_OUT_OF_ORDER, ER_UNKNOWN_COM_ERROR, HEADER_SIZE,
} from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { encodeErr } from "../protocol/packets.js";
import { Shape } from "../protocol/response-scanner.js";
import { changeUser, killSession } from "./ferry-commands.js";
import { switchHostgroup } from "./hostgroup-switch.js";
import { refuse, refuseMalformed } from "./command-refusal.js";
import { dispatchStatementCommand, hasNoResponse } from "./prepared-commands.js";
import type { Session } from "./session.js";
import { analyzeStatements, mayHaveEffects } from "./statement-effects.js";
import { REFUSED, REFUSED_LARGE, routeCommand } from "./statement-routing.js";

/**
 * Decides what to do with a command whose header starts at buf[pos]; the first packet's payload
 * (or a prefix of it) is in buf before `end`. Returns the position in buf after what it consumed.
 */
export function dispatchCommand(s: Session, buf: Buffer, pos: number, end: number, len: number, seq: number): number {
  const p = pos + HEADER_SIZE;
  const avail = Math.min(len, end - p);
  if (seq !== 0) {
    s.fatal(new FerryError(ER_NET_PACKETS_OUT_OF_ORDER, "08S01", `refused packet: sequence id ${seq} where a new command must start at 0`, "client"), seq + 1);
    return end;
  }
  if (len === 0) {
    s.fatal(new FerryError(ER_UNKNOWN_COM_ERROR, "08S01", "refused packet: empty command packet", "client"), 1);
    return end;
  }
  const cmd = buf[p];
  s.command.begin(cmd);
  s.tracker.beforeCommand();
  if (s.failNext !== null) return answerFailed(s, cmd, p, len, avail);
  if (s.routeDecided) {
    s.routeDecided = false;
  } else {
    const route = s.route;
    route.timeoutMs = 0;
    route.prepareHostgroup = s.homeHostgroup;
    if (s.hostgroup !== s.homeHostgroup || s.deps.config().queryRules.length > 0) {
      const hg = routeCommand(s, route, cmd, buf, p, avail, len);
      if (hg === REFUSED) return skipRest(s, p, len, avail);
      if (hg === REFUSED_LARGE) {
        s.log.info({ bytes: len }, "closing session: a statement larger than Ferry assembles was refused by a query rule");
        s.close();
        return end;
      }
      if (hg !== s.hostgroup) {
        startSwitch(s, hg, buf.subarray(pos, end));
        return end;
      }
    }
  }
  switch (cmd) {
    case COM_QUERY:
      if (mayHaveEffects(buf, p + 1, p + avail)) {
        const fx = analyzeStatements(buf.toString("utf8", p + 1, p + avail));
        s.command.effects = fx;
        if (fx.kill && len === avail) {
          const k = fx.kill;
          s.loop.runFerryCommand(() => killSession(s, k.id, k.query));
          return p + len;
        }
      }
      return s.loop.forwardCommand(buf, pos, end, len, Shape.Result);
    case COM_STMT_EXECUTE: case COM_STMT_BULK_EXECUTE: case COM_STMT_FETCH: case COM_STMT_RESET: case COM_STMT_CLOSE:
    case COM_STMT_SEND_LONG_DATA:
      return dispatchStatementCommand(s, cmd, buf, pos, end, len, avail);
    case COM_STMT_PREPARE:
      // A statement Ferry saw only a prefix of cannot be re-prepared elsewhere: kept as null (pins).
      s.command.text = len === avail ? buf.toString("utf8", p + 1, p + avail) : null;
      if (s.command.text !== null && mayHaveEffects(buf, p + 1, p + avail)) s.command.preparedEffects = analyzeStatements(s.command.text);
      return s.loop.forwardCommand(buf, pos, end, len, Shape.Prepare);
    case COM_INIT_DB:
      s.command.text = buf.toString("utf8", p + 1, p + avail);
      return s.loop.forwardCommand(buf, pos, end, len, Shape.Simple);
    case COM_PING: case COM_SET_OPTION: case COM_RESET_CONNECTION: case COM_DEBUG: case COM_REFRESH:
    case COM_CREATE_DB: case COM_DROP_DB: case COM_SHUTDOWN:
      return s.loop.forwardCommand(buf, pos, end, len, Shape.Simple);
    case COM_FIELD_LIST:
      return s.loop.forwardCommand(buf, pos, end, len, Shape.FieldList);
    case COM_STATISTICS:
      return s.loop.forwardCommand(buf, pos, end, len, Shape.Raw);
    case COM_PROCESS_INFO:
      return s.loop.forwardCommand(buf, pos, end, len, Shape.Result);
    case COM_QUIT:
      s.close();
      return end;
    case COM_PROCESS_KILL: {
      if (avail < 5) return refuseMalformed(s, cmd, p, len, avail, "too short to hold a connection id");
      const target = buf.readUInt32LE(p + 1);
      s.loop.runFerryCommand(() => killSession(s, target, false));
      return p + len;
    }
    case COM_CHANGE_USER: {
      if (len !== avail) return refuse(s, cmd, p, len, avail, ER_UNKNOWN_COM_ERROR, "08S01", "packet over 1 MiB");
      const payload = Buffer.from(buf.subarray(p, p + len));
      s.loop.runFerryCommand(() => changeUser(s, payload));
      return p + len;
    }
    default:
      return refuse(s, cmd, p, len, avail, ER_UNKNOWN_COM_ERROR, "08S01", "not supported through Ferry");
  }
}

/** A statement a query rule refused (its error was sent): skip its bytes; the session stays usable. */
function skipRest(s: Session, p: number, len: number, avail: number): number {
  s.loop.framing.expect(len, avail);
  return p + avail;
}

/** Answers a held command with the error that stopped its preparation, and skips it. */
function answerFailed(s: Session, cmd: number, p: number, len: number, avail: number): number {
  const err = s.failNext!;
  s.failNext = null;
  s.routeDecided = false;
  const noResponse = hasNoResponse(cmd);
  // The rest of a command larger than what arrived cannot be skipped reliably: then the session ends.
  if (s.loop.framing.expect(len, avail)) {
    s.fatal(err, noResponse ? -1 : 1);
    return p + avail;
  }
  if (!noResponse) s.client.write(encodeErr(1, err.errno, err.sqlState, err.message));
  return p + avail;
}

/** The command runs in another hostgroup: change connections first, then run it there. */
function startSwitch(s: Session, hostgroup: number, command: Buffer): void {
  s.loop.holdWhile(command, switchHostgroup(s, hostgroup).catch((e: Error) => {
    s.log.warn({ hostgroup, err: e.message }, "could not reach the routed hostgroup; the statement runs where the session is");
  }));
}
