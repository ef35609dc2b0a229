// The immutable, versioned snapshot the data plane reads at each decision point (DESIGN §1).

import { createHash } from "node:crypto";
import { parseNativeHash } from "../protocol/auth/native-password.js";
import { parseCidr, type Cidr } from "../lib/cidr.js";
import { galeraHostgroups, placeGaleraSet } from "./galera-hostgroups.js";
import { isSocketPath, serverAddress } from "./address.js";
import type { ConfigFile, ServerConfigEntry, ServerStatus, SourcedServerEntry } from "./schema.js";

export interface ServerConfig {
  /** "host:port" or a Unix socket's path (schema.ts serverAddress), unique across hostgroups for connection counting */
  readonly address: string;
  readonly host: string;
  readonly port: number;
  /** the server's Unix socket, reached instead of host and port (a `host` starting with "/") */
  readonly socketPath: string | null;
  readonly hostgroup: number;
  readonly weight: number;
  readonly status: ServerStatus;
  readonly maxConnections: number;
  readonly useSsl: boolean;
  /** CA file the server's certificate is verified against; null: TLS without verification */
  readonly sslCa: string | null;
  /** seconds; 0 when lag is not checked */
  readonly maxReplicationLag: number;
  readonly labels: Readonly<Record<string, string>>;
  /** where the server came from: "config", "dns:<name>", "etcd" */
  readonly source: string;
  /** why the server is not ONLINE, when the monitor decided it */
  readonly statusReason: string | null;
  /** connections to it start with a PROXY protocol v2 header */
  readonly sendProxyProtocol: boolean;
}

export interface QueryRule {
  readonly id: number;
  readonly flagIn: number;
  readonly username: string | null;
  readonly schemaname: string | null;
  readonly clientAddr: Cidr | null;
  readonly matchDigest: RegExp | null;
  readonly matchPattern: RegExp | null;
  readonly negateMatchPattern: boolean;
  readonly flagOut: number | null;
  readonly apply: boolean;
  readonly destinationHostgroup: number | null;
  readonly errorMsg: string | null;
  readonly timeoutMs: number | null;
  readonly log: boolean;
}

export interface Route {
  readonly username: string | null;
  readonly clientAddr: Cidr | null;
  readonly labels: Readonly<Record<string, string>>;
  readonly destinationHostgroup: number;
}

/**
 * What the control plane learned at run time, folded into the next snapshot: servers found by
 * discovery sources, and the monitor's verdicts (health, read_only).
 */
export interface TopologyOverlay {
  discovered: readonly SourcedServerEntry[];
  /** address → SHUNNED with a reason (the monitor never raises a server above its configured status) */
  shunned: ReadonlyMap<string, string>;
  /** address → read_only as last seen, for replication and Galera hostgroups */
  readOnly: ReadonlyMap<string, boolean>;
  /** writer hostgroup → the writers the last snapshot chose (RuntimeConfig.galeraWriters) */
  galeraWriters: ReadonlyMap<number, readonly string[]>;
}

export const EMPTY_OVERLAY: TopologyOverlay = { discovered: [], shunned: new Map(), readOnly: new Map(), galeraWriters: new Map() };

export interface UserConfig {
  readonly name: string;
  /** plaintext password, when the config holds it */
  readonly password: string | null;
  /** SHA1(SHA1(password)); null for an empty password */
  readonly nativeStage2: Buffer | null;
  readonly authPlugin: "mysql_native_password" | "caching_sha2_password";
  readonly defaultHostgroup: number;
  readonly defaultSchema: string | null;
  readonly backendUser: string;
  /** plaintext backend password, or null to reuse the client's proven SHA1(password) */
  readonly backendPassword: string | null;
  readonly maxConnections: number;
  readonly active: boolean;
  readonly transactionPersistent: boolean;
}

export interface RuntimeConfig {
  readonly version: number;
  readonly checksum: string;
  readonly proxy: ConfigFile["proxy"];
  /** proxy.proxy_protocol_networks, parsed */
  readonly proxyProtocolNetworks: readonly Cidr[];
  readonly tls: ConfigFile["tls"];
  readonly logLevel: string;
  readonly servers: readonly ServerConfig[];
  readonly users: ReadonlyMap<string, UserConfig>;
  /** active rules in rule_id order */
  readonly queryRules: readonly QueryRule[];
  /** some active rule matches on the digest: compute it per statement */
  readonly rulesNeedDigest: boolean;
  readonly routes: readonly Route[];
  readonly monitor: ConfigFile["monitor"];
  readonly balancer: ConfigFile["balancer"];
  readonly replicationHostgroups: ConfigFile["replication_hostgroups"];
  /** Galera sets' writer hostgroup → addresses of the writers chosen (galera-hostgroups.ts) */
  readonly galeraWriters: ReadonlyMap<number, readonly string[]>;
  readonly discovery: ConfigFile["discovery"];
}

let nextVersion = 1;

function server(s: ServerConfigEntry, source: string, hostgroup: number, overlay: TopologyOverlay): ServerConfig {
  const address = serverAddress(s.host, s.port);
  const shun = overlay.shunned.get(address);
  const status = s.status === "ONLINE" && shun !== undefined ? "SHUNNED" : s.status;
  return Object.freeze({
    address, host: s.host, port: s.port, socketPath: isSocketPath(s.host) ? s.host : null, hostgroup, weight: s.weight, status, maxConnections: s.max_connections, useSsl: s.use_ssl, sslCa: s.ssl_ca ?? null,
    maxReplicationLag: s.max_replication_lag, labels: Object.freeze({ ...s.labels }), source, statusReason: status === "SHUNNED" && shun !== undefined ? shun : null,
    sendProxyProtocol: s.send_proxy_protocol,
  });
}

