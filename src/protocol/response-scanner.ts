// Walks the packets of one command's response as chunks arrive, in place, and says where the
// response ends. Only the packets that decide the shape of the response are inspected: the first
// packet (OK, ERR, LOCAL INFILE request, column count, COM_STMT_PREPARE_OK) and terminators
// (EOF / OK with header 0xFE / ERR). Rows and column definitions are skipped by length.
//
// Protocol rules relied on:
// - a payload of exactly 0xFFFFFF bytes continues in the next packet (a "continuation");
// - in a row stream, 0xFE with payload < 0xFFFFFF is a terminator: an EOF packet, or with
//   CLIENT_DEPRECATE_EOF an OK packet; a text row starting with 0xFE needs a string of >= 2^24 bytes
//   and so always fills a whole 0xFFFFFF packet;
// - SERVER_MORE_RESULTS_EXISTS on a final OK/EOF means another result follows;
// - a cursor opened by COM_STMT_EXECUTE ends the response at the EOF/OK after the columns
//   (SERVER_STATUS_CURSOR_EXISTS), rows come later through COM_STMT_FETCH.

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
  onPrepareOk(stmtId: number, numColumns: number, numParams: number): void;
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
  private scratch = Buffer.allocUnsafe(256);
  private scratchHave = 0;
  /** Sequence id of the last packet header seen. */
  lastSeq = 0;

  constructor(listener: ScanListener) {
    this.listener = listener;
  }

  get active(): boolean {
    return this.state !== S.Done;
  }

  begin(shape: Shape, deprecateEof: boolean): void {
    this.deprecateEof = deprecateEof;
    this.hdrHave = 0;
    this.continuation = false;
    this.endAfter = false;
    this.scratchHave = 0;
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

  /** True between packets (no partial header or payload pending). */
  get atPacketBoundary(): boolean {
    return this.hdrHave === 0;
  }

  /**
   * Scans chunk[pos, end). Returns the offset just past the response's last byte when the response
   * ends inside this range, else -1 (everything was consumed and more is expected).
   */
  scan(chunk: Buffer, pos: number, end: number): number {
    while (pos < end) {
      if (this.hdrHave < 4) {
        if (this.hdrHave === 0 && end - pos >= 4) {
          this.pktLen = chunk[pos] | (chunk[pos + 1] << 8) | (chunk[pos + 2] << 16);
          this.lastSeq = chunk[pos + 3];
          pos += 4;
        } else {
          while (this.hdrHave < 4 && pos < end) this.hdr[this.hdrHave++] = chunk[pos++];
          if (this.hdrHave < 4) return -1;
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
        if (pos >= end) return -1;
        this.classify(chunk[pos]);
        this.classified = true;
      }
      if (this.mode === SKIP) {
        const n = Math.min(this.pktLeft, end - pos);
        pos += n;
        this.pktLeft -= n;
        if (this.pktLeft > 0) return -1;
      } else if (this.scratchHave === 0 && end - pos >= this.pktLeft) {
        const start = pos;
        pos += this.pktLeft;
        this.pktLeft = 0;
        this.inspect(chunk, start, pos);
      } else {
        if (this.scratchHave === 0 && this.scratch.length < this.pktLen) this.scratch = Buffer.allocUnsafe(this.pktLen);
        const n = Math.min(this.pktLeft, end - pos);
        chunk.copy(this.scratch, this.scratchHave, pos, pos + n);
        this.scratchHave += n;
        pos += n;
        this.pktLeft -= n;
        if (this.pktLeft > 0) return -1;
        this.scratchHave = 0;
        this.inspect(this.scratch, 0, this.pktLen);
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
        this.listener.onPrepareOk(stmtId, columns, params);
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
