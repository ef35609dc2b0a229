// The TOML configuration file's schema. Every key is checked; unknown keys are refused so that a
// typo never silently becomes a default.

import { existsSync } from "node:fs";
import { z } from "zod";
import { parseCidr } from "../lib/cidr.js";
import { isSocketPath, serverAddress } from "./address.js";

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, "expected \"host:port\"");

export const serverStatus = z.enum(["ONLINE", "SHUNNED", "OFFLINE_SOFT", "OFFLINE_HARD"]);

export const serverSchema = z.object({
  /** a name, an address, or the path of the server's Unix socket (starting with "/") */
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(3306),
  hostgroup: z.number().int().min(0).default(0),
  weight: z.number().int().min(0).max(10_000_000).default(1),
  status: serverStatus.default("ONLINE"),
  max_connections: z.number().int().min(1).default(10_000),
  use_ssl: z.boolean().default(false),
  /** PEM file of the CA certificate(s) the server's certificate must chain to; with it Ferry verifies the certificate and the host name or address */
  ssl_ca: z.string().min(1).refine((f) => existsSync(f), "no such file").optional(),
  /** seconds; a reader further behind is SHUNNED by the monitor until it catches up (0: not checked) */
  max_replication_lag: z.number().int().min(0).default(0),
  labels: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/, "label keys are letters, digits, _ . -"), z.string()).default({}),
  /** start each connection to this server with a PROXY protocol v2 header naming the client (the server must trust Ferry's address) */
  send_proxy_protocol: z.boolean().default(false),
  comment: z.string().default(""),
}).strict()
  .refine((s) => s.ssl_ca === undefined || s.use_ssl, { message: "ssl_ca needs use_ssl = true", path: ["ssl_ca"] })
  .refine((s) => !s.use_ssl || !isSocketPath(s.host), { message: "a server reached over its Unix socket (host starting with \"/\") takes no use_ssl: the socket is local", path: ["use_ssl"] });

export const userSchema = z.object({
  name: z.string().min(1).max(80),
  password: z.string().default(""),
  default_hostgroup: z.number().int().min(0).default(0),
  default_schema: z.string().optional(),
  auth_plugin: z.enum(["mysql_native_password", "caching_sha2_password"]).default("mysql_native_password"),
  backend_user: z.string().optional(),
  backend_password: z.string().optional(),
  max_connections: z.number().int().min(1).default(10_000),
  active: z.boolean().default(true),
  /** a transaction stays on the server it started on, whatever the query rules say */
  transaction_persistent: z.boolean().default(true),
}).strict();

const cidr = z.string().regex(/^(localhost|[0-9.]+|[0-9a-fA-F:]+)(\/\d{1,3})?$/, "expected an address, a CIDR block (e.g. \"10.0.0.0/8\") or \"localhost\" (Unix socket clients)").superRefine((v, ctx) => {
  try {
    parseCidr(v);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: `expected an address or CIDR block: ${(e as Error).message}` });
  }
});

const regex = z.string().min(1).superRefine((v, ctx) => {
  try {
    new RegExp(v);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: `invalid regular expression: ${(e as Error).message}` });
  }
});

export const queryRuleSchema = z.object({
  rule_id: z.number().int().min(1),
  active: z.boolean().default(true),
  username: z.string().optional(),
  schemaname: z.string().optional(),
  client_addr: cidr.optional(),
  flag_in: z.number().int().min(0).default(0),
  match_digest: regex.optional(),
  match_pattern: regex.optional(),
  negate_match_pattern: z.boolean().default(false),
  /** "CASELESS" (the default) matches regardless of case; "" matches case-sensitively */
  re_modifiers: z.enum(["CASELESS", ""]).default("CASELESS"),
  flag_out: z.number().int().min(0).optional(),
  apply: z.boolean().default(false),
  destination_hostgroup: z.number().int().min(0).optional(),
  error_msg: z.string().optional(),
  /** ms; a statement running longer is killed (KILL QUERY) */
  timeout: z.number().int().min(1).optional(),
  log: z.boolean().default(false),
  comment: z.string().default(""),
}).strict();

