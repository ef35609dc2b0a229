// Reading the PROXY protocol header a load balancer may send ahead of a client's first packet
// (the codec is protocol/proxy-header.ts). As in MariaDB, the header is optional, and accepted only
// from the addresses in proxy.proxy_protocol_networks: any other peer could claim any address.

import type net from "node:net";
import type { Cidr } from "../lib/cidr.js";
import { ER_HANDSHAKE_ERROR, ER_HOST_NOT_PRIVILEGED } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { parseProxyHeader, ProxyHeaderError, startsProxyHeader, type ProxyHeader } from "../protocol/proxy-header.js";
import { ProtocolError } from "../protocol/reader.js";

export interface ProxyPrefix {
  /** the header, when the connection began with one */
  header: ProxyHeader | null;
  /** bytes read past the header: the start of the client's first packet */
  rest: Buffer;
}

/**
 * Reads the connection's first bytes until they show whether a PROXY header leads, and the whole
 * header when one does; `peer` is the connection's own address, which must be trusted. The socket is left paused, its "data" listener removed: the caller attaches
 * its own reader, feeds it `rest`, then resumes the socket. A header from an untrusted peer or a
 * malformed one rejects with the FerryError to answer (1130 / 1043).
 */
export function readProxyPrefix(socket: net.Socket, trusted: readonly Cidr[], peer: string): Promise<ProxyPrefix> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const finish = (): void => {
      socket.pause();
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      socket.off("error", onError);
    };
    const fail = (e: Error): void => {
      finish();
      reject(e);
    };
    const onEnd = (): void => fail(new ProtocolError("connection closed during the connection phase"));
    const onError = (e: Error): void => fail(e);
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (buf.length < 4) return;
      if (!startsProxyHeader(buf)) {
        finish();
        resolve({ header: null, rest: buf });
        return;
      }
      if (!trusted.some((c) => c.matches(peer))) {
        fail(new FerryError(ER_HOST_NOT_PRIVILEGED, "HY000", `ferry: refused PROXY protocol header from ${peer}: the address is not in proxy.proxy_protocol_networks`, "client"));
        return;
      }
      let header: ProxyHeader | null;
      try {
        header = parseProxyHeader(buf);
      } catch (e) {
        // A data handler must not throw: whatever the parser met, this client alone is refused.
        const why = e instanceof ProxyHeaderError ? e.message : `unreadable header (${(e as Error).message})`;
        fail(new FerryError(ER_HANDSHAKE_ERROR, "08S01", `ferry: refused PROXY protocol header from ${peer}: ${why}`, "client"));
        return;
      }
      if (header === null) return;
      finish();
      resolve({ header, rest: buf.subarray(header.length) });
    };
    socket.on("data", onData);
    socket.on("end", onEnd);
    socket.on("close", onEnd);
    socket.on("error", onError);
    socket.resume(); // a socket accepted paused (pauseOnConnect) does not start on a "data" listener alone
  });
}
