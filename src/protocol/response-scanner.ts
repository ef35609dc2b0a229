// Walks the packets of one command's response as chunks arrive, in place, and says where the
// response ends. Only the packets that decide the shape of the response are inspected: the first
// packet (OK, ERR, LOCAL INFILE request, column count, COM_STMT_PREPARE_OK) and terminators
// (EOF / OK with header 0xFE / ERR), and the result column definitions of a COM_STMT_PREPARE
// answer (the listener keeps what they say). Rows and other column definitions are skipped by length.
//
// Protocol rules relied on:
// - a payload of exactly 0xFFFFFF bytes continues in the next packet (a "continuation");
// - in a row stream, 0xFE with payload < 0xFFFFFF is a terminator: an EOF packet, or with
//   CLIENT_DEPRECATE_EOF an OK packet; a text row starting with 0xFE needs a string of >= 2^24 bytes
//   and so always fills a whole 0xFFFFFF packet;
// - SERVER_MORE_RESULTS_EXISTS on a final OK/EOF means another result follows;
// - a cursor opened by COM_STMT_EXECUTE ends the response at the EOF/OK after the columns
//   (SERVER_STATUS_CURSOR_EXISTS), rows come later through COM_STMT_FETCH;
// - with MARIADB_CLIENT_CACHE_METADATA a column count is followed by a "metadata follows" byte: at
//   0 no column definitions come (the EOF after them still does, without CLIENT_DEPRECATE_EOF).
//
// Forwarding contract: after scan(), the caller writes `emit` (when set), then
// chunk[forwardFrom, end) where end is the returned offset or, while the response goes on,
// forwardUntil. A packet that must be inspected (or whose header is incomplete) and does not end
// inside the chunk is held back, copied, and handed over whole as `emit` once complete; so a
// listener may rewrite an inspected packet in place (COM_STMT_PREPARE_OK's statement id) before
// any of its bytes leave.

import {
  EOF_HEADER, ERR_HEADER, LOCAL_INFILE_HEADER, MAX_PACKET_PAYLOAD, OK_HEADER, SERVER_MORE_RESULTS_EXISTS,
  SERVER_STATUS_CURSOR_EXISTS,
} from "./constants.js";
import { ProtocolError } from "./reader.js";

export interface ScanListener {
  /** An OK packet (0x00, or 0xFE in CLIENT_DEPRECATE_EOF mode) ended a result; payload is buf[start, end). */
  onOk(buf: Buffer, start: number, end: number, status: number): void;
  /** An EOF packet (pre-DEPRECATE_EOF) ended a result. */
  onEof(status: number): void;
  onErr(buf: Buffer, start: number, end: number): void;
  /** The server asks the client for a LOCAL INFILE; the client's file packets follow. */
  onLocalInfile(): void;
  /** buf[start] is the OK header; the statement id at start+1 may be rewritten in place. */
  onPrepareOk(stmtId: number, numColumns: number, numParams: number, buf: Buffer, start: number): void;
  /** A result column definition of the statement onPrepareOk() announced, in order; payload is buf[start, end). */
  onPrepareColumn(buf: Buffer, start: number, end: number): void;
}

/** Response shapes, one per family of commands. */
export const enum Shape {
  None = 0, // COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA, COM_QUIT: no response
  Result = 1, // COM_QUERY, COM_STMT_EXECUTE, COM_PROCESS_INFO: OK | ERR | LOCAL INFILE | result set(s)
  Prepare = 2, // COM_STMT_PREPARE
  Fetch = 3, // COM_STMT_FETCH: rows then terminator
  FieldList = 4, // COM_FIELD_LIST: column definitions then terminator
  Simple = 5, // one OK / ERR / EOF packet
  Raw = 6, // COM_STATISTICS: one packet of text
}

const enum S {
  First, ColumnDefs, EofAfterColumns, Rows,
  PrepareFirst, PrepareParams, PrepareParamsEof, PrepareColumns, PrepareColumnsEof,
  FieldList, Simple, Raw, Done,
}

const SKIP = 0;
const INSPECT = 1;
const MAX_INSPECT = 1 << 20; // an OK/ERR/EOF/column-count packet is never this large

