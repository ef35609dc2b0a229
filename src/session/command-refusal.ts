// Refusing a client command: an error in place of its response, its remaining bytes skipped so
// the session can go on with the next command.

import { ER_MALFORMED_PACKET } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { encodeErr } from "../protocol/packets.js";
import { commandName } from "./ferry-commands.js";
import type { Session } from "./session.js";

/**
 * Answers a command with an error instead of running it, and skips whatever of it is still to
 * come; the session stays usable. A large refused command cannot be skipped reliably: the session
 * ends after the error. Returns the position after the bytes of it that are in the buffer.
 */
export function refuse(s: Session, cmd: number, p: number, len: number, avail: number, errno: number, sqlState: string, why: string): number {
  const err = new FerryError(errno, sqlState, `refused command ${commandName(cmd)}: ${why}`, "client");
  s.client.write(encodeErr(1, err.errno, err.sqlState, err.message));
  if (s.loop.framing.expect(len, avail)) s.fatal(err, -1);
  return p + avail;
}

/** A command packet too short for what its command must carry: refused as the server refuses it (1835). */
export function refuseMalformed(s: Session, cmd: number, p: number, len: number, avail: number, why: string): number {
  return refuse(s, cmd, p, len, avail, ER_MALFORMED_PACKET, "HY000", `malformed packet of ${len} byte${len === 1 ? "" : "s"}, ${why}`);
}
