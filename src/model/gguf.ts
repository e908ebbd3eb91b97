// GGUF, llama.cpp's model file (version 3; version 2 has the same layout). All little-endian.
//
//   uint32  magic "GGUF" (bytes 47 47 55 46)
//   uint32  version (2 or 3)
//   uint64  tensor_count
//   uint64  kv_count
//   kv_count × { string key, uint32 value_type, value }
//   tensor_count × { string name, uint32 n_dims, uint64 ne[n_dims], uint32 ggml_type, uint64 offset }
//   zero padding to `general.alignment` (a power of two, default 32)
//   tensor data: each tensor at data_start + offset (a multiple of the alignment)
//
//   string  = uint64 byte length + UTF-8 bytes (no terminator)
//   value   = by value_type: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool (1 byte),
//             8 string, 9 array (uint32 item type, uint64 count, items), 10 u64, 11 i64, 12 f64
//
// A tensor's dimensions run innermost first: ne[0] is the row length, so a (rows, cols) row-major
// matrix is ne = [cols, rows]. Its data is ne[1]·ne[2]·ne[3] rows of ne[0] values, each row a whole
// number of the type's blocks (see gguf-blocks.ts for what a block holds).
//
// This module is the container only — metadata and where each tensor's bytes are — as llama.cpp's
// gguf.cpp is; what a llama model's keys and tensors mean is gguf-llama.ts. Every count, length,
// dimension and offset is checked against the file before anything is allocated or read, and a bad
// file is refused with one line naming it.

import { closeSync, readSync } from 'node:fs';
import { FormatError } from '../errors.js';
import { openForReading, writeFileAtomic } from '../files.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** llama.cpp's GGML_MAX_NAME: a tensor name has fewer bytes than this. */
export const GGUF_MAX_NAME_BYTES = 64;
/** llama.cpp's GGML_MAX_DIMS. */
export const GGUF_MAX_DIMS = 4;

/** Metadata value types. */
export const ValueType = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7,
  STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;
export type ValueType = (typeof ValueType)[keyof typeof ValueType];
type ScalarType = Exclude<ValueType, 9>;

const VALUE_TYPE_NAMES = ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'f32', 'bool', 'string', 'array', 'u64', 'i64', 'f64'];
/** Bytes of one fixed-size value (strings: the length prefix, the least one can take). */
const VALUE_SIZES = [1, 1, 2, 2, 4, 4, 4, 1, 8, 0, 8, 8, 8];

export function valueTypeName(t: number): string {
  return VALUE_TYPE_NAMES[t] ?? `type ${t}`;
}

/** An array value: numeric items as a typed array of their type, booleans and strings as arrays. */
export type GgufArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array
  | BigUint64Array | BigInt64Array | readonly boolean[] | readonly string[];

/** One metadata entry: u64/i64 as bigint, other numbers as number. */
export type GgufValue =
  | { readonly type: 0 | 1 | 2 | 3 | 4 | 5 | 6 | 12; readonly value: number }
  | { readonly type: 10 | 11; readonly value: bigint }
  | { readonly type: 7; readonly value: boolean }
  | { readonly type: 8; readonly value: string }
  | { readonly type: 9; readonly itemType: ScalarType; readonly value: GgufArray };

// ----------------------------------------------------------------------------------------------
// Tensor types (ggml_type): block size in values and bytes per block

export interface GgmlTypeInfo {
  readonly id: number;
  readonly name: string;
  /** Values per block. */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
}

/** Every tensor type a GGUF file may hold, so sizes can be checked even for types llama2ts cannot decode. */
export const GGML_TYPES: readonly GgmlTypeInfo[] = ([
  [0, 'F32', 1, 4], [1, 'F16', 1, 2], [2, 'Q4_0', 32, 18], [3, 'Q4_1', 32, 20], [6, 'Q5_0', 32, 22],
  [7, 'Q5_1', 32, 24], [8, 'Q8_0', 32, 34], [9, 'Q8_1', 32, 36], [10, 'Q2_K', 256, 84], [11, 'Q3_K', 256, 110],
  [12, 'Q4_K', 256, 144], [13, 'Q5_K', 256, 176], [14, 'Q6_K', 256, 210], [15, 'Q8_K', 256, 292],
  [16, 'IQ2_XXS', 256, 66], [17, 'IQ2_XS', 256, 74], [18, 'IQ3_XXS', 256, 98], [19, 'IQ1_S', 256, 50],
  [20, 'IQ4_NL', 32, 18], [21, 'IQ3_S', 256, 110], [22, 'IQ2_S', 256, 82], [23, 'IQ4_XS', 256, 136],
  [24, 'I8', 1, 1], [25, 'I16', 1, 2], [26, 'I32', 1, 4], [27, 'I64', 1, 8], [28, 'F64', 1, 8],
  [29, 'IQ1_M', 256, 56], [30, 'BF16', 1, 2], [34, 'TQ1_0', 256, 54], [35, 'TQ2_0', 256, 66], [39, 'MXFP4', 32, 17],
] as const).map(([id, name, blockSize, typeSize]) => ({ id, name, blockSize, typeSize }));