export class ResponseScanner {
  private listener: ScanListener;
  private deprecateEof = false;
  private cacheMetadata = false;
  private state: S = S.Done;
  private readonly hdr = Buffer.alloc(4);
  private hdrHave = 0;
  private pktLen = 0;
  private pktLeft = 0;
  private classified = false;
  private mode = SKIP;
  private continuation = false;
  private endAfter = false;
  private count = 0; // column definitions or parameters left
  private prepColumns = 0;
  private columnDef = false; // the packet being inspected is a prepared statement's column definition
  private scratch = Buffer.allocUnsafe(256); // a held packet: header (4 bytes) then payload
  private scratchHave = 0; // payload bytes in scratch
  private held = false; // the current packet's bytes are being held back
  private pktStart = -1; // offset of the current packet's header in the chunk being scanned, -1 if earlier
  /** Sequence id of the last packet header seen. */
  lastSeq = 0;
  /** Some byte of this response has arrived (sequence ids wrap, so lastSeq cannot tell). */
  started = false;
  /** A held packet completed by this chunk: write it before chunk[forwardFrom, …). */
  emit: Buffer | null = null;
  forwardFrom = 0;
  forwardUntil = 0;

  constructor(listener: ScanListener) {
    this.listener = listener;
  }

  get active(): boolean {
    return this.state !== S.Done;
  }

  /** A command's response starts; the flags say which of CLIENT_DEPRECATE_EOF and MARIADB_CLIENT_CACHE_METADATA the connection has. */
  begin(shape: Shape, deprecateEof: boolean, cacheMetadata = false): void {
    this.deprecateEof = deprecateEof;
    this.cacheMetadata = cacheMetadata;
    this.hdrHave = 0;
    this.columnDef = false;
    this.continuation = false;
    this.endAfter = false;
    this.scratchHave = 0;
    this.held = false;
    this.started = false;
    this.lastSeq = 0;
    switch (shape) {
      case Shape.None: this.state = S.Done; break;
      case Shape.Result: this.state = S.First; break;
      case Shape.Prepare: this.state = S.PrepareFirst; break;
      case Shape.Fetch: this.state = S.Rows; break;
      case Shape.FieldList: this.state = S.FieldList; break;
      case Shape.Simple: this.state = S.Simple; break;
      case Shape.Raw: this.state = S.Raw; break;
    }
  }

  /**
   * After scan() threw on a malformed packet: where the whole packets before it end in the chunk.
   * chunk[forwardFrom, that) (after `emit`) is safe to forward; the bad packet starts there or, when
   * its header began in an earlier chunk (none of it forwarded), nothing of this chunk precedes it.
   */
  get goodUntil(): number {
    return this.pktStart >= 0 ? this.pktStart : this.forwardFrom;
  }

  /** True between packets (no partial header or payload pending). */
  get atPacketBoundary(): boolean {
    return this.hdrHave === 0;
  }

  /**
   * Scans chunk[pos, end). Returns the offset just past the response's last byte when the response
   * ends inside this range, else -1 (everything was consumed and more is expected).
   */
  scan(chunk: Buffer, pos: number, end: number): number {
    this.emit = null;
    this.forwardFrom = pos;
    this.forwardUntil = end;
    this.pktStart = -1;
    if (pos < end) this.started = true;
    while (pos < end) {
      if (this.hdrHave < 4) {
        this.pktStart = this.hdrHave === 0 ? pos : -1;
        if (this.hdrHave === 0 && end - pos >= 4) {
          this.pktLen = chunk[pos] | (chunk[pos + 1] << 8) | (chunk[pos + 2] << 16);
          this.lastSeq = chunk[pos + 3];
          pos += 4;
        } else {
          while (this.hdrHave < 4 && pos < end) this.hdr[this.hdrHave++] = chunk[pos++];
          if (this.hdrHave < 4) return this.hold();
          this.pktLen = this.hdr[0] | (this.hdr[1] << 8) | (this.hdr[2] << 16);
          this.lastSeq = this.hdr[3];
        }
        this.hdrHave = 4;
        this.pktLeft = this.pktLen;
        this.classified = false;
        if (this.continuation) {
          this.mode = SKIP;
          this.classified = true;
        } else if (this.pktLen === 0) {
          this.classify(-1);
          this.classified = true;
        }
      }
      if (!this.classified) {
        if (pos >= end) return this.hold();
        this.classify(chunk[pos]);
        this.classified = true;
      }
      if (this.mode === SKIP) {
        if (this.held) {
          // Held while its kind was unknown; it is data after all: release the header, forward the rest.
          this.held = false;
          this.saveHeader();
          this.emit = Buffer.from(this.scratch.subarray(0, 4));
          this.forwardFrom = pos;
        }
        const n = Math.min(this.pktLeft, end - pos);
        pos += n;
        this.pktLeft -= n;
        if (this.pktLeft > 0) return -1;
      } else if (!this.held && end - pos >= this.pktLeft) {
        const start = pos;
        pos += this.pktLeft;
        this.pktLeft = 0;
        this.inspect(chunk, start, pos);
      } else {
        this.held = true;
        if (this.scratchHave === 0) this.saveHeader();
        if (this.scratch.length < 4 + this.pktLen) {
          const bigger = Buffer.allocUnsafe(4 + this.pktLen);
          this.scratch.copy(bigger, 0, 0, 4 + this.scratchHave);
          this.scratch = bigger;
        }
        const n = Math.min(this.pktLeft, end - pos);
        chunk.copy(this.scratch, 4 + this.scratchHave, pos, pos + n);
        this.scratchHave += n;
        pos += n;
        this.pktLeft -= n;
        if (this.pktLeft > 0) return this.hold();
        this.scratchHave = 0;
        this.held = false;
        this.inspect(this.scratch, 4, 4 + this.pktLen);
        // Handed over as a copy: the caller's socket may keep it queued while scratch is reused.
        this.emit = Buffer.from(this.scratch.subarray(0, 4 + this.pktLen));
        this.forwardFrom = pos;
      }
      this.hdrHave = 0;
      this.continuation = this.pktLen === MAX_PACKET_PAYLOAD;
      if (!this.continuation && this.endAfter) {
        this.endAfter = false;
        this.state = S.Done;
        return pos;
      }
    }
    return -1;
  }