export const routeSchema = z.object({
  username: z.string().optional(),
  client_addr: cidr.optional(),
  /** tenant labels the session must carry (from "user?key=value" or connection attributes) */
  labels: z.record(z.string(), z.string()).default({}),
  destination_hostgroup: z.number().int().min(0),
  comment: z.string().default(""),
}).strict();

export const replicationHostgroupSchema = z.object({
  writer_hostgroup: z.number().int().min(0),
  reader_hostgroup: z.number().int().min(0),
  /** the writer also serves the reader hostgroup */
  writer_is_also_reader: z.boolean().default(false),
  comment: z.string().default(""),
}).strict();

/** Galera single-writer hostgroups (galera-hostgroups.ts): one set of nodes, placed by the monitor's findings. */
export const galeraHostgroupSchema = z.object({
  writer_hostgroup: z.number().int().min(0),
  /** the nodes that are not writers serve here (read-only ones too) */
  reader_hostgroup: z.number().int().min(0),
  /** writable nodes beyond max_writers are listed here as well; unset: nowhere else */
  backup_writer_hostgroup: z.number().int().min(0).optional(),
  max_writers: z.number().int().min(1).default(1),
  /** the writers serve the reader hostgroup too */
  writer_is_also_reader: z.boolean().default(false),
  /** the preferred node takes the writer role back once it can write; false: a writer keeps it while it can */
  failback: z.boolean().default(false),
  comment: z.string().default(""),
}).strict();

export const monitorSchema = z.object({
  /** the monitor runs when a user is set; it needs PROCESS and REPLICATION CLIENT (SLAVE MONITOR) */
  user: z.string().optional(),
  password: z.string().default(""),
  interval_ms: z.number().int().min(50).default(2000),
  timeout_ms: z.number().int().min(50).default(1000),
  /** consecutive failed checks before a server is SHUNNED */
  failure_threshold: z.number().int().min(1).default(3),
  /** consecutive healthy checks before a SHUNNED server is ONLINE again */
  recovery_threshold: z.number().int().min(1).default(2),
  /** lag assumed, in seconds, when replication is stopped (Seconds_Behind_Master is NULL) */
  lag_when_null: z.number().int().min(0).default(60),
}).strict();

export const dnsSourceSchema = z.object({
  /** a name with A/AAAA records (e.g. a Kubernetes headless service) or an SRV name */
  name: z.string().min(1),
  type: z.enum(["A", "AAAA", "SRV"]).default("A"),
  /** port for A/AAAA records (SRV records carry their own) */
  port: z.number().int().min(1).max(65535).default(3306),
  hostgroup: z.number().int().min(0).default(0),
  weight: z.number().int().min(0).default(1),
  max_replication_lag: z.number().int().min(0).default(0),
  labels: z.record(z.string(), z.string()).default({}),
  interval_ms: z.number().int().min(100).default(5000),
  /** DNS servers to ask ("host:port"); the system resolver when empty */
  resolvers: z.array(hostPort).default([]),
  /** given to every server found, as for configured servers */
  use_ssl: z.boolean().default(false),
  send_proxy_protocol: z.boolean().default(false),
}).strict();

export const etcdSourceSchema = z.object({
  endpoints: z.array(z.string().min(1)).min(1),
  /** Ferry layout: <prefix>/servers/<hostgroup>/<host:port> = JSON {weight, labels, ...} */
  prefix: z.string().default("/ferry"),
  /** "ferry", or "tidb" for TiDB's /topology/tidb/<addr>/info */
  layout: z.enum(["ferry", "tidb"]).default("ferry"),
  /** hostgroup of servers found in the tidb layout */
  hostgroup: z.number().int().min(0).default(0),
  username: z.string().optional(),
  password: z.string().optional(),
}).strict();

export const balancerSchema = z.object({
  /** how much observed latency counts against a server (0: not at all) */
  latency_weight: z.number().min(0).max(10).default(0.5),
  /** servers whose labels[zone_label] equals this are preferred */
  zone: z.string().optional(),
  zone_label: z.string().default("zone"),
  /** a server outside Ferry's zone counts as this many times more loaded */
  zone_penalty: z.number().min(1).default(2),
}).strict();

