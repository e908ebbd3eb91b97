// safetensors files (Hugging Face's weight format): read the table of tensors, and write one.
//
//   u64 (little-endian)  N, the length of the header
//   N bytes              JSON: { "NAME": { "dtype": "F32", "shape": [rows, cols],
//                                          "data_offsets": [begin, end] }, …,
//                                "__metadata__": { "format": "pt", … } }   (padded with spaces)
//   the data             each tensor's bytes at [8 + N + begin, 8 + N + end), row-major, little-endian
//
// The header is checked before anything is read through it: its length against the file, every
// dtype and shape, end − begin against the shape's byte size, every range inside the data and no
// two ranges overlapping. A file that fails any check is a one-line FormatError naming the tensor.

import { FormatError, quote } from '../errors.js';
import { type FileReader } from './file-reader.js';

/** Bytes per value of every safetensors dtype (so any valid file's header checks out). */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, I64: 8, U64: 8, F64: 8,
};

export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Absolute byte offset of the first value in the file. */
  readonly offset: number;
  readonly byteLength: number;
}

/** Largest header accepted (the format's own reference implementation allows 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

/** Reads and checks the tensor table of the safetensors file open in `f`. */
export function readSafetensorsHeader(f: FileReader): Map<string, SafetensorsEntry> {
  const fail = (what: string): never => {
    throw new FormatError(f.path, what);
  };
  if (f.size < 8) fail(`too short for a safetensors file (${f.size} bytes)`);
  const lenBytes = f.bytes(0, 8);
  const dv = new DataView(lenBytes.buffer);
  const n = dv.getUint32(0, true) + dv.getUint32(4, true) * 2 ** 32;
  if (n < 2 || n > MAX_HEADER_BYTES || 8 + n > f.size) fail(`safetensors header length ${n} does not fit the file (${f.size} bytes)`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(f.bytes(8, n)));
  } catch {
    fail('the safetensors header is not valid UTF-8 JSON');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('the safetensors header is not a JSON object');
  const dataStart = 8 + n;
  const dataBytes = f.size - dataStart;
  const entries = new Map<string, SafetensorsEntry>();
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') continue;
    const bad = (what: string): never => fail(`tensor ${quote(name)}: ${what}`);
    if (typeof value !== 'object' || value === null) bad('not an object');
    const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof v.dtype !== 'string' || !(v.dtype in SAFETENSORS_DTYPE_BYTES)) bad(`unknown dtype ${quote(v.dtype)}`);
    const dtype = v.dtype as string;
    if (!Array.isArray(v.shape) || v.shape.length > 8 || !v.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) bad('shape is not a list of sizes');
    const shape = v.shape as number[];
    if (!Array.isArray(v.data_offsets) || v.data_offsets.length !== 2 || !v.data_offsets.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      bad('data_offsets is not [begin, end]');
    }
    const [begin, end] = v.data_offsets as [number, number];
    if (end < begin || end > dataBytes) bad(`data [${begin}, ${end}) lies outside the ${dataBytes} bytes of data`);
    const numel = shape.reduce((a, b) => a * b, 1);
    const bytes = numel * SAFETENSORS_DTYPE_BYTES[dtype]!;
    if (!Number.isSafeInteger(bytes) || bytes !== end - begin) bad(`shape [${shape.join(', ')}] of ${dtype} needs ${bytes} bytes, data_offsets give ${end - begin}`);
    entries.set(name, { name, dtype, shape, offset: dataStart + begin, byteLength: end - begin });
  }
  const sorted = [...entries.values()].filter((e) => e.byteLength > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!, cur = sorted[i]!;
    if (cur.offset < prev.offset + prev.byteLength) fail(`tensors ${quote(prev.name)} and ${quote(cur.name)} overlap`);
  }
  return entries;
}

/** One tensor to write: its name, dtype, shape and a function that yields its bytes in order. */
export interface SafetensorsTensor {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Yields the tensor's bytes, in order, in pieces of any size. */
  bytes(): Iterable<Uint8Array>;
}

/**
 * The header of a safetensors file holding `tensors` in order (8-byte length + JSON padded with
 * spaces to a multiple of 8, as the reference writer aligns it); the tensors' bytes follow it.
 */
export function safetensorsHeader(tensors: readonly SafetensorsTensor[], metadata: Record<string, string> = { format: 'pt' }): Uint8Array {
  const table: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPE_BYTES[t.dtype]!;
    table[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = new TextEncoder().encode(JSON.stringify(table));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}
