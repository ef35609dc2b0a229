import assert from "node:assert/strict";
import { it } from "node:test";
import { buildRuntimeConfig, type RuntimeConfig } from "../../src/config/runtime-config.js";
import { configSchema, type ConfigFile } from "../../src/config/schema.js";
import { ConfigError, parseConfig } from "../../src/config/load.js";

/** Nodes a, b, c (port 1) in hostgroup 0 unless given, a Galera set 0/1 with the set's extra keys. */
function fileWith(set: Record<string, unknown> = {}, servers: Record<string, unknown>[] = [{ host: "a" }, { host: "b" }, { host: "c" }]): ConfigFile {
  return configSchema.parse({
    servers: [...servers.map((s) => ({ port: 1, hostgroup: 0, ...s })), { host: "x", port: 1, hostgroup: 5 }],
    galera_hostgroups: [{ writer_hostgroup: 0, reader_hostgroup: 1, ...set }],
    monitor: { user: "monitor" },
  });
}

interface Findings { readOnly?: Record<string, boolean>; shunned?: Record<string, string>; writers?: string[] }
function build(file: ConfigFile, f: Findings = {}): RuntimeConfig {
  const addr = (o: Record<string, unknown> = {}) => new Map(Object.entries(o).map(([k, v]) => [`${k}:1`, v]));
  return buildRuntimeConfig(file, {
    discovered: [], readOnly: addr(f.readOnly) as Map<string, boolean>, shunned: addr(f.shunned) as Map<string, string>,
    galeraWriters: new Map(f.writers ? [[0, f.writers.map((w) => `${w}:1`)]] : []),
  });
}
const placed = (rt: RuntimeConfig): string[] => rt.servers.map((s) => `${s.hostgroup}/${s.host}/${s.status}`).sort();
const writers = (rt: RuntimeConfig): string[] => (rt.galeraWriters.get(0) ?? []).map((a) => a.replace(":1", ""));

it("one writer, in config order; the others serve the reader hostgroup; servers outside the set stay", () => {
  const rt = build(fileWith());
  assert.deepEqual(writers(rt), ["a"]);
  assert.deepEqual(placed(rt), ["0/a/ONLINE", "1/b/ONLINE", "1/c/ONLINE", "5/x/ONLINE"]);
});

it("the highest weight is preferred; weight 0 never writes", () => {
  assert.deepEqual(writers(build(fileWith({}, [{ host: "a" }, { host: "b", weight: 3 }, { host: "c", weight: 2 }]))), ["b"]);
  assert.deepEqual(writers(build(fileWith({}, [{ host: "a", weight: 0 }, { host: "b" }]))), ["b"]);
});

it("a writer keeps the role while it can write, and loses it when shunned, read-only or drained", () => {
  const file = fileWith();
  assert.deepEqual(writers(build(file, { writers: ["c"] })), ["c"], "sticky: c stays although a is preferred");
  const shunned = build(file, { writers: ["a"], shunned: { a: "galera: desynced (wsrep_desync=ON)" } });
  assert.deepEqual(writers(shunned), ["b"]);
  assert.deepEqual(placed(shunned), ["0/a/SHUNNED", "0/b/ONLINE", "1/c/ONLINE", "5/x/ONLINE"], "a shunned node stays in its configured hostgroup, serving nothing");
  const ro = build(file, { writers: ["a"], readOnly: { a: true } });
  assert.deepEqual(writers(ro), ["b"]);
  assert.deepEqual(placed(ro), ["0/b/ONLINE", "1/a/ONLINE", "1/c/ONLINE", "5/x/ONLINE"], "a read-only node serves reads");
  const drained = build(fileWith({}, [{ host: "a", status: "OFFLINE_SOFT" }, { host: "b" }, { host: "c" }]), { writers: ["a"] });
  assert.deepEqual(writers(drained), ["b"]);
  assert.deepEqual(placed(drained), ["0/a/OFFLINE_SOFT", "0/b/ONLINE", "1/c/ONLINE", "5/x/ONLINE"]);
});

it("with failback the preferred node takes the role back", () => {
  assert.deepEqual(writers(build(fileWith({ failback: true }), { writers: ["c"] })), ["a"]);
});

it("no node can write: no writer, and the hostgroup serves nobody", () => {
  const rt = build(fileWith(), { readOnly: { a: true, b: true }, shunned: { c: "down" } });
  assert.deepEqual(writers(rt), []);
  assert.deepEqual(placed(rt).filter((p) => p.startsWith("0/") && p.endsWith("ONLINE")), []);
});

it("max_writers, backup writers and writer_is_also_reader", () => {
  const rt = build(fileWith({ max_writers: 2, backup_writer_hostgroup: 2, writer_is_also_reader: true }, [{ host: "a" }, { host: "b" }, { host: "c" }, { host: "d" }]), { readOnly: { d: true } });
  assert.deepEqual(writers(rt), ["a", "b"]);
  assert.deepEqual(placed(rt), ["0/a/ONLINE", "0/b/ONLINE", "1/a/ONLINE", "1/b/ONLINE", "1/c/ONLINE", "1/d/ONLINE", "2/c/ONLINE", "5/x/ONLINE"]);
});

it("a node listed in several hostgroups of the set counts once", () => {
  const rt = build(fileWith({}, [{ host: "a", hostgroup: 1 }, { host: "a", hostgroup: 0 }, { host: "b" }]));
  assert.deepEqual(writers(rt), ["a"]);
  assert.deepEqual(placed(rt), ["0/a/ONLINE", "1/b/ONLINE", "5/x/ONLINE"]);
});

it("a hostgroup belongs to one set at most, and a set needs the monitor", () => {
  const refused = (toml: string): string => {
    try {
      parseConfig(toml);
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      return e.message;
    }
    assert.fail("accepted");
  };
  assert.match(refused("[[galera_hostgroups]]\nwriter_hostgroup = 0\nreader_hostgroup = 1\n"), /galera_hostgroups: needs the monitor \(monitor\.user\)/);
  const monitored = (toml: string): string => `[monitor]\nuser = "monitor"\n${toml}`;
  assert.match(refused(monitored("[[galera_hostgroups]]\nwriter_hostgroup = 0\nreader_hostgroup = 0\n")), /galera_hostgroups\[0\]\.reader_hostgroup: hostgroup 0 is already galera_hostgroups\[0\]\.writer_hostgroup/);
  assert.match(refused(monitored("[[replication_hostgroups]]\nwriter_hostgroup = 0\nreader_hostgroup = 1\n[[galera_hostgroups]]\nwriter_hostgroup = 2\nreader_hostgroup = 1\n")),
    /galera_hostgroups\[0\]\.reader_hostgroup: hostgroup 1 is already replication_hostgroups\[0\]\.reader_hostgroup/);
  assert.match(refused(monitored("[[galera_hostgroups]]\nwriter_hostgroup = 0\nreader_hostgroup = 1\nmax_writers = 0\n")), /galera_hostgroups\[0\]\.max_writers/);
});