const TYPE_BY_ID = new Map(GGML_TYPES.map((t) => [t.id, t]));

/** The ggml_type ids llama2ts writes and reads by name. */
export const GgmlType = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, Q4_K: 12, Q5_K: 13, Q6_K: 14, BF16: 30 } as const;

export function ggmlType(id: number): GgmlTypeInfo {
  const t = TYPE_BY_ID.get(id);
  if (t === undefined) throw new RangeError(`unknown ggml type ${id}`);
  return t;
}

/** Bytes of `elements` values of type `id` (elements a whole number of blocks). */
export function tensorBytes(id: number, elements: number): number {
  const t = ggmlType(id);
  return (elements / t.blockSize) * t.typeSize;
}

// ----------------------------------------------------------------------------------------------
// The parsed header

export interface GgufTensorInfo {
  readonly name: string;
  /** ne: innermost (row length) first. */
  readonly dims: readonly number[];
  readonly type: GgmlTypeInfo;
  readonly elements: number;
  readonly bytes: number;
  /** Absolute byte offset of the data in the file. */
  readonly offset: number;
}

export interface GgufHeader {
  readonly path: string;
  readonly version: number;
  readonly metadata: ReadonlyMap<string, GgufValue>;
  readonly tensors: readonly GgufTensorInfo[];
  readonly tensorByName: ReadonlyMap<string, GgufTensorInfo>;
  readonly alignment: number;
  /** Where the tensor data starts. */
  readonly dataOffset: number;
  readonly fileBytes: number;
}

/** True when the bytes begin with GGUF's magic. */
export function isGguf(firstBytes: Uint8Array): boolean {
  return firstBytes.length >= 4 && firstBytes[0] === 0x47 && firstBytes[1] === 0x47 && firstBytes[2] === 0x55 && firstBytes[3] === 0x46;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder(); // (no Buffer: this module also runs in the browser playground)
const WINDOW = 1 << 20;

/**
 * Reads the header sequentially through a window over the file. Every read first checks that the
 * bytes exist; lengths and counts are checked against what remains of the file before any
 * allocation, so no value in the file can make the parser allocate more than the file's size.
 */
class HeaderCursor {
  private buf = new Uint8Array(0);
  private view = new DataView(this.buf.buffer);
  private bufStart = 0;
  pos = 0;

  constructor(private readonly fd: number, readonly path: string, readonly size: number) {}

  fail(what: string): never {
    throw new FormatError(this.path, what);
  }

  get remaining(): number {
    return this.size - this.pos;
  }

  /** Makes bytes pos..pos+n available in the window, or fails naming `what`. */
  private need(n: number, what: string): number {
    if (n > this.remaining) this.fail(`truncated: ${what} at byte ${this.pos} needs ${n} bytes, the file has ${this.remaining} left`);
    const rel = this.pos - this.bufStart;
    if (rel >= 0 && rel + n <= this.buf.length) return rel;
    const len = Math.min(Math.max(n, WINDOW), this.remaining);
    const buf = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const got = readSync(this.fd, buf, done, len - done, this.pos + done);
      if (got <= 0) this.fail(`unexpected end of file at byte ${this.pos + done}`);
      done += got;
    }
    this.buf = buf;
    this.view = new DataView(buf.buffer);
    this.bufStart = this.pos;
    return 0;
  }

  u8(what: string): number { const o = this.need(1, what); this.pos += 1; return this.view.getUint8(o); }
  i8(what: string): number { const o = this.need(1, what); this.pos += 1; return this.view.getInt8(o); }
  u16(what: string): number { const o = this.need(2, what); this.pos += 2; return this.view.getUint16(o, true); }
  i16(what: string): number { const o = this.need(2, what); this.pos += 2; return this.view.getInt16(o, true); }
  u32(what: string): number { const o = this.need(4, what); this.pos += 4; return this.view.getUint32(o, true); }
  i32(what: string): number { const o = this.need(4, what); this.pos += 4; return this.view.getInt32(o, true); }
  f32(what: string): number { const o = this.need(4, what); this.pos += 4; return this.view.getFloat32(o, true); }
  f64(what: string): number { const o = this.need(8, what); this.pos += 8; return this.view.getFloat64(o, true); }
  u64big(what: string): bigint { const o = this.need(8, what); this.pos += 8; return this.view.getBigUint64(o, true); }
  i64big(what: string): bigint { const o = this.need(8, what); this.pos += 8; return this.view.getBigInt64(o, true); }

  /** A uint64 that must be at most `max` (a count, length or offset). */
  u64(what: string, max: number): number {
    const v = this.u64big(what);
    if (v > BigInt(max)) this.fail(`${what} is ${v}, more than this file can hold (at most ${max})`);
    return Number(v);
  }

  bytes(n: number, what: string): Uint8Array {
    const o = this.need(n, what);
    this.pos += n;
    return this.buf.subarray(o, o + n);
  }

  string(what: string): string {
    const len = this.u64(`length of ${what}`, this.remaining);
    try {
      return utf8.decode(this.bytes(len, what));
    } catch (err) {
      if (err instanceof FormatError) throw err;
      return this.fail(`${what} is not valid UTF-8`);
    }
  }
}

