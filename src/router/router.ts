// Where a new session goes: the user's default hostgroup, least connections (weighted) among
// servers that take traffic. The router only says where; the session decides when.

import type { RuntimeConfig, ServerConfig } from "../config/runtime-config.js";

export class Router {
  private readonly connections = new Map<string, number>();
  private readonly failedUntil = new Map<string, number>();

  constructor(private readonly config: () => RuntimeConfig) {}

  connectionCount(address: string): number {
    return this.connections.get(address) ?? 0;
  }

  /** Servers of a hostgroup that accept new sessions, best first. */
  candidates(hostgroup: number): ServerConfig[] {
    const now = Date.now();
    const list = this.config().servers.filter((s) =>
      s.hostgroup === hostgroup && s.status === "ONLINE" && s.weight > 0 && this.connectionCount(s.address) < s.maxConnections);
    const load = (s: ServerConfig): number => (this.connectionCount(s.address) + 1) / s.weight;
    const recentlyFailed = (s: ServerConfig): number => ((this.failedUntil.get(s.address) ?? 0) > now ? 1 : 0);
    return list.sort((a, b) => recentlyFailed(a) - recentlyFailed(b) || load(a) - load(b));
  }

  acquire(address: string): void {
    this.connections.set(address, this.connectionCount(address) + 1);
  }

  release(address: string): void {
    const n = this.connectionCount(address) - 1;
    if (n > 0) this.connections.set(address, n);
    else this.connections.delete(address);
  }

  /** A server that refused a connection goes to the back of the line for a while. */
  reportFailure(address: string, backoffMs = 2000): void {
    this.failedUntil.set(address, Date.now() + backoffMs);
  }

  reportSuccess(address: string): void {
    this.failedUntil.delete(address);
  }
}
