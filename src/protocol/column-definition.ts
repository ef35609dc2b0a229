// Reading a ColumnDefinition41 payload: lenenc strings (catalog, schema, table, org_table, name,
// org_name; with MARIADB_CLIENT_EXTENDED_METADATA a lenenc block of type details after them),
// then the fixed-length fields: 0x0c, character set (2), column length (4), type (1), flags (2),
// decimals (1), 2 unused bytes. The fixed fields are read from the payload's end, so the extended
// block needs no capability to be known.

import { BINARY_COLLATION } from "./constants.js";
import { PacketReader, ProtocolError } from "./reader.js";

const FIXED = 13; // 0x0c and the 12 bytes it announces
const UNSIGNED_FLAG = 0x20;
const SHAPE_UNSIGNED = 0x100;
const SHAPE_BINARY = 0x200;

/**
 * What decides how a client decodes a column's values in binary rows: its type, whether it is
 * UNSIGNED, whether its character set is binary (bytes, not text). A number, so that shapes
 * compare with ===.
 */
export function columnShape(buf: Buffer, start: number, end: number): number {
  const f = end - FIXED;
  if (f < start || buf[f] !== 0x0c) throw new ProtocolError("malformed column definition");
  const charset = buf[f + 1] | (buf[f + 2] << 8);
  const type = buf[f + 7];
  const flags = buf[f + 8] | (buf[f + 9] << 8);
  return type | (flags & UNSIGNED_FLAG ? SHAPE_UNSIGNED : 0) | (charset === BINARY_COLLATION ? SHAPE_BINARY : 0);
}

/** The column's name as the client sees it (its alias). */
export function columnName(payload: Buffer): string {
  const r = new PacketReader(payload);
  r.lenencBytes(); // catalog
  r.lenencBytes(); // schema
  r.lenencBytes(); // table
  r.lenencBytes(); // org_table
  return r.lenencString();
}

const TYPE_NAMES: Record<number, string> = {
  0: "DECIMAL", 1: "TINY", 2: "SHORT", 3: "LONG", 4: "FLOAT", 5: "DOUBLE", 6: "NULL", 7: "TIMESTAMP", 8: "LONGLONG",
  9: "INT24", 10: "DATE", 11: "TIME", 12: "DATETIME", 13: "YEAR", 14: "NEWDATE", 15: "VARCHAR", 16: "BIT", 17: "TIMESTAMP2",
  18: "DATETIME2", 19: "TIME2", 245: "JSON", 246: "NEWDECIMAL", 247: "ENUM", 248: "SET", 249: "TINY_BLOB", 250: "MEDIUM_BLOB",
  251: "LONG_BLOB", 252: "BLOB", 253: "VAR_STRING", 254: "STRING", 255: "GEOMETRY",
};

/** Types whose values are strings, text or bytes by their character set (numbers and dates always say binary). */
const STRING_TYPES = new Set([15, 247, 248, 249, 250, 251, 252, 253, 254]);

/** A shape in words, for error messages: "LONG UNSIGNED", "VAR_STRING binary". */
export function describeColumnShape(shape: number): string {
  const type = shape & 0xff;
  const binary = shape & SHAPE_BINARY && STRING_TYPES.has(type);
  return (TYPE_NAMES[type] ?? `type ${type}`) + (shape & SHAPE_UNSIGNED ? " UNSIGNED" : "") + (binary ? " binary" : "");
}