  /** The chunk ends inside a packet that may need inspecting: keep its bytes back. */
  private hold(): number {
    this.held = true;
    // Forward nothing of the held packet: it started here (pktStart) or in an earlier chunk.
    this.forwardUntil = this.pktStart >= 0 ? this.pktStart : this.forwardFrom;
    if (this.hdrHave === 4) this.saveHeader();
    else this.hdr.copy(this.scratch, 0, 0, this.hdrHave);
    return -1;
  }

  private saveHeader(): void {
    this.scratch[0] = this.pktLen & 0xff;
    this.scratch[1] = (this.pktLen >> 8) & 0xff;
    this.scratch[2] = (this.pktLen >> 16) & 0xff;
    this.scratch[3] = this.lastSeq;
  }

  private inspectIfSmall(): void {
    if (this.pktLen > MAX_INSPECT) throw new ProtocolError(`unexpected ${this.pktLen}-byte packet where a status packet belongs`);
    this.mode = INSPECT;
  }

  private classify(first: number): void {
    this.mode = SKIP;
    switch (this.state) {
      case S.First:
      case S.PrepareFirst:
      case S.Simple:
      case S.EofAfterColumns:
        this.inspectIfSmall();
        return;
      case S.ColumnDefs:
        if (first === ERR_HEADER) return this.inspectIfSmall();
        if (--this.count === 0) this.state = this.deprecateEof ? S.Rows : S.EofAfterColumns;
        return;
      case S.Rows:
      case S.FieldList:
        if (first === ERR_HEADER || (first === EOF_HEADER && this.pktLen < MAX_PACKET_PAYLOAD)) this.inspectIfSmall();
        return;
      case S.PrepareParams:
        if (--this.count === 0) {
          if (!this.deprecateEof) this.state = S.PrepareParamsEof;
          else this.afterPrepareParams();
        }
        return;
      case S.PrepareParamsEof:
        this.afterPrepareParams();
        return;
      case S.PrepareColumns:
        this.inspectIfSmall();
        this.columnDef = true;
        if (--this.count === 0) {
          if (!this.deprecateEof) this.state = S.PrepareColumnsEof;
          else this.endAfter = true;
        }
        return;
      case S.PrepareColumnsEof:
      case S.Raw:
        this.endAfter = true;
        return;
      case S.Done:
        throw new ProtocolError("server sent data when no response was expected");
    }
  }

  private afterPrepareParams(): void {
    if (this.prepColumns > 0) {
      this.state = S.PrepareColumns;
      this.count = this.prepColumns;
    } else {
      this.endAfter = true;
    }
  }