function readScalar(r: HeaderCursor, type: number, what: string): GgufValue {
  switch (type) {
    case ValueType.UINT8: return { type, value: r.u8(what) };
    case ValueType.INT8: return { type, value: r.i8(what) };
    case ValueType.UINT16: return { type, value: r.u16(what) };
    case ValueType.INT16: return { type, value: r.i16(what) };
    case ValueType.UINT32: return { type, value: r.u32(what) };
    case ValueType.INT32: return { type, value: r.i32(what) };
    case ValueType.FLOAT32: return { type, value: r.f32(what) };
    case ValueType.FLOAT64: return { type, value: r.f64(what) };
    case ValueType.UINT64: return { type, value: r.u64big(what) };
    case ValueType.INT64: return { type, value: r.i64big(what) };
    case ValueType.BOOL: {
      const b = r.u8(what);
      if (b > 1) r.fail(`${what}: boolean byte ${b} is neither 0 nor 1`);
      return { type, value: b === 1 };
    }
    case ValueType.STRING: return { type, value: r.string(what) };
    default: return r.fail(`${what} has unknown value type ${type}`);
  }
}

function readArray(r: HeaderCursor, what: string): GgufValue {
  const itemType = r.u32(`item type of ${what}`);
  if (itemType === ValueType.ARRAY) r.fail(`${what} is an array of arrays, which GGUF readers do not accept`);
  const size = VALUE_SIZES[itemType];
  if (size === undefined || itemType > ValueType.FLOAT64) r.fail(`${what} has unknown item type ${itemType}`);
  const count = r.u64(`item count of ${what}`, Math.floor(r.remaining / size));
  const t = itemType as ScalarType;
  const typed = <T>(make: (buf: ArrayBuffer) => T): T => {
    const src = r.bytes(count * size, what);
    const copy = new Uint8Array(count * size);
    copy.set(src); // aligned copy: typed-array views need an offset that is a multiple of the item size
    return make(copy.buffer);
  };
  switch (t) {
    case ValueType.UINT8: return { type: 9, itemType: t, value: typed((b) => new Uint8Array(b)) };
    case ValueType.INT8: return { type: 9, itemType: t, value: typed((b) => new Int8Array(b)) };
    case ValueType.UINT16: return { type: 9, itemType: t, value: typed((b) => new Uint16Array(b)) };
    case ValueType.INT16: return { type: 9, itemType: t, value: typed((b) => new Int16Array(b)) };
    case ValueType.UINT32: return { type: 9, itemType: t, value: typed((b) => new Uint32Array(b)) };
    case ValueType.INT32: return { type: 9, itemType: t, value: typed((b) => new Int32Array(b)) };
    case ValueType.FLOAT32: return { type: 9, itemType: t, value: typed((b) => new Float32Array(b)) };
    case ValueType.FLOAT64: return { type: 9, itemType: t, value: typed((b) => new Float64Array(b)) };
    case ValueType.UINT64: return { type: 9, itemType: t, value: typed((b) => new BigUint64Array(b)) };
    case ValueType.INT64: return { type: 9, itemType: t, value: typed((b) => new BigInt64Array(b)) };
    case ValueType.BOOL: {
      const bytes = r.bytes(count, what);
      const out = new Array<boolean>(count);
      for (let i = 0; i < count; i++) {
        if (bytes[i]! > 1) r.fail(`${what}: item ${i} is boolean byte ${bytes[i]}, neither 0 nor 1`);
        out[i] = bytes[i] === 1;
      }
      return { type: 9, itemType: t, value: out };
    }
    case ValueType.STRING: {
      const out = new Array<string>(count);
      for (let i = 0; i < count; i++) out[i] = r.string(`${what}[${i}]`);
      return { type: 9, itemType: t, value: out };
    }
  }
  return r.fail(`${what} has unknown item type ${itemType}`);
}

