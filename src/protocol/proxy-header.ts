// The PROXY protocol header (versions 1 and 2), which a load balancer in front of Ferry puts ahead
// of a connection's first bytes to say whom it relays, and which Ferry can put ahead of its own
// connections to a server. Version 1 is one text line ("PROXY TCP4 src dst sport dport\r\n", at
// most 107 bytes); version 2 a 16-byte binary header (12-byte signature, version and command,
// family, length) followed by the addresses and optional TLVs, which Ferry skips.
//
// A MySQL client's first packet can never look like either: its 4-byte header would announce a
// payload of megabytes with a sequence id other than 1. The first 4 bytes decide.

import { addressBytes } from "../lib/cidr.js";

const V1_PREFIX = Buffer.from("PROXY ", "latin1");
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_MAX = 107;
const V2_FIXED = 16;

export interface Endpoint {
  address: string;
  port: number;
}

export interface ProxyHeader {
  /** bytes the header takes */
  length: number;
  /** the relayed client; null for a v1 UNKNOWN or v2 LOCAL header, or an address family Ferry does not route by */
  source: Endpoint | null;
  /** where the client connected to, when given */
  destination: Endpoint | null;
}

export class ProxyHeaderError extends Error {}

/** Whether bytes starting with buf[0, 4) begin a PROXY header (buf must hold at least 4 bytes). */
export function startsProxyHeader(buf: Buffer): boolean {
  return buf.length >= 4 && (buf.compare(V1_PREFIX, 0, 4, 0, 4) === 0 || buf.compare(V2_SIGNATURE, 0, 4, 0, 4) === 0);
}

/** The header at the start of buf, or null while more bytes are needed. Throws ProxyHeaderError when malformed. */
export function parseProxyHeader(buf: Buffer): ProxyHeader | null {
  if (buf[0] === V1_PREFIX[0]) return parseV1(buf);
  return parseV2(buf);
}

function parseV1(buf: Buffer): ProxyHeader | null {
  const limit = Math.min(buf.length, V1_MAX);
  let eol = -1;
  for (let i = 0; i + 1 < limit; i++) {
    if (buf[i] === 0x0d && buf[i + 1] === 0x0a) {
      eol = i;
      break;
    }
  }
  if (eol < 0) {
    if (buf.length >= V1_MAX) throw new ProxyHeaderError(`version 1 header without CRLF in its first ${V1_MAX} bytes`);
    return null;
  }
  if (buf.compare(V1_PREFIX, 0, V1_PREFIX.length, 0, V1_PREFIX.length) !== 0) throw new ProxyHeaderError("version 1 header does not start with \"PROXY \"");
  const fields = buf.toString("latin1", V1_PREFIX.length, eol).split(" ");
  const length = eol + 2;
  if (fields[0] === "UNKNOWN") return { length, source: null, destination: null };
  if (fields[0] !== "TCP4" && fields[0] !== "TCP6") throw new ProxyHeaderError(`version 1 header with unknown protocol "${fields[0].slice(0, 16)}"`);
  if (fields.length !== 5) throw new ProxyHeaderError(`version 1 ${fields[0]} header with ${fields.length - 1} fields, expected 4`);
  const want = fields[0] === "TCP4" ? 4 : 16;
  const source = v1Endpoint(fields[1], fields[3], want);
  const destination = v1Endpoint(fields[2], fields[4], want);
  return { length, source, destination };
}

function v1Endpoint(address: string, port: string, size: number): Endpoint {
  const bytes = /^[0-9a-fA-F.:]+$/.test(address) ? addressBytes(address) : null;
  const isV6Text = address.includes(":");
  if (!bytes || (size === 4) === isV6Text) throw new ProxyHeaderError(`version 1 header with a malformed address "${address.slice(0, 45)}"`);
  if (!/^(0|[1-9]\d{0,4})$/.test(port) || Number(port) > 65535) throw new ProxyHeaderError(`version 1 header with a malformed port "${port.slice(0, 8)}"`);
  return { address, port: Number(port) };
}

