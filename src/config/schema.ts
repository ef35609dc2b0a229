// The TOML configuration file's schema. Every key is checked; unknown keys are refused so that a
// typo never silently becomes a default.

import { z } from "zod";

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, "expected \"host:port\"");

export const serverStatus = z.enum(["ONLINE", "SHUNNED", "OFFLINE_SOFT", "OFFLINE_HARD"]);

export const serverSchema = z.object({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(3306),
  hostgroup: z.number().int().min(0).default(0),
  weight: z.number().int().min(0).max(10_000_000).default(1),
  status: serverStatus.default("ONLINE"),
  max_connections: z.number().int().min(1).default(10_000),
  use_ssl: z.boolean().default(false),
  comment: z.string().default(""),
}).strict();

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
}).strict();

export const configSchema = z.object({
  proxy: z.object({
    listen: hostPort.default("127.0.0.1:6033"),
    max_connections: z.number().int().min(1).max(1_000_000).default(10_000),
    handshake_timeout_ms: z.number().int().min(100).default(10_000),
    backend_connect_timeout_ms: z.number().int().min(100).default(5_000),
    backend_connect_attempts: z.number().int().min(1).max(20).default(3),
    server_version: z.string().optional(),
    max_allowed_packet: z.number().int().min(1024).max(1024 * 1024 * 1024).default(1024 * 1024 * 1024),
    max_concurrent_moves: z.number().int().min(1).max(10_000).default(64),
    reconnect_timeout_ms: z.number().int().min(0).default(10_000),
    drain_grace_ms: z.number().int().min(0).default(30_000),
    shutdown_wait_ms: z.number().int().min(0).default(30_000),
    rebalance_ratio: z.number().min(0).default(1.25),
    rebalance_moves_per_second: z.number().int().min(1).default(50),
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
}).strict().superRefine((c, ctx) => {
  const seenServers = new Set<string>();
  c.servers.forEach((s, i) => {
    const key = `${s.hostgroup}/${s.host}:${s.port}`;
    if (seenServers.has(key)) ctx.addIssue({ code: "custom", path: ["servers", i], message: `duplicate server ${s.host}:${s.port} in hostgroup ${s.hostgroup}` });
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
  if ((c.tls.cert === undefined) !== (c.tls.key === undefined)) ctx.addIssue({ code: "custom", path: ["tls"], message: "cert and key go together" });
});

export type ConfigFile = z.infer<typeof configSchema>;
export type ServerConfigEntry = z.infer<typeof serverSchema>;
export type UserConfigEntry = z.infer<typeof userSchema>;
export type ServerStatus = z.infer<typeof serverStatus>;
