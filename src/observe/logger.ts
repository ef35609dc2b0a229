// Structured JSON logging (pino). Secrets never reach a log line: the fields that could hold one
// are redacted wherever they appear.

import { pino, type Logger } from "pino";

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino({
    level,
    base: { name: "ferry" },
    redact: { paths: ["password", "*.password", "backend_password", "*.backend_password", "stage1", "*.stage1", "authResponse", "*.authResponse"], censor: "[redacted]" },
  }, destination as pino.DestinationStream | undefined);
}

export type { Logger };
