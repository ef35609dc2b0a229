// Where a session stands in the client's packet stream. A command starts with a packet whose
// header and first bytes Ferry reads (assembled when a chunk splits them); its further packets —
// the rest of a large first packet, the 0xFFFFFF-long packets of a payload over 16 MiB, the file
// packets of LOAD DATA LOCAL — are walked header by header in place and forwarded unchanged.

import { HEADER_SIZE, MAX_PACKET_PAYLOAD } from "../protocol/constants.js";

/** Commands up to this size are assembled whole before dispatch; larger ones dispatch on a prefix. */
const ASSEMBLE_LIMIT = 1 << 20;
const PREFIX_LIMIT = 64 * 1024;

/** Bytes of a command whose first payload is `len` long that must be in hand to dispatch it. */
function bytesToDispatch(len: number): number {
  return HEADER_SIZE + (len <= ASSEMBLE_LIMIT ? len : PREFIX_LIMIT);
}

export interface CommandSink {
  /**
   * A command's header starts at buf[pos] and its first packet's payload, or a prefix of at least
   * 64 KiB of it, is in buf before `end`. Returns the position after what it consumed.
   */
  dispatch(buf: Buffer, pos: number, end: number, len: number, seq: number): number;
}

export class ClientFraming {
  private readonly hdr = Buffer.alloc(HEADER_SIZE);
  private hdrHave = 0;
  /** bytes of the current packet still to come */
  private left = 0;
  /** the current packet is 0xFFFFFF long: another packet of the same payload follows */
  private continues = false;
  private assembly: Buffer | null = null;
  private assemblyHave = 0;
  private assemblyNeed = 0;
  /** set by walk(): the command, or the LOAD DATA file, ended where walk() returned */
  ended = false;

  constructor(private readonly sink: CommandSink) {}

  /** Reads a command's header and enough of its first packet to dispatch it; returns the position after what it used. */
  readCommandStart(chunk: Buffer, pos: number, end: number): number {
    if (this.assembly === null && end - pos >= HEADER_SIZE) {
      const len = chunk[pos] | (chunk[pos + 1] << 8) | (chunk[pos + 2] << 16);
      if (end - pos >= bytesToDispatch(len)) return this.sink.dispatch(chunk, pos, end, len, chunk[pos + 3]);
    }
    // Split command start: collect the header, then the bytes needed, into the assembly buffer.
    if (this.assembly === null) {
      this.assembly = Buffer.allocUnsafe(256);
      this.assemblyHave = 0;
      this.assemblyNeed = HEADER_SIZE;
    }
    while (pos < end) {
      const n = Math.min(this.assemblyNeed - this.assemblyHave, end - pos);
      if (this.assembly.length < this.assemblyNeed) {
        const bigger = Buffer.allocUnsafe(this.assemblyNeed);
        this.assembly.copy(bigger, 0, 0, this.assemblyHave);
        this.assembly = bigger;
      }
      chunk.copy(this.assembly, this.assemblyHave, pos, pos + n);
      this.assemblyHave += n;
      pos += n;
      if (this.assemblyHave < this.assemblyNeed) continue;
      const a = this.assembly;
      const len = a[0] | (a[1] << 8) | (a[2] << 16);
      const need = bytesToDispatch(len);
      if (this.assemblyNeed < need) {
        this.assemblyNeed = need;
        continue;
      }
      this.assembly = null;
      this.sink.dispatch(a, 0, this.assemblyHave, len, a[3]);
      return pos;
    }
    return pos;
  }

  /**
   * The command's first packet has a payload of `len` bytes, of which `seen` were read: the rest
   * comes through walk(). True when anything of the command is still to come.
   */
  expect(len: number, seen: number): boolean {
    this.left = len - seen;
    this.continues = len === MAX_PACKET_PAYLOAD;
    return this.left > 0 || this.continues;
  }

  /** The server asked for a LOAD DATA LOCAL file: its packets start with the next byte. */
  startFile(): void {
    this.left = 0;
    this.continues = false;
    this.hdrHave = 0;
  }

  /**
   * Walks the rest of a command (`file` false) or the packets of a LOAD DATA LOCAL file (`file`
   * true, ended by an empty packet) from chunk[pos]. Returns the position up to which the bytes
   * belong to it; `ended` says whether it ended there.
   */
  walk(chunk: Buffer, pos: number, end: number, file: boolean): number {
    this.ended = false;
    for (;;) {
      if (this.left > 0) {
        if (pos >= end) break;
        const n = Math.min(this.left, end - pos);
        pos += n;
        this.left -= n;
        if (this.left > 0) break;
      }
      // A payload ends with the first of its packets shorter than 0xFFFFFF (possibly an empty one).
      if (!file && !this.continues) {
        this.ended = true;
        return pos;
      }
      if (pos >= end) break;
      // next packet header: a continuation of the command, or the next file packet
      while (this.hdrHave < HEADER_SIZE && pos < end) this.hdr[this.hdrHave++] = chunk[pos++];
      if (this.hdrHave < HEADER_SIZE) break;
      this.hdrHave = 0;
      const len = this.hdr[0] | (this.hdr[1] << 8) | (this.hdr[2] << 16);
      const wasContinuation = this.continues;
      this.left = len;
      this.continues = len === MAX_PACKET_PAYLOAD;
      if (file && len === 0 && !wasContinuation) {
        // The empty packet ends the file; the server answers with OK or ERR.
        this.ended = true;
        return pos;
      }
    }
    return pos;
  }
}