/** Reads and checks a GGUF file's header: metadata and the table of tensors (not their data). */
export function readGgufHeader(path: string): GgufHeader {
  const { fd, size } = openForReading(path);
  try {
    return parseHeader(new HeaderCursor(fd, path, size));
  } finally {
    closeSync(fd);
  }
}

function parseHeader(r: HeaderCursor): GgufHeader {
  if (r.size < 4 || r.u32('magic') !== GGUF_MAGIC) r.fail('not a GGUF file (no "GGUF" magic)');
  const version = r.u32('version');
  if (version === 1) r.fail('GGUF version 1 is not supported (it predates 64-bit counts); convert the file with a current llama.cpp');
  if (version !== 2 && version !== 3) r.fail(`unsupported GGUF version ${version} (llama2ts reads 2 and 3)`);
  // the smallest tensor record is 8 (name length) + 1 (name) + 4 + 4 + 8 bytes, the smallest entry 8 + 1 + 4 + 1
  const tensorCount = r.u64('tensor count', Math.floor(r.remaining / 25));
  const kvCount = r.u64('metadata entry count', Math.floor(r.remaining / 14));

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = r.string(`key of metadata entry ${i}`);
    if (key.length === 0) r.fail(`metadata entry ${i} has an empty key`);
    if (metadata.has(key)) r.fail(`metadata key '${key}' appears twice`);
    const type = r.u32(`value type of '${key}'`);
    metadata.set(key, type === ValueType.ARRAY ? readArray(r, `'${key}'`) : readScalar(r, type, `'${key}'`));
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get('general.alignment');
  if (al !== undefined) {
    if (al.type !== ValueType.UINT32) r.fail(`general.alignment must be a u32, not ${valueTypeName(al.type)}`);
    alignment = al.value;
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0) r.fail(`general.alignment ${alignment} is not a power of two`);
  }

  interface Pending { name: string; dims: number[]; type: GgmlTypeInfo; elements: number; bytes: number; rel: number }
  const pending: Pending[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = r.string(`name of tensor ${i}`);
    const what = `tensor '${name}'`;
    if (utf8Encoder.encode(name).length >= GGUF_MAX_NAME_BYTES) r.fail(`${what}: name longer than ${GGUF_MAX_NAME_BYTES - 1} bytes`);
    if (names.has(name)) r.fail(`tensor name '${name}' appears twice`);
    names.add(name);
    const nDims = r.u32(`dimension count of ${what}`);
    if (nDims < 1 || nDims > GGUF_MAX_DIMS) r.fail(`${what} has ${nDims} dimensions (1 to ${GGUF_MAX_DIMS} allowed)`);
    const dims: number[] = [];
    let elements = 1;
    for (let d = 0; d < nDims; d++) {
      const ne = r.u64(`dimension ${d} of ${what}`, Number.MAX_SAFE_INTEGER);
      dims.push(ne);
      elements *= ne;
      // no tensor type packs more than 8 values into a byte
      if (elements > 8 * r.size) r.fail(`${what} has more values than the file could hold`);
    }
    const typeId = r.u32(`type of ${what}`);
    const type = TYPE_BY_ID.get(typeId);
    if (type === undefined) r.fail(`${what} has unknown tensor type ${typeId}`);
    if (dims[0]! % type.blockSize !== 0) {
      r.fail(`${what} (${type.name}) has rows of ${dims[0]} values, not a whole number of ${type.blockSize}-value blocks`);
    }
    const bytes = (elements / type.blockSize) * type.typeSize;
    const rel = r.u64(`data offset of ${what}`, r.size);
    if (rel % alignment !== 0) r.fail(`${what}: data offset ${rel} is not a multiple of the alignment ${alignment}`);
    pending.push({ name, dims, type, elements, bytes, rel });
  }
  const dataOffset = tensorCount > 0 ? Math.ceil(r.pos / alignment) * alignment : r.pos;
  const tensors: GgufTensorInfo[] = pending.map((t) => {
    const offset = dataOffset + t.rel;
    if (offset + t.bytes > r.size) {
      r.fail(`truncated: tensor '${t.name}' (${t.bytes} bytes at ${offset}) ends past the end of the file (${r.size} bytes)`);
    }
    return { name: t.name, dims: t.dims, type: t.type, elements: t.elements, bytes: t.bytes, offset };
  });
  return {
    path: r.path, version, metadata, tensors, tensorByName: new Map(tensors.map((t) => [t.name, t])),
    alignment, dataOffset, fileBytes: r.size,
  };
}

