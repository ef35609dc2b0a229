// `ferry demo`: two local MariaDB servers, a demo user and schema, and Ferry in front of them.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../config/load.js";
import { startFerry } from "../server.js";
import { ensureMariadb, LocalMariadb } from "./local-mariadb.js";

export async function runDemo(o: { port: number }): Promise<number> {
  const say = (s: string): void => { process.stdout.write(`${s}\n`); };
  try {
    await ensureMariadb(say);
  } catch (e) {
    process.stderr.write(`ferry demo: ${(e as Error).message}\n`);
    return 1;
  }
  const dir = mkdtempSync(join(tmpdir(), "ferry-demo-"));
  const servers: LocalMariadb[] = [];
  let stopping = false;
  const cleanup = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await Promise.all(servers.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    say("starting two MariaDB servers...");
    for (let i = 0; i < 2; i++) servers.push(await LocalMariadb.create({ dir: join(dir, `server${i + 1}`) }));
    for (const s of servers) {
      await s.sql(`CREATE USER 'demo'@'%' IDENTIFIED BY 'demo'; CREATE DATABASE demo;
        GRANT ALL ON demo.* TO 'demo'@'%';
        CREATE TABLE demo.greetings (id INT AUTO_INCREMENT PRIMARY KEY, server VARCHAR(64), said VARCHAR(255));
        INSERT INTO demo.greetings (server, said) VALUES (CONCAT('port ', @@port), 'hello from behind Ferry');`);
    }
    const config = parseConfig(`
[proxy]
listen = "127.0.0.1:${o.port}"
[log]
level = "info"
${servers.map((s) => `[[servers]]\nhost = "127.0.0.1"\nport = ${s.port}\nhostgroup = 0\n`).join("\n")}
[[users]]
name = "demo"
password = "demo"
default_hostgroup = 0
`, "demo config");
    const ferry = await startFerry(config, { logLevel: "warn" });
    say("");
    say(`Ferry is listening on 127.0.0.1:${ferry.port}, in front of MariaDB on ports ${servers.map((s) => s.port).join(" and ")}.`);
    say("Connect with:");
    say(`  mariadb -h 127.0.0.1 -P ${ferry.port} -u demo -pdemo demo`);
    say("and try:  SELECT @@port, CONNECTION_ID(); SELECT * FROM greetings;");
    say("Each new connection goes to the server with the fewest sessions. Press Ctrl-C to stop.");
    // Listeners stay for the whole stop: a second Ctrl-C must not kill the process before the
    // servers it started have shut down.
    await new Promise<void>((resolve) => {
      process.on("SIGINT", resolve);
      process.on("SIGTERM", resolve);
    });
    say("\nstopping Ferry and the servers...");
    await ferry.close();
    await cleanup();
    return 0;
  } catch (e) {
    process.stderr.write(`ferry demo: ${(e as Error).message}\n`);
    await cleanup();
    return 1;
  }
}
