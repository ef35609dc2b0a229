import assert from "node:assert/strict";
import { it } from "node:test";
import { isRepeatableRead } from "../../src/session/read-retry.js";

it("reads that change nothing run again", () => {
  for (const sql of [
    "SELECT c FROM sbtest1 WHERE id = 5",
    "select count(*), max(id), group_concat(name order by name) from t where a in (1, 2) and b like 'x%'",
    "(SELECT 1) UNION (SELECT 2)",
    "WITH r AS (SELECT id FROM t) SELECT * FROM r JOIN u ON (r.id = u.id)",
    "SHOW TABLES",
    "DESCRIBE t",
    "EXPLAIN SELECT * FROM t",
    "SELECT SLEEP(1), @keep, @@port, NOW(), JSON_EXTRACT(doc, '$.a') FROM t FORCE INDEX (PRIMARY) FOR UPDATE",
    "SELECT * FROM t LEFT JOIN u USING (id) WHERE EXISTS (SELECT 1 FROM v) /* not code */",
    "SELECT IF(a > 0, 'p', 'n'), CAST(b AS CHAR), DATE_ADD(d, INTERVAL (1) DAY) FROM t",
  ]) assert.equal(isRepeatableRead(sql), true, sql);
});

it("writes, several statements, INTO, stored functions and calls not known to be pure do not", () => {
  for (const sql of [
    "UPDATE t SET a = 1",
    "INSERT INTO t VALUES (1)",
    "SELECT 1; SELECT 2",
    "SELECT a INTO @x FROM t",
    "SELECT * FROM t INTO OUTFILE '/tmp/x'",
    "SELECT my_function(1)",
    "SELECT app.concat(a) FROM t",
    "SELECT GET_LOCK('x', 1)",
    "SELECT NEXTVAL(seq)",
    "SELECT LAST_INSERT_ID(5)",
    "SELECT /*!100000 my_function(1) */ 1",
    "CALL p()",
    "ANALYZE SELECT * FROM t",
    "DO SLEEP(1)",
    "SET @a = (SELECT 1)",
    "",
  ]) assert.equal(isRepeatableRead(sql), false, sql);
});
