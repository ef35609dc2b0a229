import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { analyzeStatements, mayHaveEffects } from "../../src/session/statement-effects.js";
import { StoredFunctionNames, callKeys, storedFunctionsQuery } from "../../src/session/stored-functions.js";

const calls = (sql: string) => analyzeStatements(sql).functionCalls;
const mayHave = (s: string) => { const x = Buffer.from(s); return mayHaveEffects(x, 0, x.length); };

describe("stored function calls", () => {
  it("finds names a query or a SET calls that are not built-ins", () => {
    assert.deepEqual(calls("SELECT f(1)"), ["f"]);
    assert.deepEqual(calls("SELECT App.Take_Lock() AS l"), ["app.take_lock"]);
    assert.deepEqual(calls("select `my fn`(2), `db`.`g`(3)"), ["my fn", "db.g"]);
    assert.deepEqual(calls("SET @x = f(), @y = CONCAT('a', 'b')"), ["f"]);
    assert.deepEqual(calls("(SELECT x FROM t WHERE y = g(1))"), ["g"]);
    assert.deepEqual(calls("WITH c AS (SELECT h(1) AS v) SELECT v FROM c"), ["h"]);
    assert.deepEqual(calls("SET STATEMENT max_statement_time = 1 FOR SELECT f()").includes("f"), true);
    for (const sql of [
      "SELECT COUNT(*), SUM(k), CONCAT(a, b) FROM t WHERE id IN (1, 2) AND (x > 1 OR y < 2)",
      "SELECT CAST(x AS DECIMAL(10, 2)), CONVERT(y, CHAR(3)) FROM t USE INDEX (k)",
      "SELECT GET_LOCK('a', 1), LAST_INSERT_ID(), NEXTVAL(s)",
      "SELECT a FROM t WHERE EXISTS (SELECT 1) UNION (SELECT 2)",
      "SELECT ROW_NUMBER() OVER (PARTITION BY a ORDER BY b) FROM t",
      "INSERT INTO t (a) VALUES (f(1))", // DML ends in an OK: the server's report tells
      "SELECT 'f(x)'",
      "SELECT 1",
    ]) {
      assert.deepEqual(calls(sql), [], sql);
    }
  });

  it("tokenizes a plain query only when a name before a parenthesis may be a stored function's", () => {
    for (const s of ["SELECT f(1)", "SELECT app.f(1) FROM t", "select `f` (1)", "VALUES (my_func(2))", "SELECT x FROM t WHERE y = g (1)"]) {
      assert.equal(mayHave(s), true, s);
    }
    for (const s of ["SELECT COUNT(*) FROM t WHERE id IN (1,2)", "SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN 1 AND 99",
      "SELECT CAST(a AS DECIMAL(5,2)) FROM t", "SELECT (1 + 2) * 3", "INSERT INTO t (a) VALUES (f(1))", "SELECT c FROM sbtest1 WHERE id=5"]) {
      assert.equal(mayHave(s), false, s);
    }
  });

  it("notices CREATE and DROP FUNCTION", () => {
    for (const sql of ["CREATE FUNCTION f() RETURNS INT RETURN 1", "CREATE OR REPLACE DEFINER = CURRENT_USER FUNCTION app.f() RETURNS INT RETURN 1",
      "DROP FUNCTION IF EXISTS app.f"]) {
      assert.equal(analyzeStatements(sql).routinesChanged, true, sql);
    }
    assert.equal(analyzeStatements("CREATE TABLE t (a INT)").routinesChanged, false);
  });

  it("keys names by schema, unqualified ones in the current schema", () => {
    assert.deepEqual(callKeys(["f", "other.g", "f"], "App"), ["app.f", "other.g"]);
    assert.deepEqual(callKeys(["f", "other.g"], null), ["other.g"]);
  });

  it("keeps what it learned for its time, and forgets it all on request", () => {
    const n = new StoredFunctionNames(1000);
    assert.equal(n.verdict(["a.f"], 0), null);
    n.learn("a.f", false, 0);
    assert.equal(n.verdict(["a.f"], 500), false);
    assert.equal(n.verdict(["a.f", "a.g"], 500), null, "one of them unknown");
    n.learn("a.g", true, 0);
    assert.equal(n.verdict(["a.f", "a.g"], 500), true);
    assert.equal(n.verdict(["a.f"], 1500), null, "expired");
    n.forget();
    assert.equal(n.verdict(["a.g"], 10), null);
  });

  it("asks for the names as literals that need no quoting", () => {
    const q = storedFunctionsQuery(["app.f", "o'k.g"]);
    assert.match(q, /information_schema\.ROUTINES WHERE ROUTINE_TYPE = 'FUNCTION'/);
    assert.ok(q.includes(`X'${Buffer.from("app.f").toString("hex")}'`));
    assert.ok(!q.includes("o'k"));
  });
});
