// Address blocks ("10.0.0.0/8", "::1", "fd00::/8"): parse once, match client addresses cheaply.
// IPv4-mapped IPv6 addresses ("::ffff:10.1.2.3") match IPv4 blocks; "localhost" matches the
// clients of a Unix socket.

export interface Cidr {
  readonly text: string;
  matches(address: string): boolean;
}

function ipv4Bytes(s: string): number[] | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out = parts.map((p) => (/^\d{1,3}$/.test(p) ? Number(p) : NaN));
  return out.every((n) => n >= 0 && n <= 255) ? out : null;
}

function ipv6Bytes(s: string): number[] | null {
  let tail: number[] = [];
  const lastColon = s.lastIndexOf(":");
  if (s.includes(".")) { // embedded IPv4 at the end
    const v4 = ipv4Bytes(s.slice(lastColon + 1));
    if (!v4) return null;
    tail = v4;
    s = s.slice(0, lastColon + 1) + "0:0";
  }
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const words = (h: string): number[] | null => {
    if (h === "") return [];
    const w = h.split(":").map((x) => (/^[0-9a-fA-F]{1,4}$/.test(x) ? parseInt(x, 16) : NaN));
    return w.some(Number.isNaN) ? null : w;
  };
  const head = words(halves[0]);
  const rest = halves.length === 2 ? words(halves[1]) : [];
  if (!head || !rest) return null;
  const fill = 8 - head.length - rest.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) return null;
  const all = [...head, ...new Array<number>(fill).fill(0), ...rest];
  const bytes = all.flatMap((w) => [w >> 8, w & 0xff]);
  if (tail.length) bytes.splice(12, 4, ...tail);
  return bytes;
}

/** 4 bytes for IPv4 (and IPv4-mapped IPv6), 16 for IPv6, null when not an address. */
export function addressBytes(address: string): number[] | null {
  const v4 = ipv4Bytes(address);
  if (v4) return v4;
  const v6 = ipv6Bytes(address.replace(/%.*$/, ""));
  if (!v6) return null;
  const mapped = v6.slice(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff;
  return mapped ? v6.slice(12) : v6;
}

/** "localhost" names the clients of a Unix socket (Ferry's own, and MariaDB's usage). */
const LOCAL_SOCKET: Cidr = { text: "localhost", matches: (address) => address === "localhost" };

export function parseCidr(text: string): Cidr {
  const [addr, bitsText] = text.split("/");
  if (addr === "localhost") {
    if (bitsText !== undefined) throw new Error("localhost takes no prefix length");
    return LOCAL_SOCKET;
  }
  const net = addressBytes(addr);
  if (!net) throw new Error(`not an address: ${addr}`);
  const bits = bitsText === undefined ? net.length * 8 : Number(bitsText);
  if (!(bits >= 0 && bits <= net.length * 8)) throw new Error(`prefix length /${bitsText} out of range`);
  return {
    text,
    matches(address: string): boolean {
      const a = addressBytes(address);
      if (!a || a.length !== net.length) return false;
      let left = bits;
      for (let i = 0; left > 0; i++, left -= 8) {
        const mask = left >= 8 ? 0xff : (0xff << (8 - left)) & 0xff;
        if ((a[i] & mask) !== (net[i] & mask)) return false;
      }
      return true;
    },
  };
}
