// Accepts client connections: enforces max_connections and the handshake timeout, runs the
// connection phase, and hands authenticated clients to a session factory.

import net from "node:net";
import type { Logger } from "pino";
import type { RuntimeConfig } from "../config/runtime-config.js";
import { ER_CON_COUNT_ERROR, ER_HANDSHAKE_ERROR } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { encodeErr } from "../protocol/packets.js";
import { clientHandshake, HandshakeFailure, type AuthenticatedClient } from "./client-handshake.js";
import type { TlsMaterial } from "./tls-material.js";

export interface ListenerDeps {
  config(): RuntimeConfig;
  tls: TlsMaterial;
  log: Logger;
  serverVersion(): string;
  allocateId(): number;
  sha2Cache: Set<string>;
  /** hands over a logged-in client; `release` must be called once when its connection ends */
  onAuthenticated(id: number, client: AuthenticatedClient, release: () => void): void;
}

export class ClientListener {
  private server: net.Server;
  private open = 0;
  private readonly deps: ListenerDeps;

  constructor(deps: ListenerDeps) {
    this.deps = deps;
    this.server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
  }

  get connections(): number {
    return this.open;
  }

  listen(host: string, port: number): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen({ host, port, backlog: 1024 }, () => {
        this.server.off("error", reject);
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: net.Socket): void {
    const cfg = this.deps.config();
    socket.on("error", () => undefined); // reported where the connection is handled
    if (this.open >= cfg.proxy.max_connections) {
      socket.end(encodeErr(0, ER_CON_COUNT_ERROR, "08004", `ferry: Too many connections (max_connections=${cfg.proxy.max_connections})`));
      this.deps.log.warn({ client: socket.remoteAddress }, "refused connection: max_connections reached");
      return;
    }
    // The option lives on the socket itself: it stays when a session re-wraps the handle or adds TLS.
    if (cfg.proxy.tcp_keepalive_ms > 0) socket.setKeepAlive(true, cfg.proxy.tcp_keepalive_ms);
    // Counted until the session ends (a session may re-create the socket object, so not on its "close").
    this.open++;
    let released = false;
    const release = (): void => {
      if (!released) {
        released = true;
        this.open--;
      }
    };
    const id = this.deps.allocateId();
    const timer = setTimeout(() => {
      this.deps.log.info({ session: id, client: socket.remoteAddress }, "handshake timed out");
      socket.destroy();
    }, cfg.proxy.handshake_timeout_ms);
    socket.once("close", () => clearTimeout(timer));
    clientHandshake(socket, { connectionId: id, serverVersion: this.deps.serverVersion(), config: cfg, tls: this.deps.tls, sha2Cache: this.deps.sha2Cache })
      .then((client) => {
        clearTimeout(timer);
        if (socket.destroyed) return release();
        this.deps.onAuthenticated(id, client, release);
      }, (e: unknown) => {
        clearTimeout(timer);
        if (e instanceof HandshakeFailure) {
          this.deps.log.info({ session: id, client: socket.remoteAddress, errno: e.error.errno, err: e.error.message }, "login refused");
          if (!e.socket.destroyed) e.socket.end(encodeErr(e.seq, e.error.errno, e.error.sqlState, e.error.message));
        } else {
          const err = e instanceof FerryError ? e : new FerryError(ER_HANDSHAKE_ERROR, "08S01", `Bad handshake: ${(e as Error).message}`);
          this.deps.log.info({ session: id, client: socket.remoteAddress, err: err.message }, "handshake failed");
          if (!socket.destroyed) socket.end(encodeErr(1, err.errno, err.sqlState, err.message));
        }
        setTimeout(() => socket.destroy(), 500).unref();
        release();
      });
  }
}
