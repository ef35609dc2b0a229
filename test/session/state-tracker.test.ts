import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { analyzeStatements, explainsStateChange, mayHaveEffects, pinsToServer } from "../../src/session/statement-effects.js";
import { PreparedStatement, StateTracker } from "../../src/session/state-tracker.js";
import { restorePlan } from "../../src/session/restore-plan.js";

const fx = (sql: string) => analyzeStatements(sql);

describe("statement effects and state tracker", () => {
  it("skips tokenizing plain DML and catches anything that may change state", () => {
    const b = (s: string) => { const x = Buffer.from(s); return mayHaveEffects(x, 0, x.length); };
    assert.equal(b("SELECT c FROM sbtest1 WHERE id=5"), false);
    assert.equal(b("insert into t values (1)"), false);
    for (const s of ["SELECT @a", "select get_lock('x', 1)", "SELECT Release_Lock('x')", "SELECT SQL_CALC_FOUND_ROWS * FROM t", "SET @a=1",
      "CREATE TEMPORARY TABLE t (a int)", "SELECT 1; SELECT 2", "select /*!99999 1 */", "LOCK TABLES t READ", "USE db"]) {
      assert.equal(b(s), true, s);
    }
  });

  it("reads user variables, system variables and SET NAMES from SET", () => {
    const e = fx("SET @a = 1, @`b c` := 'x', SESSION sql_mode = 'ANSI', @@session.time_zone = '+00:00', @@global.max_connections = 10, NAMES utf8mb4");
    assert.deepEqual(e.userVars, ["a", "b c"]);
    assert.deepEqual(e.sysVars, ["sql_mode", "time_zone", "character_set_client", "character_set_connection", "character_set_results", "collation_connection"]);
    assert.deepEqual(fx("SELECT 1 INTO @x, @y").userVars, ["x", "y"]);
    assert.deepEqual(fx("SELECT @z := 5").userVars, ["z"]);
    assert.deepEqual(fx("SET STATEMENT max_statement_time=1 FOR SELECT 1").sysVars, []);
  });

  it("reads SET ROLE as the session's role (its case kept), not as a variable", () => {
    assert.equal(fx("SET ROLE Reader").role, "`Reader`");
    assert.equal(fx("set role `we``ird`").role, "`we``ird`");
    assert.equal(fx("SET ROLE 'r1'").role, "`r1`");
    assert.equal(fx("SET ROLE NONE").role, "NONE");
    assert.deepEqual(fx("SET ROLE Reader").sysVars, []);
    assert.deepEqual(fx("SET DEFAULT ROLE Reader FOR u").sysVars, []);
    assert.equal(fx("SET DEFAULT ROLE Reader FOR u").role, null);
    const t = new StateTracker();
    t.applyEffects(fx("SET ROLE Reader"), false);
    assert.equal(t.role, null, "a refused SET ROLE changes nothing");
    t.applyEffects(fx("SET ROLE Reader"), true);
    assert.equal(t.role, "`Reader`");
    t.reset(); // COM_RESET_CONNECTION keeps the role on the server
    assert.equal(t.role, "`Reader`");
    assert.deepEqual(restorePlan(t, false)[0], { kind: "query", sql: "SET ROLE `Reader`" });
  });

  it("pins on temporary tables until they are dropped", () => {
    const t = new StateTracker();
    t.applyEffects(fx("CREATE TEMPORARY TABLE IF NOT EXISTS tmp1 (a INT)"), true);
    t.applyEffects(fx("create temporary table `Tmp2` (a int)"), true);
    assert.deepEqual(t.pinReasons(), ["temporary-table"]);
    t.applyEffects(fx("DROP TEMPORARY TABLE tmp1"), true);
    assert.equal(t.movable, false);
    t.applyEffects(fx("DROP TABLE IF EXISTS tmp2"), true);
    assert.equal(t.movable, true);
  });

  it("pins on named locks until released, and on LOCK TABLES until UNLOCK TABLES", () => {
    const t = new StateTracker();
    t.applyEffects(fx("SELECT GET_LOCK('job', 10), GET_LOCK('other', 1)"), true);
    assert.deepEqual(t.pinReasons(), ["named-lock"]);
    t.applyEffects(fx("SELECT RELEASE_LOCK('job')"), true);
    assert.equal(t.movable, false);
    t.applyEffects(fx("SELECT RELEASE_ALL_LOCKS()"), true);
    assert.equal(t.movable, true);
    t.applyEffects(fx("LOCK TABLES t1 READ, t2 WRITE"), true);
    assert.deepEqual(t.pinReasons(), ["lock-tables"]);
    t.applyEffects(fx("UNLOCK TABLES"), true);
    assert.equal(t.movable, true);
  });

  it("pins on a named lock whose name it cannot read until RELEASE_ALL_LOCKS or a reset", () => {
    for (const sql of ["SELECT GET_LOCK(CONCAT('job-', 7), 10)", "SELECT GET_LOCK(?, 1)", "DO GET_LOCK(@name, 0)"]) {
      const t = new StateTracker();
      t.applyEffects(fx(sql), true);
      assert.deepEqual(t.pinReasons(), ["named-lock"], sql);
      t.applyEffects(fx("SELECT RELEASE_LOCK('job-7')"), true);
      assert.equal(t.movable, false, "which lock it was is not known");
      t.applyEffects(fx("SELECT RELEASE_ALL_LOCKS()"), true);
      assert.equal(t.movable, true);
    }
    const t = new StateTracker();
    t.applyEffects(fx("SELECT GET_LOCK(?, 1)"), true);
    t.reset();
    assert.equal(t.movable, true);
  });

  it("pins on an open HANDLER until it is closed, by its alias or table name, and on a temporary sequence", () => {
    const t = new StateTracker();
    t.applyEffects(fx("HANDLER app.t OPEN AS h"), true);
    t.applyEffects(fx("HANDLER u OPEN"), true);
    assert.deepEqual(t.pinReasons(), ["handler"]);
    t.applyEffects(fx("HANDLER h CLOSE"), true);
    assert.equal(t.movable, false);
    t.applyEffects(fx("HANDLER u CLOSE"), true);
    assert.equal(t.movable, true);
    assert.equal(pinsToServer(fx("HANDLER t OPEN")), true);
    t.applyEffects(fx("CREATE TEMPORARY SEQUENCE s"), true);
    assert.deepEqual(t.pinReasons(), ["temporary-table"]);
    t.applyEffects(fx("DROP TEMPORARY SEQUENCE s"), true);
    assert.equal(t.movable, true);
  });

  it("pins on the next transaction's characteristics until a transaction starts", () => {
    const t = new StateTracker();
    t.applyEffects(fx("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"), true);
    assert.deepEqual(t.pinReasons(), ["next-transaction"]);
    t.applyStatus(0x0002); // autocommit, no transaction: still pending
    assert.equal(t.movable, false);
    t.applyStatus(0x0003); // BEGIN: in a transaction, which takes them
    t.applyStatus(0x0002); // COMMIT
    assert.equal(t.movable, true);
    for (const sql of ["SET SESSION TRANSACTION READ ONLY", "SET GLOBAL TRANSACTION ISOLATION LEVEL READ COMMITTED"]) {
      t.applyEffects(fx(sql), true);
      assert.equal(t.movable, true, sql);
    }
    assert.deepEqual(fx("SET SESSION TRANSACTION READ ONLY").sysVars, ["tx_isolation", "tx_read_only"]);
  });

  it("tells which reported state changes a statement accounts for: not a CALL or a stored function", () => {
    for (const sql of ["SET @a = 1", "SET NAMES utf8mb4", "SET autocommit = 0", "SET ROLE NONE", "USE app", "CREATE TEMPORARY TABLE t (a INT)",
      "ALTER TABLE t ADD b INT", "SET STATEMENT max_statement_time = 1 FOR SELECT 1", "PREPARE p FROM 'SELECT 1'", "DEALLOCATE PREPARE p"]) {
      assert.equal(explainsStateChange(fx(sql)), true, sql);
    }
    for (const sql of ["CALL p()", "SET @a = 1; CALL p()", "SELECT f()", "EXECUTE IMMEDIATE 'SET @x = 1'"]) {
      assert.equal(explainsStateChange(fx(sql)), false, sql);
    }
    // SET STATEMENT … FOR: the statement after FOR has its effects
    assert.deepEqual(fx("SET STATEMENT max_statement_time = 5 FOR CREATE TEMPORARY TABLE tt (a INT)").tempTablesCreated, ["tt"]);
    assert.equal(fx("CALL app.p(1)").call, true);
  });

  it("tells which statements must run where the session's locks and tables are", () => {
    for (const sql of ["SELECT GET_LOCK('a', 1)", "SELECT RELEASE_LOCK('a')", "SELECT IS_USED_LOCK('a')", "SELECT IS_FREE_LOCK('a')",
      "CREATE TEMPORARY TABLE t (a INT)", "LOCK TABLES t READ", "XA START 'x'", "PREPARE s FROM 'SELECT 1'", "USE db"]) {
      assert.equal(pinsToServer(analyzeStatements(sql)), true, sql);
    }
    for (const sql of ["SELECT @a := 1", "SELECT * FROM t INTO @x", "SELECT 1", "SET @b = 2"]) assert.equal(pinsToServer(analyzeStatements(sql)), false, sql);
  });

  it("does not pin for a statement the server refused", () => {
    const t = new StateTracker();
    t.applyEffects(fx("CREATE TEMPORARY TABLE t (a INT)"), false);
    // a failed CREATE still counts (conservative); a successful DROP clears it
    t.applyEffects(fx("DROP TEMPORARY TABLE t"), false);
    assert.equal(t.movable, false);
    t.applyEffects(fx("DROP TEMPORARY TABLE t"), true);
    assert.equal(t.movable, true);
  });

  it("tracks transactions from status flags, XA, FOUND_ROWS and SQL prepared statements", () => {
    const t = new StateTracker();
    t.applyStatus(0x0003);
    assert.deepEqual(t.pinReasons(), ["transaction"]);
    t.applyStatus(0x0002);
    t.applyEffects(fx("XA START 'x'"), true);
    assert.deepEqual(t.pinReasons(), ["xa"]);
    t.applyEffects(fx("XA COMMIT 'x'"), true);
    t.applyEffects(fx("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1"), true);
    assert.deepEqual(t.pinReasons(), ["found-rows"]);
    t.beforeCommand();
    assert.equal(t.movable, true);
    t.applyEffects(fx("PREPARE s1 FROM 'SELECT ?'"), true);
    assert.deepEqual([...t.sqlPrepared], [["s1", "PREPARE s1 FROM 'SELECT ?'"]]);
    t.applyEffects(fx("DEALLOCATE PREPARE s1"), true);
    assert.deepEqual([...t.sqlPrepared.keys()], []);
  });

  it("tracks binary prepared statements, cursors and long data", () => {
    const t = new StateTracker();
    t.onPrepared(new PreparedStatement(1, "SELECT ?", 1, 1, 0));
    t.onStmtExecuted(1, true);
    assert.deepEqual(t.pinReasons(), ["cursor"]);
    t.onStmtFetchDone(1, true);
    t.onLongData(1);
    assert.deepEqual(t.pinReasons(), ["long-data"]);
    t.onStmtExecuted(1, false);
    assert.equal(t.movable, true);
    t.onStmtClosed(1);
    assert.equal(t.prepared.size, 0);
  });

  it("remembers the parameter types COM_STMT_EXECUTE and COM_STMT_BULK_EXECUTE send", () => {
    const t = new StateTracker();
    t.onPrepared(new PreparedStatement(1, "INSERT INTO t VALUES (?, ?)", 2, 0, 0));
    const stmt = t.prepared.get(1)!;
    // bulk payload: 0xfa, id, flags (no types), then rows: nothing remembered
    const noTypes = Buffer.from("fa0100000000" + "0001" + "00", "hex");
    t.onBulkSent(stmt, noTypes, 0, noTypes.length);
    assert.equal(stmt.paramTypes, null);
    // flags 128: two types follow (LONGLONG unsigned, VAR_STRING)
    const withTypes = Buffer.from("fa01000000" + "8000" + "0880" + "fd00" + "00", "hex");
    t.onBulkSent(stmt, withTypes, 0, withTypes.length);
    assert.equal(stmt.paramTypes!.toString("hex"), "0880fd00");
    // execute payload: 0x17, id, flags, iteration count, null bitmap (1 byte), bound flag 1, types
    const exec = Buffer.from("17010000000001000000" + "00" + "01" + "0800" + "0f00", "hex");
    t.onExecuteSent(stmt, exec, 0, exec.length);
    assert.equal(stmt.paramTypes!.toString("hex"), "08000f00");
    // a bulk payload cut before its types ends is not read past its end
    t.onBulkSent(stmt, withTypes, 0, 9);
    assert.equal(stmt.paramTypes!.toString("hex"), "08000f00");
  });

  it("takes system variables and schema from session tracking", () => {
    const t = new StateTracker();
    t.applyOk(0x4002, 7n, { systemVariables: [["SQL_MODE", "ANSI"]], schema: "shop", stateChanged: true, transactionState: null });
    assert.equal(t.systemVariables.get("sql_mode"), "ANSI");
    assert.equal(t.schema, "shop");
    assert.equal(t.lastInsertId, 7n);
  });

  it("recognises KILL statements Ferry must translate", () => {
    assert.deepEqual(fx("KILL 5").kill, { query: false, id: 5 });
    assert.deepEqual(fx("kill query 12").kill, { query: true, id: 12 });
    assert.deepEqual(fx("KILL CONNECTION 3").kill, { query: false, id: 3 });
    assert.equal(fx("KILL USER app").kill, null);
    assert.equal(fx("KILL 5; SELECT 1").kill, null);
  });
});
