// Discovery sources (control plane): DNS names polled for A/AAAA or SRV records (a Kubernetes
// headless service), and an etcd prefix watched for servers. Each source keeps the servers it
// last found; the union is folded into the next RuntimeConfig, and servers that vanish are drained
// like any server that leaves. A source that fails (DNS timeout, etcd unreachable) keeps its last
// list: only an authoritative answer ("no such name", a deleted key) removes servers.

import { promises as dns } from "node:dns";
import type { Logger } from "pino";
import type { Etcd3, Watcher } from "etcd3";
import { serverSchema, type ConfigFile, type SourcedServerEntry } from "../config/schema.js";
import { stackOf } from "../lib/error-stack.js";

export type DiscoveredServer = SourcedServerEntry;

interface Source {
  readonly name: string;
  servers: DiscoveredServer[];
  start(): void;
  stop(): void;
}

type DnsConfig = ConfigFile["discovery"]["dns"][number];
type EtcdConfig = NonNullable<ConfigFile["discovery"]["etcd"]>;

const sameList = (a: DiscoveredServer[], b: DiscoveredServer[]): boolean => JSON.stringify(a) === JSON.stringify(b);

/** A resolver answer that means "no such name or record" (the server answered): anything else is an outage. */
const noRecord = (e: unknown): boolean => {
  const code = (e as NodeJS.ErrnoException).code;
  return code === "ENOTFOUND" || code === "ENODATA";
};

