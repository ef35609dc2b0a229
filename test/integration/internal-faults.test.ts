// A fault in Ferry's own code (a bug, injected here by making one method throw once) ends the one
// session it happened in: logged at error level with its stack, the client told with 1105 when an
// ERR can take the place of its response, every other session and the server unharmed. Faults are
// injected where the data plane runs from a socket read (a command, a response), from a promise
// continuation, and while a session starts after its login; and into the monitor's check round,
// whose loop must go on.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type mysql from "mysql2/promise";
import type { FerryServer } from "../../src/server.js";
import { ClientInput } from "../../src/session/client-input.js";
import { MoveControl } from "../../src/session/move-control.js";
import { StateTracker } from "../../src/session/state-tracker.js";
import { Monitor } from "../../src/monitor/monitor.js";
import { Cluster, connectVia, MONITOR_PASSWORD, MONITOR_USER, monitorGrants, one, startProxy, waitFor, withTimeout, type LogSink } from "./harness.js";

/** Makes `proto[name]` throw once, on its next call; returns how to restore it. */
function throwOnce<T extends object>(proto: T, name: keyof T & string): () => void {
  const original = proto[name] as unknown as (...args: unknown[]) => unknown;
  let armed = true;
  (proto as Record<string, unknown>)[name] = function (this: unknown, ...args: unknown[]): unknown {
    if (armed) {
      armed = false;
      throw new Error(`injected fault in ${name}`);
    }
    return original.apply(this, args);
  };
  return () => {
    (proto as Record<string, unknown>)[name] = original;
  };
}

describe("faults in Ferry's own code", () => {
  let cluster: Cluster;
  let ferry: FerryServer;
  let logs: LogSink;
  let bystander: mysql.Connection;

  before(async () => {
    cluster = await Cluster.start(1);
    await cluster.servers[0].sql(monitorGrants);
    ({ ferry, logs } = await startProxy(cluster, `[monitor]\nuser = "${MONITOR_USER}"\npassword = "${MONITOR_PASSWORD}"\ninterval_ms = 100\n`));
    bystander = await connectVia(ferry.port);
    await one(bystander, "SET @mine = 'kept'");
  });

  after(async () => {
    await bystander?.end().catch(() => undefined);
    await ferry?.close();
    await cluster?.stop();
  });

  /** The session of `c` ended, the bystander's goes on with its state, and the fault was logged once with its stack. */
  async function onlyThatSessionEnded(c: mysql.Connection | null, method: string, logFrom: number): Promise<void> {
    assert.ok(await waitFor(() => ferry.sessions() === 1, 3000), `the faulty session ended (${ferry.sessions()} sessions)`);
    assert.equal((await withTimeout(one(bystander, "SELECT @mine AS v"), 5000, "the other session's answer")).v, "kept", "the other session goes on, its state intact");
    const errors = logs.lines.slice(logFrom).filter((l) => /"level":50/.test(l));
    assert.equal(errors.length, 1, errors.join("\n"));
    assert.match(errors[0], /internal error while (serving|starting) the session; closing it/);
    assert.match(errors[0], new RegExp(`injected fault in ${method}`));
    assert.match(errors[0], /at /, "the stack is logged");
    await c?.end().catch(() => undefined);
    const fresh = await connectVia(ferry.port);
    assert.equal(Number((await one(fresh, "SELECT 1 + 1 AS two")).two), 2, "new sessions are served");
    await fresh.end();
  }

  /**
   * Opens a session, makes `proto[method]` throw once while `work` runs on it, then checks that
   * only that session ended. Returns where the log stood before the fault.
   */
  async function withFault<T extends object>(proto: T, method: keyof T & string, work: (c: mysql.Connection) => Promise<void>): Promise<number> {
    const c = await connectVia(ferry.port);
    c.on("error", () => undefined);
    const from = logs.lines.length;
    const restore = throwOnce(proto, method);
    try {
      await work(c);
    } finally {
      restore();
    }
    await onlyThatSessionEnded(c, method, from);
    return from;
  }

  it("while dispatching a command: the client gets 1105 in place of the response", async () => {
    await withFault(StateTracker.prototype, "beforeCommand", async (c) => {
      await assert.rejects(withTimeout(c.query("SELECT 1"), 5000, "the answer to SELECT 1"), (e: mysql.QueryError) => {
        assert.equal(e.errno, 1105);
        assert.equal(e.sqlState, "HY000");
        assert.equal(e.message, "ferry: internal error (injected fault in beforeCommand); the session is closed");
        return true;
      });
    });
  });

  it("while reading a response: the connection is closed (the fault came inside a packet), not blamed on the server", async () => {
    // applyStatus runs on the response's closing OK: the fault comes while its packet is scanned.
    const from = await withFault(StateTracker.prototype, "applyStatus", async (c) => {
      await assert.rejects(withTimeout(c.query("SELECT 1"), 5000, "the end of SELECT 1"),
        (e: Error & { code?: string }) => e.code === "PROTOCOL_CONNECTION_LOST" || /closed|lost/i.test(e.message));
    });
    assert.ok(!logs.lines.slice(from).some((l) => /malformed response/.test(l)), "not taken for a malformed response from the server");
  });

  it("while starting a session after its login: that client's connection is closed", async () => {
    const from = logs.lines.length;
    const restore = throwOnce(ClientInput.prototype, "rebind");
    try {
      await assert.rejects(withTimeout(connectVia(ferry.port), 5000, "the login"), (e: Error) => !/timed out/.test(e.message));
    } finally {
      restore();
    }
    await onlyThatSessionEnded(null, "rebind", from);
  });

  it("after a promise (the user variables read back after SET @x): the session ends, nothing else", async () => {
    // The read-back runs on the connection, then the session looks for a pending move: that throws.
    await withFault(MoveControl.prototype, "maybe", async (c) => {
      await withTimeout(c.query("SET @x = 5"), 5000, "the answer to SET @x").catch(() => undefined);
      assert.ok(await waitFor(() => ferry.sessions() === 1, 3000), `the faulty session ended (${ferry.sessions()} sessions)`);
    });
  });

  it("in the monitor's check round: logged, and the next rounds run", async () => {
    const from = logs.lines.length;
    const proto = Monitor.prototype as unknown as { round(): Promise<void> };
    const original = proto.round;
    let calls = 0, thrown = false;
    proto.round = async function (this: Monitor): Promise<void> {
      calls++;
      if (!thrown) {
        thrown = true;
        throw new Error("injected fault in round");
      }
      return original.call(this);
    };
    try {
      assert.ok(await waitFor(() => calls >= 3, 5000), `the rounds went on after the fault (${calls} rounds)`);
    } finally {
      proto.round = original;
    }
    const errors = logs.lines.slice(from).filter((l) => /"level":50/.test(l));
    assert.equal(errors.length, 1, errors.join("\n"));
    assert.match(errors[0], /monitor: internal error in a check round; the next round runs as usual/);
    assert.match(errors[0], /injected fault in round/);
    assert.equal((await withTimeout(one(bystander, "SELECT @mine AS v"), 5000, "the session's answer")).v, "kept", "sessions go on");
  });
});
