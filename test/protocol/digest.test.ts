import assert from "node:assert/strict";
import { it } from "node:test";
import { digestText } from "../../src/protocol/digest.js";

it("digest text replaces literals, collapses lists and whitespace, drops comments", () => {
  assert.equal(digestText("SELECT c FROM sbtest1 WHERE id=42"), "SELECT c FROM sbtest1 WHERE id = ?");
  assert.equal(digestText("select *\n from t where id in (1, 2, 3) and x = -5 /* hi */ limit 10"), "select * from t where id in (?,...) and x = ? limit ?");
  assert.equal(digestText("SELECT COUNT(*) FROM `a`.`b` WHERE name='o''x' FOR UPDATE"), "SELECT COUNT(*) FROM `a`.`b` WHERE name = ? FOR UPDATE");
  assert.equal(digestText("UPDATE t SET a=a-1 WHERE id = 3"), "UPDATE t SET a = a - ? WHERE id = ?");
  assert.equal(digestText("SELECT 'a' ; "), "SELECT ? ;");
  assert.equal(digestText("SELECT * FROM t WHERE a IN ('x', 'y\\'z', \"w\") AND b IN (.5, 0x1F) AND c IN (`q`)"),
    "SELECT * FROM t WHERE a IN (?,...) AND b IN (?,...) AND c IN (`q`)");
});
