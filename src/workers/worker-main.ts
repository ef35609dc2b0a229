// A worker process (proxy.workers > 1): one data plane, serving the client connections the
// primary passes it. Everything else it learns from the primary (workers/pool.ts); when the
// primary goes away, so does it.

import type net from "node:net";
import { Writable } from "node:stream";
import type { Logger } from "pino";
import { buildRuntimeConfig } from "../config/runtime-config.js";
import { tlsMaterialOf, type TlsMaterial } from "../frontend/tls-material.js";
import { createLogger } from "../observe/logger.js";
import type { KillOutcome } from "../session/registry.js";
import { DataPlane } from "./data-plane.js";
import { AnnouncingSet, PendingAnswers, type FromWorker, type ToWorker } from "./messages.js";

const STATS_INTERVAL_MS = 250;

let plane: DataPlane | null = null;
let tls: TlsMaterial | null = null;
let log: Logger | null = null;
const sha2 = new AnnouncingSet();
const answers = new PendingAnswers<KillOutcome>(15_000, () => ({ result: "error", errno: 1105, sqlState: "HY000", message: "ferry: KILL failed: Ferry's primary process did not answer" }));
// A login or backend connection the primary does not count within this time is refused.
const slotAnswers = new PendingAnswers<boolean>(15_000, () => false);

function send(m: FromWorker): void {
  if (process.connected) process.send!(m);
}

/** A log destination that hands each line to the primary. */
function toPrimary(): Writable {
  return new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      send({ t: "log", line: chunk.toString() });
      done();
    },
  });
}

process.on("message", (m: ToWorker, handle: unknown) => {
  switch (m.t) {
    case "start": {
      log = createLogger(m.logLevel, m.logToPrimary ? toPrimary() : undefined).child({ worker: m.index });
      tls = tlsMaterialOf(m.tls);
      for (const k of m.sha2) sha2.addQuietly(k);
      sha2.onAdd = (key) => send({ t: "sha2", key });
      plane = new DataPlane({
        index: m.index, instances: m.instances, runtime: buildRuntimeConfig(m.file, m.overlay), log, tls, sha2Cache: sha2,
        serverVersion: m.serverVersion, backendMariadbCapabilities: m.backendMariadbCapabilities,
        remote: {
          kill(req) {
            const [rid, answer] = answers.open(0);
            send({ t: "kill", rid, req });
            return answer;
          },
        },
        slots: {
          acquire(key, max) {
            const [rid, answer] = slotAnswers.open(0);
            send({ t: "slot", rid, key, max });
            return answer;
          },
          release: (key) => send({ t: "slot-release", key }),
        },
      });
      plane.start();
      setInterval(() => send({ t: "stats", stats: plane!.stats() }), STATS_INTERVAL_MS).unref();
      send({ t: "ready" });
      return;
    }
    case "conn": {
      const socket = handle as net.Socket | undefined;
      send({ t: "adopted", token: m.token });
      const release = (): void => send({ t: "released", token: m.token });
      if (!plane || !socket) {
        socket?.destroy();
        release();
        return;
      }
      plane.serve(socket, m.local, release);
      return;
    }
    case "config":
      plane?.apply(buildRuntimeConfig(m.file, m.overlay));
      return;
    case "tls":
      if (tls) Object.assign(tls, tlsMaterialOf(m.tls));
      return;
    case "kill":
      if (plane) void plane.kill(m.req).then((outcome) => send({ t: "killed", rid: m.rid, outcome }));
      else send({ t: "killed", rid: m.rid, outcome: { result: "unknown" } });
      return;
    case "killed":
      answers.answer(m.rid, m.outcome);
      return;
    case "slot-answer":
      // A place granted after the asker gave up waiting goes back.
      if (!slotAnswers.answer(m.rid, m.granted) && m.granted) send({ t: "slot-release", key: m.key });
      return;
    case "sha2":
      sha2.addQuietly(m.key);
      return;
    case "shutdown":
      void (plane?.shutdown(m.waitMs) ?? Promise.resolve()).then(() => exitSoon(0));
      return;
  }
});

// Signals to the whole process group (Ctrl-C in a terminal, systemd's stop) reach workers too: they
// stop when the primary says, so that their sessions get the same graceful shutdown.
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, () => undefined);

// The primary is gone (it exited or was killed): this process's clients go with it.
process.on("disconnect", () => {
  log?.warn("the primary process went away; closing this worker's sessions");
  plane?.close();
  exitSoon(0);
});

/** Exits once the log has been written out. */
function exitSoon(code: number): void {
  if (log) log.flush?.();
  setTimeout(() => process.exit(code), 50);
}