export const configSchema = z.object({
  proxy: z.object({
    listen: hostPort.default("127.0.0.1:6033"),
    /** a Unix socket to listen on as well (clients there are 'localhost') */
    socket: z.string().min(1).max(100).optional(),
    max_connections: z.number().int().min(1).max(1_000_000).default(10_000),
    /** processes that serve clients: 1 (one process), a count, or "auto" (one per CPU); read at start */
    workers: z.union([z.literal("auto"), z.number().int().min(1).max(64)]).default(1),
    handshake_timeout_ms: z.number().int().min(100).default(10_000),
    backend_connect_timeout_ms: z.number().int().min(100).default(5_000),
    backend_connect_attempts: z.number().int().min(1).max(20).default(3),
    /** prepared statements one backend connection holds; past it the least recently used is closed there (session/statement-cap.ts; 0: no cap) */
    max_prepared_statements: z.number().int().min(0).default(256),
    /** a new session that no server takes retries this long before 9001 (session/backend-login.ts; 0: at once) */
    backend_wait_ms: z.number().int().min(0).default(10_000),
    server_version: z.string().optional(),
    /** offer MariaDB's metadata caching to clients when the backends support it */
    cache_metadata: z.boolean().default(true),
    max_allowed_packet: z.number().int().min(1024).max(1024 * 1024 * 1024).default(1024 * 1024 * 1024),
    max_concurrent_moves: z.number().int().min(1).max(10_000).default(64),
    reconnect_timeout_ms: z.number().int().min(0).default(10_000),
    /**
     * a session that ran a stored routine (CALL, a stored function) stays on its server: the routine
     * may have left temporary tables or named locks Ferry cannot see (session/response-effects.ts)
     */
    pin_after_routines: z.boolean().default(true),
    /** times a read whose server was lost before answering runs again elsewhere (session/read-retry.ts; 0: never) */
    read_retries: z.number().int().min(0).max(5).default(1),
    drain_grace_ms: z.number().int().min(0).default(30_000),
    shutdown_wait_ms: z.number().int().min(0).default(30_000),
    rebalance_ratio: z.number().min(0).default(1.25),
    rebalance_moves_per_second: z.number().int().min(1).default(50),
    /** a backend connection this old is replaced: its session moves to a fresh one at a movable boundary (session/backend-age.ts; 0: never) */
    backend_max_age_ms: z.number().int().min(0).refine((v) => v === 0 || v >= 1000, "must be 0 (never) or at least 1000").default(0),
    /** idle backend connections kept per server for new sessions whose login would be the same (backend/pool.ts; 0: none) */
    pool_size: z.number().int().min(0).max(10_000).default(8),
    /** a pooled connection unused this long is closed */
    pool_idle_ms: z.number().int().min(1000).default(60_000),
    /** a session's connection to another hostgroup (read/write split) unused this long is closed (0: never) */
    parked_idle_ms: z.number().int().min(0).default(60_000),
    /** TCP keepalive on client and backend connections: probes start after this much silence (0: off) */
    tcp_keepalive_ms: z.number().int().min(0).default(60_000),
    /** a client idle this long is closed even when its wait_timeout is longer (0: only wait_timeout applies) */
    client_idle_timeout_ms: z.number().int().min(0).default(0),
    /** nice value of the event loop thread (lib/loop-priority.ts); unset: as Ferry was started */
    nice: z.number().int().min(-20).max(19).optional(),
    /** peers allowed to start a connection with a PROXY protocol header (load balancers in front of Ferry) */
    proxy_protocol_networks: z.array(cidr).default([]),
  }).strict().prefault({}),
  tls: z.object({
    enabled: z.boolean().default(true),
    cert: z.string().optional(),
    key: z.string().optional(),
    rsa_private_key: z.string().optional(),
    rsa_public_key: z.string().optional(),
  }).strict().prefault({}),
  log: z.object({
    level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  }).strict().prefault({}),
  servers: z.array(serverSchema).default([]),
  users: z.array(userSchema).default([]),
  query_rules: z.array(queryRuleSchema).default([]),
  routes: z.array(routeSchema).default([]),
  replication_hostgroups: z.array(replicationHostgroupSchema).default([]),
  galera_hostgroups: z.array(galeraHostgroupSchema).default([]),
  monitor: monitorSchema.prefault({}),
  discovery: z.object({
    dns: z.array(dnsSourceSchema).default([]),
    etcd: etcdSourceSchema.optional(),
  }).strict().prefault({}),
  balancer: balancerSchema.prefault({}),
}).strict().superRefine((c, ctx) => {
  const seenServers = new Set<string>();
  c.servers.forEach((s, i) => {
    const key = `${s.hostgroup}/${serverAddress(s.host, s.port)}`;
    if (seenServers.has(key)) ctx.addIssue({ code: "custom", path: ["servers", i], message: `duplicate server ${serverAddress(s.host, s.port)} in hostgroup ${s.hostgroup}` });
    seenServers.add(key);
  });
  const seenUsers = new Set<string>();
  c.users.forEach((u, i) => {
    if (seenUsers.has(u.name)) ctx.addIssue({ code: "custom", path: ["users", i, "name"], message: `duplicate user "${u.name}"` });
    seenUsers.add(u.name);
    if (u.auth_plugin === "caching_sha2_password" && /^\*[0-9A-Fa-f]{40}$/.test(u.password)) {
      ctx.addIssue({ code: "custom", path: ["users", i, "auth_plugin"], message: "caching_sha2_password needs the plaintext password, not a mysql_native_password hash" });
    }
  });
  const seenRules = new Set<number>();
  c.query_rules.forEach((r, i) => {
    if (seenRules.has(r.rule_id)) ctx.addIssue({ code: "custom", path: ["query_rules", i, "rule_id"], message: `duplicate rule_id ${r.rule_id}` });
    seenRules.add(r.rule_id);
  });
  c.replication_hostgroups.forEach((r, i) => {
    if (r.writer_hostgroup === r.reader_hostgroup) ctx.addIssue({ code: "custom", path: ["replication_hostgroups", i, "reader_hostgroup"], message: "reader_hostgroup must differ from writer_hostgroup" });
  });
  // A hostgroup belongs to one replication or Galera set at most: each set places its servers.
  const setOf = new Map<number, string>();
  const claim = (hg: number | undefined, path: (string | number)[]): void => {
    if (hg === undefined) return;
    const owner = setOf.get(hg);
    if (owner !== undefined) ctx.addIssue({ code: "custom", path, message: `hostgroup ${hg} is already ${owner}: a hostgroup belongs to one replication or Galera set at most, in one role` });
    else setOf.set(hg, `${path[0]}[${path[1]}].${path[2]}`);
  };
  c.replication_hostgroups.forEach((r, i) => {
    claim(r.writer_hostgroup, ["replication_hostgroups", i, "writer_hostgroup"]);
    if (r.reader_hostgroup !== r.writer_hostgroup) claim(r.reader_hostgroup, ["replication_hostgroups", i, "reader_hostgroup"]);
  });
  if (c.galera_hostgroups.length > 0 && c.monitor.user === undefined) {
    ctx.addIssue({ code: "custom", path: ["galera_hostgroups"], message: "needs the monitor (monitor.user): without its checks a writer that fails is never replaced" });
  }
  c.galera_hostgroups.forEach((g, i) => {
    for (const key of ["writer_hostgroup", "reader_hostgroup", "backup_writer_hostgroup"] as const) claim(g[key], ["galera_hostgroups", i, key]);
  });
  if ((c.tls.cert === undefined) !== (c.tls.key === undefined)) ctx.addIssue({ code: "custom", path: ["tls"], message: "cert and key go together" });
});

export type ConfigFile = z.infer<typeof configSchema>;
export type ServerConfigEntry = z.infer<typeof serverSchema>;
/** A server entry with where it came from: "config", "dns:<name>", "etcd" */
export type SourcedServerEntry = ServerConfigEntry & { source: string };
export type UserConfigEntry = z.infer<typeof userSchema>;
export type GaleraHostgroupEntry = z.infer<typeof galeraHostgroupSchema>;
export type ServerStatus = z.infer<typeof serverStatus>;
export type QueryRuleEntry = z.infer<typeof queryRuleSchema>;
