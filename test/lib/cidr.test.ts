import assert from "node:assert/strict";
import { it } from "node:test";
import { parseCidr } from "../../src/lib/cidr.js";

it("CIDR blocks match IPv4, IPv6 and IPv4-mapped addresses", () => {
  const v4 = parseCidr("192.168.0.0/16");
  assert.equal(v4.matches("192.168.44.1"), true);
  assert.equal(v4.matches("::ffff:192.168.44.1"), true);
  assert.equal(v4.matches("192.169.0.1"), false);
  assert.equal(v4.matches("fe80::1"), false);
  assert.equal(parseCidr("10.0.0.7").matches("10.0.0.7"), true);
  assert.equal(parseCidr("10.0.0.7").matches("10.0.0.8"), false);
  assert.equal(parseCidr("10.0.0.0/9").matches("10.127.255.255"), true);
  assert.equal(parseCidr("10.0.0.0/9").matches("10.128.0.0"), false);
  const v6 = parseCidr("fd00::/8");
  assert.equal(v6.matches("fd12:3456::1"), true);
  assert.equal(v6.matches("fe00::1"), false);
  assert.equal(parseCidr("::1").matches("::1"), true);
  assert.equal(parseCidr("0.0.0.0/0").matches("8.8.8.8"), true);
  assert.throws(() => parseCidr("10.0.0.0/33"));
  assert.throws(() => parseCidr("nonsense"));
  // Unix socket clients are "localhost": matched by that name only
  assert.equal(parseCidr("localhost").matches("localhost"), true);
  assert.equal(parseCidr("localhost").matches("127.0.0.1"), false);
  assert.equal(parseCidr("127.0.0.1").matches("localhost"), false);
  assert.equal(parseCidr("0.0.0.0/0").matches("localhost"), false);
  assert.throws(() => parseCidr("localhost/8"), /no prefix length/);
});