// ----------------------------------------------------------------------------------------------
// Reading tensor data

/** An open GGUF file: its header, and reads of any byte range of its tensors. */
export class GgufFile {
  private fd: number | undefined;

  constructor(readonly header: GgufHeader) {
    this.fd = openForReading(header.path).fd;
  }

  static open(path: string): GgufFile {
    return new GgufFile(readGgufHeader(path));
  }

  get path(): string {
    return this.header.path;
  }

  /** The tensor named `name`, or a one-line error. */
  tensor(name: string): GgufTensorInfo {
    const t = this.header.tensorByName.get(name);
    if (t === undefined) throw new FormatError(this.path, `has no tensor '${name}'`);
    return t;
  }

  /** Reads dst.byteLength bytes starting `byteOffset` bytes into tensor `t`'s data. */
  read(t: GgufTensorInfo, byteOffset: number, dst: Uint8Array): void {
    if (this.fd === undefined) throw new Error(`${this.path} is closed`);
    if (byteOffset < 0 || byteOffset + dst.byteLength > t.bytes) {
      throw new RangeError(`bytes ${byteOffset}..${byteOffset + dst.byteLength} are outside tensor '${t.name}' (${t.bytes} bytes)`);
    }
    let done = 0;
    while (done < dst.byteLength) {
      const chunk = Math.min(dst.byteLength - done, 1 << 30);
      const n = readSync(this.fd, dst, done, chunk, t.offset + byteOffset + done);
      if (n <= 0) throw new FormatError(this.path, `unexpected end of file in tensor '${t.name}'`);
      done += n;
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

// ----------------------------------------------------------------------------------------------
// Writing

/** A tensor to write: its dimensions (innermost first), type, and data (produced when written). */
export interface GgufTensorOut {
  readonly name: string;
  readonly dims: readonly number[];
  readonly type: number;
  /** The tensor's bytes, in one or more pieces (called once, while the file is written). */
  readonly data: () => Iterable<Uint8Array>;
}

class ByteWriter {
  private chunks: Uint8Array[] = [];
  private cur = new Uint8Array(1 << 16);
  private view = new DataView(this.cur.buffer);
  private n = 0;
  length = 0;

  private room(k: number): void {
    if (this.n + k <= this.cur.length) return;
    this.chunks.push(this.cur.subarray(0, this.n));
    this.cur = new Uint8Array(Math.max(1 << 16, k));
    this.view = new DataView(this.cur.buffer);
    this.n = 0;
  }
  u8(v: number): void { this.room(1); this.view.setUint8(this.n, v); this.n += 1; this.length += 1; }
  i8(v: number): void { this.room(1); this.view.setInt8(this.n, v); this.n += 1; this.length += 1; }
  u16(v: number): void { this.room(2); this.view.setUint16(this.n, v, true); this.n += 2; this.length += 2; }
  i16(v: number): void { this.room(2); this.view.setInt16(this.n, v, true); this.n += 2; this.length += 2; }
  u32(v: number): void { this.room(4); this.view.setUint32(this.n, v, true); this.n += 4; this.length += 4; }
  i32(v: number): void { this.room(4); this.view.setInt32(this.n, v, true); this.n += 4; this.length += 4; }
  f32(v: number): void { this.room(4); this.view.setFloat32(this.n, v, true); this.n += 4; this.length += 4; }
  f64(v: number): void { this.room(8); this.view.setFloat64(this.n, v, true); this.n += 8; this.length += 8; }
  u64(v: number | bigint): void { this.room(8); this.view.setBigUint64(this.n, BigInt(v), true); this.n += 8; this.length += 8; }
  i64(v: bigint): void { this.room(8); this.view.setBigInt64(this.n, v, true); this.n += 8; this.length += 8; }
  bytes(b: Uint8Array): void { this.room(b.length); this.cur.set(b, this.n); this.n += b.length; this.length += b.length; }
  string(s: string): void {
    const b = utf8Encoder.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  finish(): Uint8Array[] {
    this.chunks.push(this.cur.subarray(0, this.n));
    return this.chunks;
  }
}

function writeScalar(w: ByteWriter, type: number, v: unknown): void {
  switch (type) {
    case ValueType.UINT8: w.u8(v as number); break;
    case ValueType.INT8: w.i8(v as number); break;
    case ValueType.UINT16: w.u16(v as number); break;
    case ValueType.INT16: w.i16(v as number); break;
    case ValueType.UINT32: w.u32(v as number); break;
    case ValueType.INT32: w.i32(v as number); break;
    case ValueType.FLOAT32: w.f32(v as number); break;
    case ValueType.FLOAT64: w.f64(v as number); break;
    case ValueType.UINT64: w.u64(v as bigint); break;
    case ValueType.INT64: w.i64(v as bigint); break;
    case ValueType.BOOL: w.u8(v ? 1 : 0); break;
    case ValueType.STRING: w.string(v as string); break;
    default: throw new RangeError(`cannot write value type ${type}`);
  }
}

/** The header bytes (up to the start of the tensor data, padding included) and each tensor's relative offset. */
export function serializeGgufHeader(
  metadata: ReadonlyMap<string, GgufValue>, tensors: readonly Pick<GgufTensorOut, 'name' | 'dims' | 'type'>[],
): { header: Uint8Array[]; offsets: number[]; alignment: number } {
  const al = metadata.get('general.alignment');
  const alignment = al?.type === ValueType.UINT32 ? al.value : GGUF_DEFAULT_ALIGNMENT;
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(metadata.size);
  for (const [key, v] of metadata) {
    w.string(key);
    w.u32(v.type);
    if (v.type !== ValueType.ARRAY) {
      writeScalar(w, v.type, v.value);
      continue;
    }
    w.u32(v.itemType);
    w.u64(v.value.length);
    const items = v.value as ArrayLike<unknown>;
    for (let i = 0; i < items.length; i++) writeScalar(w, v.itemType, items[i]);
  }
  const offsets: number[] = [];
  let rel = 0;
  for (const t of tensors) {
    if (utf8Encoder.encode(t.name).length >= GGUF_MAX_NAME_BYTES) throw new RangeError(`tensor name '${t.name}' is too long for GGUF`);
    const info = ggmlType(t.type);
    const elements = t.dims.reduce((a, b) => a * b, 1);
    if (t.dims[0]! % info.blockSize !== 0) throw new RangeError(`tensor '${t.name}': rows of ${t.dims[0]} are not whole ${info.name} blocks`);
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(rel);
    offsets.push(rel);
    rel += Math.ceil(tensorBytes(t.type, elements) / alignment) * alignment;
  }
  const pad = (alignment - (w.length % alignment)) % alignment;
  for (let i = 0; i < pad; i++) w.u8(0);
  return { header: w.finish(), offsets, alignment };
}

/**
 * Writes a GGUF file atomically (a temporary file renamed over `path` at the end), producing each
 * tensor's data only when its turn comes, so a model never needs to be in memory twice.
 */
export function writeGguf(path: string, metadata: ReadonlyMap<string, GgufValue>, tensors: readonly GgufTensorOut[]): void {
  const { header, alignment } = serializeGgufHeader(metadata, tensors);
  function* chunks(): Generator<Uint8Array> {
    yield* header;
    for (const t of tensors) {
      const expected = tensorBytes(t.type, t.dims.reduce((a, b) => a * b, 1));
      let n = 0;
      for (const piece of t.data()) {
        n += piece.byteLength;
        yield piece;
      }
      if (n !== expected) throw new RangeError(`tensor '${t.name}' produced ${n} bytes, its shape and type need ${expected}`);
      const pad = (alignment - (n % alignment)) % alignment;
      if (pad > 0) yield new Uint8Array(pad);
    }
  }
  writeFileAtomic(path, chunks());
}
