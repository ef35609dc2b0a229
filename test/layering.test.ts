// DESIGN §2: imports point downward only.

import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, dirname, resolve } from "node:path";
import { it } from "node:test";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../src");
const allowed: Record<string, string[]> = {
  lib: [],
  protocol: ["lib"],
  frontend: ["lib", "protocol", "config:type"],
  backend: ["lib", "protocol", "config:type"],
  router: ["lib", "protocol", "config:type"],
  session: ["lib", "protocol", "frontend", "backend", "router", "config:type"],
  config: ["lib", "protocol"],
  observe: ["lib", "protocol", "config"],
  // the monitor checks servers with the backend's own client code
  monitor: ["lib", "protocol", "config", "backend"],
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith(".ts") ? [p] : [];
  });
}

it("data-plane folders import only downward, and control-plane config only as types", () => {
  const problems: string[] = [];
  for (const file of files(root)) {
    const folder = relative(root, file).split("/")[0];
    const rules = allowed[folder];
    if (!rules) continue;
    for (const m of readFileSync(file, "utf8").matchAll(/^import (type )?[^;]*? from "(\.[^"]+)";/gms)) {
      const target = relative(root, resolve(dirname(file), m[2])).split("/")[0];
      if (target === folder) continue;
      const ok = rules.includes(target) || (m[1] && rules.includes(`${target}:type`));
      if (!ok) problems.push(`${relative(root, file)} imports ${m[2]}`);
    }
  }
  assert.deepEqual(problems, []);
});
