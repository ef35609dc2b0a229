// The immutable, versioned snapshot the data plane reads at each decision point (DESIGN §1).

import { createHash } from "node:crypto";
import { parseNativeHash } from "../protocol/auth/native-password.js";
import type { ConfigFile, ServerStatus } from "./schema.js";

export interface ServerConfig {
  /** "host:port", unique across hostgroups for connection counting */
  readonly address: string;
  readonly host: string;
  readonly port: number;
  readonly hostgroup: number;
  readonly weight: number;
  readonly status: ServerStatus;
  readonly maxConnections: number;
  readonly useSsl: boolean;
}

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
}

export interface RuntimeConfig {
  readonly version: number;
  readonly checksum: string;
  readonly proxy: ConfigFile["proxy"];
  readonly tls: ConfigFile["tls"];
  readonly logLevel: string;
  readonly servers: readonly ServerConfig[];
  readonly users: ReadonlyMap<string, UserConfig>;
}

let nextVersion = 1;

export function buildRuntimeConfig(file: ConfigFile): RuntimeConfig {
  const servers: ServerConfig[] = file.servers.map((s) => Object.freeze({
    address: `${s.host}:${s.port}`, host: s.host, port: s.port, hostgroup: s.hostgroup, weight: s.weight,
    status: s.status, maxConnections: s.max_connections, useSsl: s.use_ssl,
  }));
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
    }));
  }
  const checksum = createHash("sha256").update(JSON.stringify(file)).digest("hex").slice(0, 16);
  return Object.freeze({
    version: nextVersion++, checksum, proxy: file.proxy, tls: file.tls, logLevel: file.log.level, servers: Object.freeze(servers), users,
  });
}