  private inspect(buf: Buffer, start: number, end: number): void {
    if (this.columnDef) {
      this.columnDef = false;
      this.listener.onPrepareColumn(buf, start, end);
      return;
    }
    const first = end > start ? buf[start] : -1;
    if (first === ERR_HEADER) {
      this.listener.onErr(buf, start, end);
      this.endAfter = true;
      return;
    }
    switch (this.state) {
      case S.First:
        if (first === OK_HEADER) return this.finalOk(buf, start, end);
        if (first === LOCAL_INFILE_HEADER) {
          // The server's next packet, after the client's file data, is OK or ERR: stay in First.
          this.listener.onLocalInfile();
          return;
        }
        this.count = readLenenc(buf, start, end);
        if (this.count <= 0) throw new ProtocolError("result set with no columns");
        this.state = S.ColumnDefs;
        if (this.cacheMetadata) {
          const flag = start + lenencSize(first);
          if (flag >= end) throw new ProtocolError("column count packet without its metadata-follows byte");
          if (buf[flag] === 0) this.state = this.deprecateEof ? S.Rows : S.EofAfterColumns;
        }
        return;
      case S.EofAfterColumns: {
        const status = eofStatus(buf, start, end);
        if (status & SERVER_STATUS_CURSOR_EXISTS) {
          this.listener.onEof(status);
          this.endAfter = true;
        } else {
          this.state = S.Rows;
        }
        return;
      }
      case S.Rows:
      case S.FieldList:
        if (this.deprecateEof) return this.finalOk(buf, start, end);
        return this.finalEof(eofStatus(buf, start, end));
      case S.Simple:
        // COM_SET_OPTION and COM_DEBUG answer EOF (an OK with header 0xFE under CLIENT_DEPRECATE_EOF).
        if (first === EOF_HEADER && !this.deprecateEof) return this.finalEof(eofStatus(buf, start, end));
        return this.finalOk(buf, start, end);
      case S.PrepareFirst: {
        if (first !== OK_HEADER || end - start < 12) throw new ProtocolError("malformed COM_STMT_PREPARE response");
        const stmtId = buf.readUInt32LE(start + 1);
        const columns = buf.readUInt16LE(start + 5);
        const params = buf.readUInt16LE(start + 7);
        this.listener.onPrepareOk(stmtId, columns, params, buf, start);
        this.prepColumns = columns;
        if (params > 0) {
          this.state = S.PrepareParams;
          this.count = params;
        } else {
          this.afterPrepareParams();
        }
        return;
      }
      default:
        throw new ProtocolError("inspected a packet in an unexpected state");
    }
  }

  private finalOk(buf: Buffer, start: number, end: number): void {
    const status = okStatus(buf, start, end);
    this.listener.onOk(buf, start, end, status);
    if (status & SERVER_MORE_RESULTS_EXISTS && this.state !== S.FieldList) this.state = S.First;
    else this.endAfter = true;
  }

  private finalEof(status: number): void {
    this.listener.onEof(status);
    if (status & SERVER_MORE_RESULTS_EXISTS && this.state !== S.FieldList) this.state = S.First;
    else this.endAfter = true;
  }
}

function lenencSize(b: number): number {
  return b < 0xfb ? 1 : b === 0xfc ? 3 : b === 0xfd ? 4 : 9;
}

function readLenenc(buf: Buffer, pos: number, end: number): number {
  const b = buf[pos];
  const size = lenencSize(b);
  if (pos + size > end) throw new ProtocolError("truncated length-encoded integer");
  if (size === 1) return b;
  if (size === 3) return buf.readUInt16LE(pos + 1);
  if (size === 4) return buf.readUIntLE(pos + 1, 3);
  return Number(buf.readBigUInt64LE(pos + 1));
}

/** Status flags of an OK packet: header, affected rows, last insert id, then the flags. */
export function okStatus(buf: Buffer, start: number, end: number): number {
  let p = start + 1;
  if (p >= end) throw new ProtocolError("truncated OK packet");
  p += lenencSize(buf[p]);
  if (p >= end) throw new ProtocolError("truncated OK packet");
  p += lenencSize(buf[p]);
  if (p + 2 > end) throw new ProtocolError("truncated OK packet");
  return buf.readUInt16LE(p);
}

/** Status flags of an EOF packet: header, warnings(2), status(2). */
export function eofStatus(buf: Buffer, start: number, end: number): number {
  if (end - start < 5) return 0; // pre-4.1 EOF has no status
  return buf.readUInt16LE(start + 3);
}
