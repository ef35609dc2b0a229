// Waits until a MySQL-protocol server (or a proxy in front of one) greets on a loopback port.

import { probeServer } from "../src/backend/backend-connection.js";

export async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      await probeServer({ host: "127.0.0.1", port }, 500);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`nothing answers on ${port}`);
}
