import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { quoteString, restorePlan, userVariableLiteral } from "../../src/session/restore-plan.js";
import { PreparedStatement, StateTracker } from "../../src/session/state-tracker.js";
import { analyzeStatements } from "../../src/session/statement-effects.js";

describe("restore plan", () => {
  it("writes user variables as literals of their exact type", () => {
    const v = (type: string | null, value: string | null, charset: string | null = null) => userVariableLiteral({ type, charset, value: value === null ? null : Buffer.from(value) });
    assert.equal(v("INT", "-42"), "-42");
    assert.equal(v("DECIMAL", "1.50"), "1.50");
    assert.equal(v("DOUBLE", "2.5"), "2.5e0");
    assert.equal(v("DOUBLE", "1e+20"), "1e+20");
    assert.equal(v("VARCHAR", "h\u00e9", "utf8mb4"), "_utf8mb4 X'68c3a9'");
    assert.equal(v(null, "x", null), "_binary X'78'");
    assert.equal(v("INT", null), "NULL");
    assert.equal(v("INT", "1; DROP TABLE t"), "_binary X'313b2044524f50205441424c452074'", "a value that is not a number is never spliced in as one");
  });

  it("quotes strings for either backslash mode", () => {
    assert.equal(quoteString("a'b\\c", false), "'a''b\\\\c'");
    assert.equal(quoteString("a'b\\c", true), "'a''b\\c'");
  });

  it("orders character sets before collations and skips what Ferry manages or cannot replay", () => {
    const t = new StateTracker();
    for (const [k, v] of [["sql_mode", "ANSI"], ["collation_connection", "utf8mb4_unicode_ci"], ["character_set_connection", "utf8mb4"],
      ["session_track_system_variables", "*"], ["in_transaction", "0"], ["wait_timeout", "100"], ["bad name", "x"]]) t.systemVariables.set(k, v);
    t.applyEffects(analyzeStatements("PREPARE s1 FROM 'SELECT 1'"), true);
    t.lastInsertId = 7n;
    t.onPrepared(new PreparedStatement(2, "SELECT ?", 1, 1, 0));
    // binary prepared statements are not replayed: they are prepared where they next run
    assert.deepEqual(restorePlan(t, false), [
      { kind: "query", sql: "SET SESSION character_set_connection = 'utf8mb4', collation_connection = 'utf8mb4_unicode_ci', sql_mode = 'ANSI', wait_timeout = 100" },
      { kind: "query", sql: "PREPARE s1 FROM 'SELECT 1'" },
      { kind: "query", sql: "DO LAST_INSERT_ID(7)" },
    ]);
  });
});