/**
 * Configured and discovered servers, each placed in its hostgroup; for replication hostgroups the
 * monitor's read_only verdict decides: writable servers go to the writer hostgroup (and the
 * reader one too when writer_is_also_reader), read-only ones to the reader hostgroup. Galera
 * sets choose their writers (galera-hostgroups.ts).
 */
function placeServers(file: ConfigFile, overlay: TopologyOverlay): { servers: ServerConfig[]; galeraWriters: Map<number, string[]> } {
  const entries: SourcedServerEntry[] = [...file.servers.map((s) => ({ ...s, source: "config" })), ...overlay.discovered];
  const out: ServerConfig[] = [];
  const seen = new Set<string>();
  const add = (e: SourcedServerEntry, hg: number): void => {
    const key = `${hg}/${serverAddress(e.host, e.port)}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push(server(e, e.source, hg, overlay));
  };
  const galeraWriters = new Map<number, string[]>();
  const inGalera = new Set<number>();
  const findings = { shunned: (a: string) => overlay.shunned.get(a), readOnly: (a: string) => overlay.readOnly.get(a) };
  for (const set of file.galera_hostgroups) {
    for (const hg of galeraHostgroups(set)) inGalera.add(hg);
    const { placements, writers } = placeGaleraSet(set, entries, findings, overlay.galeraWriters.get(set.writer_hostgroup) ?? []);
    for (const p of placements) add(p.entry, p.hostgroup);
    galeraWriters.set(set.writer_hostgroup, writers);
  }
  for (const e of entries) {
    if (inGalera.has(e.hostgroup)) continue;
    const pair = file.replication_hostgroups.find((r) => r.writer_hostgroup === e.hostgroup || r.reader_hostgroup === e.hostgroup);
    const ro = overlay.readOnly.get(serverAddress(e.host, e.port));
    if (!pair || ro === undefined) add(e, e.hostgroup);
    else if (ro) add(e, pair.reader_hostgroup);
    else {
      add(e, pair.writer_hostgroup);
      if (pair.writer_is_also_reader) add(e, pair.reader_hostgroup);
    }
  }
  return { servers: out, galeraWriters };
}

function compileRules(file: ConfigFile): QueryRule[] {
  return file.query_rules.filter((r) => r.active).sort((a, b) => a.rule_id - b.rule_id).map((r) => {
    const flags = r.re_modifiers === "CASELESS" ? "i" : "";
    return Object.freeze({
      id: r.rule_id, flagIn: r.flag_in, username: r.username ?? null, schemaname: r.schemaname ?? null,
      clientAddr: r.client_addr ? parseCidr(r.client_addr) : null,
      matchDigest: r.match_digest ? new RegExp(r.match_digest, flags) : null,
      matchPattern: r.match_pattern ? new RegExp(r.match_pattern, flags) : null,
      negateMatchPattern: r.negate_match_pattern, flagOut: r.flag_out ?? null, apply: r.apply,
      destinationHostgroup: r.destination_hostgroup ?? null, errorMsg: r.error_msg ?? null, timeoutMs: r.timeout ?? null, log: r.log,
    });
  });
}

export function buildRuntimeConfig(file: ConfigFile, overlay: TopologyOverlay = EMPTY_OVERLAY): RuntimeConfig {
  const { servers, galeraWriters } = placeServers(file, overlay);
  const users = new Map<string, UserConfig>();
  for (const u of file.users) {
    const hashed = parseNativeHash(u.password);
    const plain = hashed ? null : u.password;
    users.set(u.name, Object.freeze({
      name: u.name,
      password: plain,
      nativeStage2: hashed ?? (plain ? createHash("sha1").update(createHash("sha1").update(plain, "utf8").digest()).digest() : null),
      authPlugin: u.auth_plugin,
      defaultHostgroup: u.default_hostgroup,
      defaultSchema: u.default_schema ?? null,
      backendUser: u.backend_user ?? u.name,
      backendPassword: u.backend_password ?? plain,
      maxConnections: u.max_connections,
      active: u.active,
      transactionPersistent: u.transaction_persistent,
    }));
  }
  const queryRules = compileRules(file);
  const routes = file.routes.map((r) => Object.freeze({
    username: r.username ?? null, clientAddr: r.client_addr ? parseCidr(r.client_addr) : null, labels: Object.freeze({ ...r.labels }), destinationHostgroup: r.destination_hostgroup,
  }));
  const checksum = createHash("sha256").update(JSON.stringify({ file, servers })).digest("hex").slice(0, 16);
  return Object.freeze({
    version: nextVersion++, checksum, proxy: file.proxy, proxyProtocolNetworks: Object.freeze(file.proxy.proxy_protocol_networks.map(parseCidr)), tls: file.tls, logLevel: file.log.level, servers: Object.freeze(servers), users,
    queryRules: Object.freeze(queryRules), rulesNeedDigest: queryRules.some((r) => r.matchDigest !== null), routes: Object.freeze(routes),
    monitor: file.monitor, balancer: file.balancer, replicationHostgroups: file.replication_hostgroups,
    galeraWriters, discovery: file.discovery,
  });
}
