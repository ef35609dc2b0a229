import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { nativeHash, nativeToken, verifyNativeToken, parseNativeHash } from "../../src/protocol/auth/native-password.js";
import { sha2Token, verifySha2Token } from "../../src/protocol/auth/caching-sha2.js";
import { decodeErr, decodeHandshakeResponse, decodeHandshakeV10, decodeOk, encodeEof, encodeErr, encodeHandshakeResponse, encodeHandshakeV10, encodeOk, encodeStmtClose } from "../../src/protocol/packets.js";
import { PacketReader } from "../../src/protocol/reader.js";
import { framePayload, PacketWriter } from "../../src/protocol/writer.js";
import { CLIENT_LONG_PASSWORD, CLIENT_PLUGIN_AUTH, CLIENT_PROTOCOL_41, CLIENT_SECURE_CONNECTION, CLIENT_SESSION_TRACK, SERVER_SESSION_STATE_CHANGED } from "../../src/protocol/constants.js";

describe("codec", () => {
  it("encodes length-encoded integers at every size boundary", () => {
    const enc = (n: number | bigint) => new PacketWriter().lenenc(n).finish(0).subarray(4).toString("hex");
    assert.equal(enc(250), "fa");
    assert.equal(enc(251), "fcfb00");
    assert.equal(enc(0xffff), "fcffff");
    assert.equal(enc(0x10000), "fd000001");
    assert.equal(enc(0x1000000), "fe0000000100000000");
    const r = new PacketReader(Buffer.from("fa" + "fcfb00" + "fd000001" + "fe0000000100000000", "hex"));
    assert.deepEqual([r.lenenc(), r.lenenc(), r.lenenc(), r.lenenc()], [250, 251, 0x10000, 0x1000000]);
  });

  it("encodes OK, EOF and ERR packets byte for byte", () => {
    assert.equal(encodeOk(2, { statusFlags: 0x0002 }, 0).toString("hex"), "0700000200000002000000");
    assert.equal(encodeEof(5, 0x0022).toString("hex"), "05000005fe00002200");
    assert.equal(encodeErr(1, 1045, "28000", "no").toString("hex"), "0b000001ff1504233238303030" + Buffer.from("no").toString("hex"));
    const e = decodeErr(encodeErr(1, 1045, "28000", "ferry: denied").subarray(4));
    assert.deepEqual(e, { errno: 1045, sqlState: "28000", message: "ferry: denied" });
    assert.equal(encodeStmtClose(0x01020304).toString("hex"), "050000001904030201", "COM_STMT_CLOSE: sequence 0, the id little-endian");
  });

  it("frames payloads of 0xFFFFFF bytes and more into continuation packets", () => {
    const payload = Buffer.alloc(0xffffff + 10, 7);
    const framed = framePayload(payload, 0);
    assert.equal(framed.readUIntLE(0, 3), 0xffffff);
    assert.equal(framed[3], 0);
    const second = 4 + 0xffffff;
    assert.equal(framed.readUIntLE(second, 3), 10);
    assert.equal(framed[second + 3], 1);
    const exact = framePayload(Buffer.alloc(0xffffff), 3);
    assert.equal(exact.length, 4 + 0xffffff + 4, "an exact multiple ends with an empty packet");
    assert.equal(exact[exact.length - 1], 4);
  });

  it("decodes OK session-tracking data, MySQL and MariaDB layouts", () => {
    // status 0x4002, info "", then state: sysvar autocommit=ON; schema "db1" (lenenc inside); state change "1" bare
    const sysvar = Buffer.concat([Buffer.from([0x0a]), Buffer.from("autocommit"), Buffer.from([0x02]), Buffer.from("ON")]);
    const schema = Buffer.concat([Buffer.from([0x03]), Buffer.from("db1")]);
    const state = Buffer.concat([
      Buffer.from([0x00, sysvar.length]), sysvar,
      Buffer.from([0x01, schema.length]), schema,
      Buffer.from([0x02, 0x01]), Buffer.from("1"),
    ]);
    const payload = Buffer.concat([Buffer.from([0x00, 0x01, 0x05, 0x02, 0x40, 0x00, 0x00, 0x00, state.length]), state]);
    const ok = decodeOk(payload, CLIENT_SESSION_TRACK);
    assert.equal(ok.affectedRows, 1n);
    assert.equal(ok.lastInsertId, 5n);
    assert.equal(ok.statusFlags & SERVER_SESSION_STATE_CHANGED, SERVER_SESSION_STATE_CHANGED);
    assert.deepEqual(ok.track?.systemVariables, [["autocommit", "ON"]]);
    assert.equal(ok.track?.schema, "db1");
    assert.equal(ok.track?.stateChanged, true);
  });

  it("reads MariaDB's extended capabilities from a greeting only when CLIENT_LONG_PASSWORD is clear (MySQL's are filler)", () => {
    const greeting = (capabilities: number) => encodeHandshakeV10({
      protocolVersion: 10, serverVersion: "10.11.0-MariaDB", connectionId: 7, authPluginData: Buffer.alloc(20, 1),
      capabilities, mariadbCapabilities: 0x1c, collation: 45, statusFlags: 2, authPluginName: "mysql_native_password",
    }).subarray(4);
    const caps = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH;
    assert.equal(decodeHandshakeV10(greeting(caps)).mariadbCapabilities, 0x1c);
    assert.equal(decodeHandshakeV10(greeting(caps | CLIENT_LONG_PASSWORD)).mariadbCapabilities, 0);
  });

  it("round-trips a handshake response with attributes", () => {
    const h = {
      capabilities: 0x00ffa68d | 0x00100000 | 0x00200000, maxPacketSize: 1 << 24, collation: 45, username: "app", authResponse: Buffer.alloc(20, 1),
      database: "db", authPluginName: "mysql_native_password", attributes: new Map([["_client_name", "t"]]), mariadbCapabilities: 0, sslRequest: false,
    };
    const d = decodeHandshakeResponse(encodeHandshakeResponse(h, 1).subarray(4));
    assert.equal(d.username, "app");
    assert.equal(d.database, "db");
    assert.deepEqual([...d.attributes], [["_client_name", "t"]]);
    assert.ok(d.authResponse.equals(h.authResponse));
  });

  it("refuses truncated packets instead of reading past the end", () => {
    assert.throws(() => decodeHandshakeResponse(Buffer.from([0x85, 0xa6, 0x0f])), /truncated/);
    assert.throws(() => decodeOk(Buffer.from([0x00, 0xfc, 0x01]), 0), /truncated/);
  });

  it("verifies mysql_native_password against the stored hash and recovers SHA1(password)", () => {
    const salt = Buffer.from("abcdefghijklmnopqrst");
    assert.equal(nativeHash("app"), "*5BCB3E6AC345B435C7C2E6B7949A04CE6F6563D3");
    const stage2 = parseNativeHash(nativeHash("secret"))!;
    const stage1 = verifyNativeToken(nativeToken("secret", salt), salt, stage2);
    assert.ok(stage1 && stage1.length === 20);
    assert.equal(verifyNativeToken(nativeToken("wrong", salt), salt, stage2), null);
    assert.ok(verifySha2Token(sha2Token("pw", salt), salt, "pw"));
    assert.ok(!verifySha2Token(sha2Token("px", salt), salt, "pw"));
  });
});
