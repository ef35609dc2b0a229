// The `ferry` command.

import { parseArgs } from "node:util";
import { VERSION } from "../version.js";
import { ConfigError, loadConfigFile } from "../config/load.js";
import { startFerry } from "../server.js";
import { runDemo } from "./demo.js";

const HELP = `ferry ${VERSION} - MySQL-protocol proxy that keeps client connections alive

Usage:
  ferry start --config FILE [--log-level LEVEL]   run the proxy
  ferry demo [--port PORT]                        two local MariaDB servers behind Ferry, for trying it out
  ferry check --config FILE                       validate a configuration file and exit
  ferry --help | --version

Signals (start): SIGHUP re-reads the configuration file; SIGINT/SIGTERM stop.
`;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: "string", short: "c" },
      "log-level": { type: "string" },
      port: { type: "string" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "v" },
    },
  });
  if (values.version) {
    process.stdout.write(`ferry ${VERSION}\n`);
    return 0;
  }
  const cmd = positionals[0];
  if (values.help || !cmd) {
    process.stdout.write(HELP);
    return values.help ? 0 : 1;
  }
  switch (cmd) {
    case "start":
    case "check": {
      if (!values.config) {
        process.stderr.write("ferry: --config FILE is required\n");
        return 2;
      }
      let file;
      try {
        file = loadConfigFile(values.config);
      } catch (e) {
        process.stderr.write(`ferry: refused configuration: ${(e as Error).message}\n`);
        return 2;
      }
      if (cmd === "check") {
        process.stdout.write(`${values.config}: OK (${file.servers.length} servers, ${file.users.length} users)\n`);
        return 0;
      }
      const server = await startFerry(file, { logLevel: values["log-level"] });
      const configPath = values.config;
      process.on("SIGHUP", () => {
        try {
          server.reload(loadConfigFile(configPath));
        } catch (e) {
          server.log.error({ err: e instanceof ConfigError ? e.message : String(e) }, "configuration reload refused; keeping the running configuration");
        }
      });
      await new Promise<void>((resolve) => {
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      });
      server.log.info("stopping: no new connections; sessions end as their transactions do");
      await server.shutdown();
      return 0;
    }
    case "demo":
      return runDemo({ port: values.port ? Number(values.port) : 6033 });
    default:
      process.stderr.write(`ferry: unknown command "${cmd}"\n\n${HELP}`);
      return 2;
  }
}