function parseV2(buf: Buffer): ProxyHeader | null {
  const have = Math.min(buf.length, V2_SIGNATURE.length);
  if (buf.compare(V2_SIGNATURE, 0, have, 0, have) !== 0) throw new ProxyHeaderError("version 2 header with a wrong signature");
  if (buf.length < V2_FIXED) return null;
  const verCmd = buf[12];
  if (verCmd >> 4 !== 2) throw new ProxyHeaderError(`version 2 header announcing version ${verCmd >> 4}`);
  const command = verCmd & 0x0f;
  if (command > 1) throw new ProxyHeaderError(`version 2 header with unknown command ${command}`);
  const length = V2_FIXED + buf.readUInt16BE(14);
  if (buf.length < length) return null;
  if (command === 0) return { length, source: null, destination: null }; // LOCAL: the proxy's own connection
  const family = buf[13] >> 4;
  const body = V2_FIXED;
  if (family === 1) {
    if (length - body < 12) throw new ProxyHeaderError("version 2 IPv4 header too short for its addresses");
    return {
      length,
      source: { address: ipv4Text(buf, body), port: buf.readUInt16BE(body + 8) },
      destination: { address: ipv4Text(buf, body + 4), port: buf.readUInt16BE(body + 10) },
    };
  }
  if (family === 2) {
    if (length - body < 36) throw new ProxyHeaderError("version 2 IPv6 header too short for its addresses");
    return {
      length,
      source: { address: ipv6Text(buf, body), port: buf.readUInt16BE(body + 32) },
      destination: { address: ipv6Text(buf, body + 16), port: buf.readUInt16BE(body + 34) },
    };
  }
  // UNSPEC or AF_UNIX: no address to route by; the connection's own address stands.
  return { length, source: null, destination: null };
}

function ipv4Text(buf: Buffer, at: number): string {
  return `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`;
}

function ipv6Text(buf: Buffer, at: number): string {
  let mapped = buf[at + 10] === 0xff && buf[at + 11] === 0xff;
  for (let i = 0; i < 10 && mapped; i++) mapped = buf[at + i] === 0;
  if (mapped) return `::ffff:${ipv4Text(buf, at + 12)}`; // as Node reports an IPv4 client on a dual-stack socket
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(buf.readUInt16BE(at + i).toString(16));
  // Shorten the longest run of zero words (RFC 5952), so the text matches what Node reports.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== "0") { i++; continue; }
    let j = i;
    while (j < 8 && words[j] === "0") j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return words.join(":");
  return `${words.slice(0, best).join(":")}::${words.slice(best + bestLen).join(":")}`;
}

/**
 * A version 2 header relaying `source` → `destination` over TCP, or a LOCAL header (the
 * connection is Ferry's own) when either is null or not an IP address. Mixed families are sent
 * as IPv6, IPv4 addresses mapped.
 */
export function encodeProxyV2(source: Endpoint | null, destination: Endpoint | null): Buffer {
  const src = source ? addressBytes(source.address) : null;
  const dst = destination ? addressBytes(destination.address) : null;
  if (!src || !dst) {
    const local = Buffer.alloc(V2_FIXED);
    V2_SIGNATURE.copy(local);
    local[12] = 0x20;
    return local;
  }
  const v4 = src.length === 4 && dst.length === 4;
  const size = v4 ? 4 : 16;
  const out = Buffer.alloc(V2_FIXED + 2 * size + 4);
  V2_SIGNATURE.copy(out);
  out[12] = 0x21;
  out[13] = v4 ? 0x11 : 0x21;
  out.writeUInt16BE(2 * size + 4, 14);
  const put = (bytes: number[], at: number): void => {
    if (bytes.length === size) out.set(bytes, at);
    else out.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...bytes], at);
  };
  put(src, V2_FIXED);
  put(dst, V2_FIXED + size);
  out.writeUInt16BE(source!.port, V2_FIXED + 2 * size);
  out.writeUInt16BE(destination!.port, V2_FIXED + 2 * size + 2);
  return out;
}