class DnsSource implements Source {
  readonly name: string;
  servers: DiscoveredServer[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly resolver = new dns.Resolver({ timeout: 2000, tries: 2 });

  constructor(private readonly c: DnsConfig, private readonly changed: () => void, private readonly log: Logger) {
    this.name = `dns:${c.name}`;
    if (c.resolvers.length) this.resolver.setServers(c.resolvers);
  }

  start(): void {
    const tick = (): void => {
      void this.poll().catch((e: unknown) => {
        this.log.error({ source: this.name, err: stackOf(e) }, "discovery: internal error while polling; keeping the last answer");
      }).finally(() => {
        if (this.timer !== null) this.timer = setTimeout(tick, this.c.interval_ms);
      });
    };
    this.timer = setTimeout(tick, 0);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  async poll(): Promise<void> {
    let found: { host: string; port: number; weight: number }[];
    try {
      found = await this.lookup();
    } catch (e) {
      if (!noRecord(e)) {
        this.log.warn({ source: this.name, err: (e as Error).message }, "discovery: DNS lookup failed; keeping the last answer");
        return;
      }
      found = [];
    }
    const servers = found.sort((a, b) => a.host.localeCompare(b.host) || a.port - b.port).map((f) => ({
      ...serverSchema.parse({ host: f.host, port: f.port, hostgroup: this.c.hostgroup, weight: f.weight, max_replication_lag: this.c.max_replication_lag, labels: this.c.labels,
        use_ssl: this.c.use_ssl, send_proxy_protocol: this.c.send_proxy_protocol }),
      source: this.name,
    }));
    if (sameList(servers, this.servers)) return;
    this.log.info({ source: this.name, servers: servers.map((s) => `${s.host}:${s.port}`) }, "discovery: servers changed");
    this.servers = servers;
    this.changed();
  }

  private async lookup(): Promise<{ host: string; port: number; weight: number }[]> {
    const c = this.c;
    if (c.type === "A") return (await this.resolver.resolve4(c.name)).map((host) => ({ host, port: c.port, weight: c.weight }));
    if (c.type === "AAAA") return (await this.resolver.resolve6(c.name)).map((host) => ({ host, port: c.port, weight: c.weight }));
    const records = await this.resolver.resolveSrv(c.name);
    // Only the best (lowest) priority serves; SRV weights become server weights.
    const best = Math.min(...records.map((r) => r.priority));
    return Promise.all(records.filter((r) => r.priority === best).map(async (r) => {
      const host = await this.addressOf(r.name);
      return { host, port: r.port, weight: r.weight > 0 ? r.weight : c.weight };
    }));
  }

  /**
   * An SRV target's address: its A record, else its AAAA record, else the name itself (left to
   * the system resolver when connecting). A lookup that fails for any other reason than "no such
   * record" fails the whole poll, so an outage keeps the last answer instead of changing it.
   */
  private async addressOf(name: string): Promise<string> {
    for (const lookup of [(n: string) => this.resolver.resolve4(n), (n: string) => this.resolver.resolve6(n)]) {
      try {
        const found = await lookup(name);
        if (found.length) return found[0];
      } catch (e) {
        if (!noRecord(e)) throw e;
      }
    }
    return name;
  }
}

/** "host:port" → [host, port]; IPv6 in brackets. */
function splitAddress(addr: string): [string, number] | null {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(addr);
  return m ? [m[1], Number(m[2])] : null;
}

class EtcdSource implements Source {
  readonly name = "etcd";
  servers: DiscoveredServer[] = [];
  private client: Etcd3 | null = null;
  private watcher: Watcher | null = null;
  private readonly keys = new Map<string, string>();
  private retry: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly c: EtcdConfig, private readonly changed: () => void, private readonly log: Logger) {}

  private get prefix(): string {
    return this.c.layout === "tidb" ? "/topology/tidb/" : `${this.c.prefix.replace(/\/$/, "")}/servers/`;
  }

  start(): void {
    // The etcd client (gRPC) is loaded only when an etcd source is configured.
    void import("etcd3").then(({ Etcd3: Client }) => {
      if (this.stopped) return;
      this.client = new Client({ hosts: this.c.endpoints, ...(this.c.username ? { auth: { username: this.c.username, password: this.c.password ?? "" } } : {}) });
      return this.connect();
    }).catch((e: unknown) => {
      this.log.error({ source: this.name, err: stackOf(e) }, "discovery: could not start the etcd client");
    });
  }

  private async connect(): Promise<void> {
    if (this.stopped || !this.client) return;
    try {
      // Watch first, then read: a change between the two is seen by the watch.
      const w = await this.client.watch().prefix(this.prefix).create();
      w.on("put", (kv) => { this.keys.set(kv.key.toString(), kv.value.toString()); this.safeRebuild(); });
      w.on("delete", (kv) => { this.keys.delete(kv.key.toString()); this.safeRebuild(); });
      w.on("error", (e: Error) => this.log.warn({ source: this.name, err: e.message }, "discovery: etcd watch error"));
      this.watcher = w;
      const all = await this.client.getAll().prefix(this.prefix).strings();
      this.keys.clear();
      for (const [k, v] of Object.entries(all)) this.keys.set(k, v);
      this.rebuild();
    } catch (e) {
      this.log.warn({ source: this.name, err: (e as Error).message }, "discovery: etcd unreachable; keeping the last answer, retrying");
      await this.watcher?.cancel().catch(() => undefined);
      this.watcher = null;
      this.retry = setTimeout(() => void this.connect(), 2000);
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    void this.watcher?.cancel().catch(() => undefined);
    this.client?.close();
  }

  /** rebuild() from a watch event: a fault is logged, not thrown into the etcd client. */
  private safeRebuild(): void {
    try {
      this.rebuild();
    } catch (e) {
      this.log.error({ source: this.name, err: stackOf(e) }, "discovery: internal error on an etcd change; keeping the last answer");
    }
  }

  private rebuild(): void {
    const servers: DiscoveredServer[] = [];
    for (const [key, value] of this.keys) {
      const entry = this.parse(key.slice(this.prefix.length), value);
      if (entry) servers.push(entry);
    }
    servers.sort((a, b) => a.hostgroup - b.hostgroup || a.host.localeCompare(b.host) || a.port - b.port);
    if (sameList(servers, this.servers)) return;
    this.log.info({ source: this.name, servers: servers.map((s) => `${s.hostgroup}/${s.host}:${s.port}`) }, "discovery: servers changed");
    this.servers = servers;
    this.changed();
  }

  /** One key below the prefix: "<hostgroup>/<host:port>" (ferry) or "<host:port>/info" (tidb). */
  private parse(rest: string, value: string): DiscoveredServer | null {
    const parts = rest.split("/");
    let hostgroup: number, addr: string, extra: Record<string, unknown> = {};
    try {
      if (this.c.layout === "tidb") {
        if (parts.length !== 2 || parts[1] !== "info") return null;
        addr = parts[0];
        // TiDB keeps <addr>/ttl alive under a lease while it runs; without it the server is gone.
        if (!this.keys.has(`${this.prefix}${addr}/ttl`)) return null;
        hostgroup = this.c.hostgroup;
        const info = JSON.parse(value) as { labels?: Record<string, string> };
        if (info.labels) extra = { labels: info.labels };
      } else {
        if (parts.length !== 2 || !/^\d+$/.test(parts[0])) return null;
        hostgroup = Number(parts[0]);
        addr = parts[1];
        extra = value.trim() ? (JSON.parse(value) as Record<string, unknown>) : {};
      }
      const hp = splitAddress(addr);
      if (!hp) throw new Error(`"${addr}" is not host:port`);
      const parsed = serverSchema.safeParse({ ...extra, host: hp[0], port: hp[1], hostgroup });
      if (!parsed.success) throw new Error(parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "));
      return { ...parsed.data, source: this.name };
    } catch (e) {
      this.log.warn({ source: this.name, key: this.prefix + rest, err: (e as Error).message }, "discovery: ignoring an etcd entry");
      return null;
    }
  }
}

export class Discovery {
  private sources: Source[] = [];
  private signature = "";

  constructor(private readonly onChange: () => void, private readonly log: Logger) {}

  /** (Re)starts the sources when their configuration changed. */
  configure(cfg: ConfigFile["discovery"]): void {
    const sig = JSON.stringify(cfg);
    if (sig === this.signature) return;
    this.signature = sig;
    const had = this.sources.length > 0;
    this.stop();
    this.sources = cfg.dns.map((d) => new DnsSource(d, this.onChange, this.log));
    if (cfg.etcd) this.sources.push(new EtcdSource(cfg.etcd, this.onChange, this.log));
    for (const s of this.sources) s.start();
    if (had && this.sources.length === 0) this.onChange(); // their servers are gone
  }

  servers(): DiscoveredServer[] {
    return this.sources.flatMap((s) => s.servers);
  }

  stop(): void {
    for (const s of this.sources) s.stop();
    this.sources = [];
  }
}
