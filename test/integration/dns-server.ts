// A tiny authoritative DNS server over UDP for discovery tests: answers A and SRV questions from a
// table the test edits, NXDOMAIN for names it does not know. Enough of RFC 1035 for Node's resolver.

import dgram from "node:dgram";

export interface SrvRecord { priority: number; weight: number; port: number; target: string }

const TYPE_A = 1, TYPE_SRV = 33;

function encodeName(name: string): Buffer {
  const parts = name.replace(/\.$/, "").split(".").map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, "ascii")]));
  return Buffer.concat([...parts, Buffer.from([0])]);
}

export class TestDns {
  readonly a = new Map<string, string[]>();
  readonly srv = new Map<string, SrvRecord[]>();
  queries = 0;
  /** when set, questions go unanswered (a DNS outage) */
  silent = false;
  /** names whose queries go unanswered (a partial outage) */
  readonly unanswered = new Set<string>();
  private constructor(private readonly socket: dgram.Socket, readonly port: number) {}

  static async start(): Promise<TestDns> {
    const socket = dgram.createSocket("udp4");
    await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
    const d = new TestDns(socket, socket.address().port);
    socket.on("message", (msg, rinfo) => {
      try {
        const reply = d.answer(msg);
        if (reply) socket.send(reply, rinfo.port, rinfo.address);
      } catch {
        // malformed query: no answer
      }
    });
    return d;
  }

  private answer(q: Buffer): Buffer | null {
    if (this.silent || q.length < 12 || q.readUInt16BE(4) !== 1) return null;
    this.queries++;
    let p = 12;
    const labels: string[] = [];
    while (q[p] !== 0) {
      labels.push(q.toString("ascii", p + 1, p + 1 + q[p]));
      p += q[p] + 1;
    }
    p++;
    const qtype = q.readUInt16BE(p);
    const question = q.subarray(12, p + 4);
    const name = labels.join(".").toLowerCase();
    if (this.unanswered.has(name)) return null;
    const answers: Buffer[] = [];
    const known = this.a.has(name) || this.srv.has(name);
    const rr = (type: number, rdata: Buffer): Buffer => {
      const h = Buffer.alloc(12);
      h.writeUInt16BE(0xc00c, 0); // pointer to the question's name
      h.writeUInt16BE(type, 2);
      h.writeUInt16BE(1, 4); // IN
      h.writeUInt32BE(1, 6); // TTL 1 s
      h.writeUInt16BE(rdata.length, 10);
      return Buffer.concat([h, rdata]);
    };
    if (qtype === TYPE_A) for (const ip of this.a.get(name) ?? []) answers.push(rr(TYPE_A, Buffer.from(ip.split(".").map(Number))));
    if (qtype === TYPE_SRV) {
      for (const s of this.srv.get(name) ?? []) {
        const fixed = Buffer.alloc(6);
        fixed.writeUInt16BE(s.priority, 0);
        fixed.writeUInt16BE(s.weight, 2);
        fixed.writeUInt16BE(s.port, 4);
        answers.push(rr(TYPE_SRV, Buffer.concat([fixed, encodeName(s.target)])));
      }
    }
    const header = Buffer.alloc(12);
    header.writeUInt16BE(q.readUInt16BE(0), 0);
    header.writeUInt16BE(0x8400 | (known ? 0 : 3), 2); // response, authoritative; NXDOMAIN for unknown names
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length, 6);
    return Buffer.concat([header, question, ...answers]);
  }

  close(): void {
    this.socket.close();
  }
}
