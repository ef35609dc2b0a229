// Accepts client connections on a TCP address and, optionally, a Unix socket: enforces
// max_connections (across both) and the handshake timeout, runs the connection phase, and hands
// authenticated clients to a session factory.

import { existsSync, lstatSync, unlinkSync } from "node:fs";
import net from "node:net";
import type { Logger } from "pino";
import type { RuntimeConfig } from "../config/runtime-config.js";
import { ER_CON_COUNT_ERROR, ER_HANDSHAKE_ERROR } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";
import { encodeErr } from "../protocol/packets.js";
import { clientHandshake, HandshakeFailure, type AuthenticatedClient } from "./client-handshake.js";
import type { TlsMaterial } from "./tls-material.js";
import { stackOf } from "../lib/error-stack.js";

export interface ListenerDeps {
  config(): RuntimeConfig;
  tls: TlsMaterial;
  log: Logger;
  serverVersion(): string;
  /** the MariaDB extended capabilities the backend whose version Ferry announces offers (0 when unknown) */
  backendMariadbCapabilities(): number;
  allocateId(): number;
  sha2Cache: Set<string>;
  /** hands over a logged-in client; `release` must be called once when its connection ends */
  onAuthenticated(id: number, client: AuthenticatedClient, release: () => void): void;
  /**
   * With several Ferry processes: may pass an admitted connection, still unread, to another
   * process (true), which calls `release` when it ends; false: this process serves it.
   */
  handOff?(socket: net.Socket, local: boolean, release: () => void): boolean;
}

export class ClientListener {
  private readonly servers: net.Server[] = [];
  private open = 0;
  private readonly deps: ListenerDeps;

  constructor(deps: ListenerDeps) {
    this.deps = deps;
  }

  get connections(): number {
    return this.open;
  }

  async listen(host: string, port: number): Promise<net.AddressInfo> {
    // A connection passed on to another process must not have been read from here (a PROXY header comes first).
    const server = net.createServer({ noDelay: true, pauseOnConnect: this.deps.handOff !== undefined }, (socket) => this.accept(socket, false));
    await listenOn(server, { host, port, backlog: 1024 });
    this.servers.push(server);
    return server.address() as net.AddressInfo;
  }

  /**
   * Listens on a Unix socket too, readable and writable by every local user (as the server's
   * socket; file permissions of its directory decide). A socket file left by a process that died
   * is replaced; one a live process listens on is refused.
   */
  async listenSocket(path: string): Promise<void> {
    if (existsSync(path)) {
      if (!lstatSync(path).isSocket()) throw new Error(`ferry: refused proxy.socket ${path}: the path exists and is not a socket`);
      if (await answers(path)) throw new Error(`ferry: refused proxy.socket ${path}: another process is listening on it`);
      unlinkSync(path);
    }
    const server = net.createServer({ pauseOnConnect: this.deps.handOff !== undefined }, (socket) => this.accept(socket, true));
    await listenOn(server, { path, backlog: 1024, readableAll: true, writableAll: true });
    this.servers.push(server);
  }

  close(): Promise<void> {
    return Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(() => undefined);
  }

  private accept(socket: net.Socket, local: boolean): void {
    const cfg = this.deps.config();
    socket.on("error", () => undefined); // reported where the connection is handled
    if (this.open >= cfg.proxy.max_connections) {
      socket.end(encodeErr(0, ER_CON_COUNT_ERROR, "08004", `ferry: Too many connections (max_connections=${cfg.proxy.max_connections})`));
      // Read on (an accepted-paused socket would never see the client's FIN), and give up on it soon.
      socket.resume();
      setTimeout(() => socket.destroy(), 500).unref();
      this.deps.log.warn({ client: socket.remoteAddress }, "refused connection: max_connections reached");
      return;
    }
    // Counted until the session ends (a session may re-create the socket object, so not on its "close").
    this.open++;
    // Called once: by serve(), or by the process the connection was passed to.
    const release = (): void => {
      this.open--;
    };
    if (this.deps.handOff?.(socket, local, release)) return;
    this.serve(socket, local, release);
  }

  /** Runs the connection phase of an admitted connection: `onEnd` is called once when it ends. */
  serve(socket: net.Socket, local: boolean, onEnd: () => void): void {
    // The session and the failure paths below may both report the end.
    let ended = false;
    const release = (): void => {
      if (ended) return;
      ended = true;
      onEnd();
    };
    const cfg = this.deps.config();
    socket.on("error", () => undefined); // reported where the connection is handled
    // The option lives on the socket itself: it stays when a session re-wraps the handle or adds TLS.
    if (cfg.proxy.tcp_keepalive_ms > 0) socket.setKeepAlive(true, cfg.proxy.tcp_keepalive_ms);
    const id = this.deps.allocateId();
    const timer = setTimeout(() => {
      this.deps.log.info({ session: id, client: socket.remoteAddress }, "handshake timed out");
      socket.destroy();
    }, cfg.proxy.handshake_timeout_ms);
    socket.once("close", () => clearTimeout(timer));
    clientHandshake(socket, { connectionId: id, serverVersion: this.deps.serverVersion(), backendMariadbCapabilities: this.deps.backendMariadbCapabilities(), config: cfg, tls: this.deps.tls, sha2Cache: this.deps.sha2Cache, local })
      .then((client) => {
        clearTimeout(timer);
        if (socket.destroyed) return release();
        try {
          this.deps.onAuthenticated(id, client, release);
        } catch (e) {
          // A fault in Ferry's own code: this client alone is let go (see session/internal-error.ts).
          this.deps.log.error({ session: id, err: stackOf(e) }, "internal error while starting the session; closing it");
          client.socket.destroy();
          socket.destroy();
          release();
        }
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

function listenOn(server: net.Server, options: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

/** Whether something accepts connections on the Unix socket at path. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(path, () => {
      probe.destroy();
      resolve(true);
    });
    probe.on("error", () => resolve(false));
  });
}
