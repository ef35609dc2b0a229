import assert from "node:assert/strict";
import { it } from "node:test";
import { buildRuntimeConfig } from "../../src/config/runtime-config.js";
import { configSchema } from "../../src/config/schema.js";

const file = configSchema.parse({
  servers: [{ host: "a", port: 1, hostgroup: 0 }, { host: "b", port: 1, hostgroup: 1 }, { host: "c", port: 1, hostgroup: 5, status: "OFFLINE_SOFT" }],
  replication_hostgroups: [{ writer_hostgroup: 0, reader_hostgroup: 1 }],
});
const place = (ro: Record<string, boolean>, shunned: Record<string, string> = {}, alsoReader = false) => {
  const f = alsoReader ? { ...file, replication_hostgroups: [{ ...file.replication_hostgroups[0], writer_is_also_reader: true }] } : file;
  const rt = buildRuntimeConfig(f, { discovered: [], readOnly: new Map(Object.entries(ro)), shunned: new Map(Object.entries(shunned)), galeraWriters: new Map() });
  return rt.servers.map((s) => `${s.hostgroup}/${s.host}/${s.status}`).sort();
};

it("read_only places servers of replication hostgroups; unknown read_only keeps the configured hostgroup", () => {
  assert.deepEqual(place({}), ["0/a/ONLINE", "1/b/ONLINE", "5/c/OFFLINE_SOFT"]);
  assert.deepEqual(place({ "a:1": true, "b:1": false }), ["0/b/ONLINE", "1/a/ONLINE", "5/c/OFFLINE_SOFT"]);
  assert.deepEqual(place({ "a:1": false, "b:1": true }, {}, true), ["0/a/ONLINE", "1/a/ONLINE", "1/b/ONLINE", "5/c/OFFLINE_SOFT"]);
});

it("the monitor shuns ONLINE servers only, never raising one above its configured status", () => {
  assert.deepEqual(place({}, { "a:1": "lag", "c:1": "down" }), ["0/a/SHUNNED", "1/b/ONLINE", "5/c/OFFLINE_SOFT"]);
});

it("discovered servers join, and the checksum follows the servers", () => {
  const base = buildRuntimeConfig(file);
  const withD = buildRuntimeConfig(file, { discovered: [{ ...configSchema.parse({ servers: [{ host: "d" }] }).servers[0], source: "dns:x" }], readOnly: new Map(), shunned: new Map(), galeraWriters: new Map() });
  assert.equal(withD.servers.find((s) => s.host === "d")?.source, "dns:x");
  assert.notEqual(base.checksum, withD.checksum);
  assert.equal(buildRuntimeConfig(file).checksum, base.checksum);
});
