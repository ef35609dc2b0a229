import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loginVariables, restoreStatement, selfAssignments } from "../../src/backend/login-state.js";

describe("login state a reset does not give back", () => {
  it("reads sql_mode (IGNORE_SPACE) from every server, max_statement_time only from MariaDB servers (MySQL has no such variable)", () => {
    assert.deepEqual(loginVariables("5.5.5-10.11.6-MariaDB-0+deb12u1"), ["character_set_client", "character_set_results", "collation_connection", "sql_mode", "max_statement_time"]);
    assert.deepEqual(loginVariables("8.0.36"), ["character_set_client", "character_set_results", "collation_connection", "sql_mode"]);
  });

  it("appends each variable assigned to itself, for the tracking data to report", () => {
    assert.equal(selfAssignments(["collation_connection", "max_statement_time"]), ", collation_connection=@@collation_connection, max_statement_time=@@max_statement_time");
    assert.equal(selfAssignments([]), "");
  });

  it("writes names quoted, numbers as they are, NULL as NULL, collation_connection after the character sets", () => {
    assert.equal(restoreStatement([["character_set_client", "utf8mb4"], ["character_set_results", null], ["collation_connection", "utf8mb4_unicode_ci"], ["max_statement_time", "0.500000"]]),
      "SET SESSION character_set_client='utf8mb4', character_set_results=NULL, collation_connection='utf8mb4_unicode_ci', max_statement_time=0.500000");
  });

  it("writes an sql_mode as its comma-separated names, or empty", () => {
    assert.equal(restoreStatement([["sql_mode", "IGNORE_SPACE,STRICT_TRANS_TABLES"], ["max_statement_time", "0.000000"]]),
      "SET SESSION sql_mode='IGNORE_SPACE,STRICT_TRANS_TABLES', max_statement_time=0.000000");
    assert.equal(restoreStatement([["sql_mode", ""]]), "SET SESSION sql_mode=''");
    assert.equal(restoreStatement([["character_set_results", ""]]), "SET SESSION character_set_results=NULL", "a NULL character set, as tracking reports it");
  });

  it("writes nothing it would have to quote: such a connection is not pooled", () => {
    assert.equal(restoreStatement([["character_set_client", "utf8'; DROP TABLE t; --"]]), null);
  });
});
