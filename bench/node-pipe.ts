// A reference for the benchmark: a TCP relay built from Ferry's own socket I/O (SocketReader,
// SocketWriter, the client socket re-bound for direct reads) and nothing else: no protocol, no
// session, no state. Each client gets its own server connection; bytes go across unchanged, with
// backpressure both ways. What it costs per query is what one Node event loop costs before Ferry
// does any work of its own.
//   node dist/bench/node-pipe.js LISTEN_PORT SERVER_PORT [NICE]

import net from "node:net";
import { setPriority } from "node:os";
import type { Duplex } from "node:stream";
import { rebindForForwarding } from "../src/frontend/rebind.js";
import { SocketReader } from "../src/lib/socket-reader.js";
import { SocketWriter } from "../src/lib/socket-writer.js";

const [listenPort, serverPort, nice] = process.argv.slice(2).map(Number);
if (!listenPort || !serverPort) {
  process.stderr.write("usage: node-pipe.js LISTEN_PORT SERVER_PORT [NICE]\n");
  process.exit(2);
}
if (nice) setPriority(0, nice);

/** Reads of `reader` go to `out`; `from` (the socket read) pauses while `out` cannot take more. */
function relay(reader: SocketReader, from: Duplex, out: SocketWriter): void {
  out.onDrain = () => from.resume();
  reader.sink = {
    onChunk(chunk: Buffer): void {
      const more = out.write(chunk);
      if (out.queued) reader.renew(out);
      if (!more) from.pause();
    },
  };
}

net.createServer({ noDelay: true, pauseOnConnect: true }, (accepted) => {
  const fromClient = new SocketReader();
  const client = rebindForForwarding(accepted, fromClient);
  if (client === null) return accepted.destroy();
  client.pause(); // until the server connection is up
  const fromServer = new SocketReader();
  const server = net.connect({ host: "127.0.0.1", port: serverPort, noDelay: true, onread: fromServer.onread });
  relay(fromServer, server, new SocketWriter(client));
  server.once("connect", () => {
    fromServer.attach(server);
    fromClient.attach(client);
    relay(fromClient, client, new SocketWriter(server));
    client.resume();
  });
  const end = (): void => {
    client.destroy();
    server.destroy();
  };
  for (const s of [client, server]) {
    s.on("error", end);
    s.on("close", end);
  }
}).listen(listenPort, "127.0.0.1");
