import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildRuntimeConfig } from "../../src/config/runtime-config.js";
import { configSchema } from "../../src/config/schema.js";
import { applyQueryRules } from "../../src/router/query-rules.js";

function rules(list: object[]) {
  const rt = buildRuntimeConfig(configSchema.parse({ query_rules: list }));
  return (sql: string, ctx: Partial<{ username: string; schema: string | null; clientAddr: string }> = {}) =>
    applyQueryRules(rt.queryRules, rt.rulesNeedDigest, { username: "app", schema: "db", clientAddr: "127.0.0.1", ...ctx }, Buffer.from(sql), 0, Buffer.byteLength(sql));
}

const rwSplit = [
  { rule_id: 10, match_digest: "^SELECT .* FOR UPDATE", destination_hostgroup: 0, apply: true },
  { rule_id: 20, match_digest: "^SELECT", destination_hostgroup: 1, apply: true },
];

describe("query rules", () => {
  it("read/write split: locking reads to the writer, other reads to readers, the rest unmatched", () => {
    const r = rules(rwSplit);
    assert.equal(r("SELECT * FROM t WHERE id = 1 FOR UPDATE")?.hostgroup, 0);
    assert.deepEqual(r("select c from t where id=7")?.matched, [20]);
    assert.equal(r("select c from t where id=7")?.hostgroup, 1);
    assert.equal(r("INSERT INTO t VALUES (1)"), null);
  });

  it("walks in rule_id order whatever the file order, and apply stops the walk", () => {
    const r = rules([
      { rule_id: 5, match_pattern: "^select", destination_hostgroup: 2 },
      { rule_id: 1, match_pattern: "^select", destination_hostgroup: 1, apply: true },
    ]);
    assert.deepEqual(r("SELECT 1")?.matched, [1]);
    assert.equal(r("SELECT 1")?.hostgroup, 1);
  });

  it("without apply, later matches override earlier ones", () => {
    const r = rules([
      { rule_id: 1, match_pattern: "^select", destination_hostgroup: 1, timeout: 500 },
      { rule_id: 2, match_pattern: "big_table", destination_hostgroup: 3 },
    ]);
    const o = r("SELECT * FROM big_table");
    assert.deepEqual(o?.matched, [1, 2]);
    assert.equal(o?.hostgroup, 3);
    assert.equal(o?.timeoutMs, 500);
  });

  it("flag_out chains to rules with that flag_in; other flags are skipped", () => {
    const r = rules([
      { rule_id: 1, username: "reporting", flag_out: 7 },
      { rule_id: 2, flag_in: 7, match_digest: "^SELECT", destination_hostgroup: 2, apply: true },
      { rule_id: 3, match_digest: "^SELECT", destination_hostgroup: 1, apply: true },
    ]);
    assert.deepEqual(r("SELECT 1", { username: "reporting" })?.matched, [1, 2]);
    assert.equal(r("SELECT 1", { username: "reporting" })?.hostgroup, 2);
    assert.deepEqual(r("SELECT 1", { username: "app" })?.matched, [3]);
  });

  it("username, schemaname and client_addr (CIDR) conditions", () => {
    const r = rules([{ rule_id: 1, schemaname: "sales", client_addr: "10.1.0.0/16", destination_hostgroup: 4 }]);
    assert.equal(r("SELECT 1", { schema: "sales", clientAddr: "10.1.2.3" })?.hostgroup, 4);
    assert.equal(r("SELECT 1", { schema: "sales", clientAddr: "::ffff:10.1.2.3" })?.hostgroup, 4);
    assert.equal(r("SELECT 1", { schema: "sales", clientAddr: "10.2.0.1" }), null);
    assert.equal(r("SELECT 1", { schema: "hr", clientAddr: "10.1.2.3" }), null);
  });

  it("negate_match_pattern and case sensitivity", () => {
    const r = rules([
      { rule_id: 1, match_pattern: "^SELECT", negate_match_pattern: true, re_modifiers: "", error_msg: "only upper-case SELECT here" },
    ]);
    assert.equal(r("SELECT 1"), null);
    assert.equal(r("select 1")?.errorMsg, "only upper-case SELECT here");
    assert.equal(r("DELETE FROM t")?.errorMsg, "only upper-case SELECT here");
  });

  it("match_digest sees literals as ? and ignores comments and spacing", () => {
    const r = rules([{ rule_id: 1, match_digest: "^DELETE FROM t WHERE id = \\?$", error_msg: "no single-row deletes" }]);
    assert.equal(r("DELETE  FROM t /* x */ WHERE id=42")?.errorMsg, "no single-row deletes");
    assert.equal(r("DELETE FROM t WHERE id=42 OR 1=1"), null);
  });

  it("inactive rules are skipped; invalid regular expressions and duplicate ids are refused", () => {
    assert.equal(rules([{ rule_id: 1, active: false, match_pattern: ".", destination_hostgroup: 9 }])("SELECT 1"), null);
    const bad = configSchema.safeParse({ query_rules: [{ rule_id: 1, match_pattern: "(" }] });
    assert.equal(bad.success, false);
    assert.deepEqual(bad.error?.issues[0].path, ["query_rules", 0, "match_pattern"]);
    const dup = configSchema.safeParse({ query_rules: [{ rule_id: 1 }, { rule_id: 1 }] });
    assert.deepEqual(dup.error?.issues[0].path, ["query_rules", 1, "rule_id"]);
  });
});
