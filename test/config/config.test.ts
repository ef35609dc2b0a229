import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import { buildRuntimeConfig } from "../../src/config/runtime-config.js";

describe("configuration", () => {
  it("accepts the documented example and fills defaults", () => {
    const c = parseConfig(`
[proxy]
listen = "127.0.0.1:6033"
max_connections = 10000
[[servers]]
host = "127.0.0.1"
port = 3310
hostgroup = 0
weight = 1
[[users]]
name = "app"
password = "*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9"
default_hostgroup = 0
`);
    assert.equal(c.tls.enabled, true);
    assert.deepEqual(c.proxy.proxy_protocol_networks, [], "no PROXY headers accepted unless configured");
    assert.equal(c.servers[0].send_proxy_protocol, false);
    assert.equal(c.servers[0].status, "ONLINE");
    const rt = buildRuntimeConfig(c);
    assert.equal(rt.users.get("app")?.password, null, "a hash is not a plaintext password");
    assert.equal(rt.users.get("app")?.nativeStage2?.toString("hex").toUpperCase(), "6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9");
  });

  it("names the key that is wrong", () => {
    assert.throws(() => parseConfig(`[[servers]]\nhost = "a"\nport = "x"\n`), /servers\[0\]\.port/);
    assert.throws(() => parseConfig(`[[servers]]\nhost = "/run/mysqld/mysqld.sock"\nuse_ssl = true\n`), /servers\[0\]\.use_ssl: a server reached over its Unix socket/);
    assert.throws(() => parseConfig(`[proxy]\nlisten = "nope"\n`), /proxy\.listen/);
    assert.throws(() => parseConfig(`[proxy]\nmax_conections = 5\n`), /proxy.*max_conections|Unrecognized key/);
    assert.throws(() => parseConfig(`[[users]]\nname = "a"\n[[users]]\nname = "a"\n`), /users\[1\]\.name: duplicate user/);
    assert.throws(() => parseConfig(`this is = not toml =`), /not valid TOML/);
    assert.throws(() => parseConfig(`[proxy]\nproxy_protocol_networks = ["10.0.0.0/8", "10.1.2.300"]\n`), /proxy\.proxy_protocol_networks\[1\]: expected an address or CIDR block/);
    assert.throws(() => parseConfig(`[[routes]]\nclient_addr = "10.0.0.0/40"\ndestination_hostgroup = 1\n`), /routes\[0\]\.client_addr: .*prefix length \/40 out of range/);
    assert.throws(() => parseConfig(`[[servers]]\nhost = "a"\nsend_proxy_protocol = "yes"\n`), /servers\[0\]\.send_proxy_protocol/);
    assert.throws(() => parseConfig(`[[routes]]\nclient_addr = "localhost/8"\ndestination_hostgroup = 1\n`), /routes\[0\]\.client_addr: .*localhost takes no prefix length/);
    assert.equal(parseConfig(`[proxy]\nproxy_protocol_networks = ["localhost", "::1"]\n`).proxy.proxy_protocol_networks.length, 2);
    assert.throws(() => parseConfig(`[proxy]\nnice = -30\n`), /proxy\.nice: .*-20/);
    assert.throws(() => parseConfig(`[proxy]\nnice = 2.5\n`), /proxy\.nice/);
    assert.equal(parseConfig(`[proxy]\nnice = -6\n`).proxy.nice, -6);
    assert.equal(parseConfig(``).proxy.nice, undefined, "unset: Ferry keeps the priority it was started with");
  });
});
