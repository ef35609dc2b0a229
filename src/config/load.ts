// Reads and validates a TOML configuration file. Errors name the key that is wrong.

import { readFileSync } from "node:fs";
import { parse as parseToml } from "smol-toml";
import { configSchema, type ConfigFile } from "./schema.js";

export class ConfigError extends Error {
  override name = "ConfigError";
}

function keyPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || "(root)";
}

export function parseConfig(text: string, source = "config"): ConfigFile {
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (e) {
    throw new ConfigError(`${source}: not valid TOML: ${(e as Error).message}`);
  }
  const r = configSchema.safeParse(raw);
  if (!r.success) {
    const msgs = r.error.issues.map((i) => `${keyPath(i.path)}: ${i.message}`);
    throw new ConfigError(`${source}: ${msgs.join("; ")}`);
  }
  return r.data;
}

export function loadConfigFile(file: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read ${file}: ${(e as Error).message}`);
  }
  return parseConfig(text, file);
}
