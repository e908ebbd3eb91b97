// GGUF tensor data types: how a row of values is stored, decoded to float32 (and, for Q8_0 and Q4_0,
// split losslessly into the engine's Q8_0: int8 values with one float32 scale per 32), and encoded
// for export. Layouts are ggml's (ggml-common.h); "f16" is an IEEE half, "d" a block scale.
//
//   F32   4 bytes per value.           F16   IEEE binary16.          BF16   the top 16 bits of a float32.
//   Q8_0  32 values, 34 bytes: f16 d, int8 q[32];                    x[j] = d·q[j]
//   Q4_0  32 values, 18 bytes: f16 d, uint8 qs[16];                  x[j] = d·((qs[j] & 15) − 8),
//                                                                    x[j+16] = d·((qs[j] >> 4) − 8)
//   Q4_K  256 values, 144 bytes: f16 d, f16 dmin, uint8 scales[12], uint8 qs[128]. Eight sub-blocks
//         of 32, each with a 6-bit scale sc and a 6-bit min m packed in `scales` (get_scale_min_k4):
//         x = d·sc·q − dmin·m, q the 4-bit value. Sub-blocks 2i and 2i+1 take the low and the high
//         nibbles of qs[32i .. 32i+32).
//   Q5_K  256 values, 176 bytes: f16 d, f16 dmin, scales[12], uint8 qh[32], uint8 qs[128]: as Q4_K
//         with a fifth bit — bit k of qh[l] is the high bit of value l of sub-block k.
//   Q6_K  256 values, 210 bytes: uint8 ql[128], uint8 qh[64], int8 scales[16], f16 d. Sixteen
//         sub-blocks of 16 with int8 scales; q = (4 low bits from ql | 2 high bits from qh) − 32;
//         x = d·scale·q. Each half of 128 values uses 64 bytes of ql and 32 of qh (order below).
//
// Arithmetic is float32 in ggml's order (Math.fround after each operation), so decoded values are
// what ggml's reference dequantize_row_* functions return.

import { GgmlType } from './gguf.js';

export const QK = 32; // values per Q8_0 / Q4_0 block
export const QK_K = 256; // values per K-quant super-block

// ----------------------------------------------------------------------------------------------
// Half floats

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
let halfTable: Float32Array | undefined;

/** float32 value of IEEE half bits `h` (exact). */
export function halfToFloat(h: number): number {
  halfTable ??= buildHalfTable();
  return halfTable[h & 0xffff]!;
}

function buildHalfTable(): Float32Array {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    t[h] = e === 0 ? sign * m * 2 ** -24 : e === 31 ? (m === 0 ? sign * Infinity : NaN) : sign * (1024 + m) * 2 ** (e - 25);
  }
  return t;
}

/** IEEE half bits of float32 `x`, rounded to nearest even (as F16C and numpy do); overflow gives ±inf. */
export function floatToHalf(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e >= 1) {
    let h = sign | (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h += 1; // a carry into the exponent is right
    return h;
  }
  if (e < -10) return sign;
  const m = mant | 0x800000;
  const shift = 14 - e;
  let h = m >>> shift;
  const rem = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rem > half || (rem === half && (h & 1) !== 0)) h += 1;
  return sign | h;
}

/** bfloat16 bits of float32 `x`, rounded to nearest even; NaN stays a (quiet) NaN. */
export function floatToBf16(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) & 0xffff) | 0x40;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16ToFloat(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}

// ----------------------------------------------------------------------------------------------
// Decoding

/** The tensor types decodeValues understands. */
export const DECODABLE_TYPES: ReadonlySet<number> = new Set([
  GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
]);

/**
 * Decodes `count` values of type `type` (a whole number of blocks) from `src` into dst[0..count).
 * `src` holds exactly those values' bytes.
 */
export function decodeValues(type: number, src: Uint8Array, dst: Float32Array, count: number): void {
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  switch (type) {
    case GgmlType.F32:
      for (let i = 0; i < count; i++) dst[i] = dv.getFloat32(4 * i, true);
      return;
    case GgmlType.F16:
      for (let i = 0; i < count; i++) dst[i] = halfToFloat(dv.getUint16(2 * i, true));
      return;
    case GgmlType.BF16:
      for (let i = 0; i < count; i++) dst[i] = bf16ToFloat(dv.getUint16(2 * i, true));
      return;
    case GgmlType.Q8_0:
      for (let b = 0; b < count / QK; b++) {
        const o = 34 * b;
        const d = halfToFloat(dv.getUint16(o, true));
        for (let j = 0; j < QK; j++) dst[b * QK + j] = Math.fround(dv.getInt8(o + 2 + j) * d);
      }
      return;
    case GgmlType.Q4_0:
      for (let b = 0; b < count / QK; b++) {
        const o = 18 * b;
        const d = halfToFloat(dv.getUint16(o, true));
        for (let j = 0; j < QK / 2; j++) {
          const byte = src[o + 2 + j]!;
          dst[b * QK + j] = Math.fround(((byte & 0x0f) - 8) * d);
          dst[b * QK + j + QK / 2] = Math.fround(((byte >> 4) - 8) * d);
        }
      }
      return;
    case GgmlType.Q4_K:
      for (let b = 0; b < count / QK_K; b++) decodeQ4K(src, 144 * b, dst, b * QK_K, false);
      return;
    case GgmlType.Q5_K:
      for (let b = 0; b < count / QK_K; b++) decodeQ4K(src, 176 * b, dst, b * QK_K, true);
      return;
    case GgmlType.Q6_K:
      for (let b = 0; b < count / QK_K; b++) decodeQ6K(src, 210 * b, dst, b * QK_K);
      return;
    default:
      throw new RangeError(`cannot decode ggml type ${type}`);
  }
}

/** The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block (ggml's get_scale_min_k4). */
function scaleMin(s: Uint8Array, o: number, j: number): [number, number] {
  if (j < 4) return [s[o + j]! & 63, s[o + j + 4]! & 63];
  return [(s[o + j + 4]! & 0x0f) | ((s[o + j - 4]! >> 6) << 4), (s[o + j + 4]! >> 4) | ((s[o + j]! >> 6) << 4)];
}

/** One Q4_K (or, with `fifthBit`, Q5_K) super-block at src[o..] → dst[y .. y+256). */
function decodeQ4K(src: Uint8Array, o: number, dst: Float32Array, y: number, fifthBit: boolean): void {
  const d = halfToFloat(src[o]! | (src[o + 1]! << 8));
  const dmin = halfToFloat(src[o + 2]! | (src[o + 3]! << 8));
  const scales = o + 4;
  const qh = o + 16; // Q5_K only
  const qs = fifthBit ? o + 48 : o + 16;
  for (let j = 0; j < 4; j++) {
    // sub-blocks 2j (low nibbles) and 2j+1 (high nibbles) of bytes qs[32j .. 32j+32)
    const [sc1, m1] = scaleMin(src, scales, 2 * j);
    const [sc2, m2] = scaleMin(src, scales, 2 * j + 1);
    const d1 = Math.fround(d * sc1), min1 = Math.fround(dmin * m1);
    const d2 = Math.fround(d * sc2), min2 = Math.fround(dmin * m2);
    for (let l = 0; l < 32; l++) {
      const byte = src[qs + 32 * j + l]!;
      let lo = byte & 0x0f;
      let hi = byte >> 4;
      if (fifthBit) {
        const h = src[qh + l]!;
        if (h & (1 << (2 * j))) lo += 16;
        if (h & (2 << (2 * j))) hi += 16;
      }
      dst[y + 64 * j + l] = Math.fround(Math.fround(d1 * lo) - min1);
      dst[y + 64 * j + 32 + l] = Math.fround(Math.fround(d2 * hi) - min2);
    }
  }
}

/** One Q6_K super-block at src[o..] → dst[y .. y+256). */
function decodeQ6K(src: Uint8Array, o: number, dst: Float32Array, y: number): void {
  const d = halfToFloat(src[o + 208]! | (src[o + 209]! << 8));
  for (let half = 0; half < 2; half++) {
    const ql = o + 64 * half;
    const qh = o + 128 + 32 * half;
    const sc = o + 192 + 8 * half;
    const out = y + 128 * half;
    for (let l = 0; l < 32; l++) {
      const is = l >> 4;
      const h = src[qh + l]!;
      const q1 = ((src[ql + l]! & 0x0f) | ((h & 3) << 4)) - 32;
      const q2 = ((src[ql + l + 32]! & 0x0f) | (((h >> 2) & 3) << 4)) - 32;
      const q3 = ((src[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32;
      const q4 = ((src[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32;
      // the int8 scales of the four sub-blocks these values fall in
      const s0 = (src[sc + is]! << 24) >> 24, s2 = (src[sc + is + 2]! << 24) >> 24;
      const s4 = (src[sc + is + 4]! << 24) >> 24, s6 = (src[sc + is + 6]! << 24) >> 24;
      dst[out + l] = Math.fround(Math.fround(d * s0) * q1);
      dst[out + l + 32] = Math.fround(Math.fround(d * s2) * q2);
      dst[out + l + 64] = Math.fround(Math.fround(d * s4) * q3);
      dst[out + l + 96] = Math.fround(Math.fround(d * s6) * q4);
    }
  }
}

/**
 * Q8_0 or Q4_0 blocks → the engine's Q8_0 without loss: q[i] int8 values and s[i/32] float32
 * scales with value = q·s exactly the stored value (Q8_0: q and d as they are; Q4_0: d and the
 * 4-bit value − 8). `count` values, a whole number of blocks; q and s are filled from index 0.
 */
export function splitToQ8(type: number, src: Uint8Array, count: number, q: Int8Array, s: Float32Array): void {
  const blocks = count / QK;
  if (type === GgmlType.Q8_0) {
    for (let b = 0; b < blocks; b++) {
      const o = 34 * b;
      s[b] = halfToFloat(src[o]! | (src[o + 1]! << 8));
      for (let j = 0; j < QK; j++) q[b * QK + j] = (src[o + 2 + j]! << 24) >> 24;
    }
  } else if (type === GgmlType.Q4_0) {
    for (let b = 0; b < blocks; b++) {
      const o = 18 * b;
      s[b] = halfToFloat(src[o]! | (src[o + 1]! << 8));
      for (let j = 0; j < QK / 2; j++) {
        const byte = src[o + 2 + j]!;
        q[b * QK + j] = (byte & 0x0f) - 8;
        q[b * QK + j + QK / 2] = (byte >> 4) - 8;
      }
    }
  } else {
    throw new RangeError(`ggml type ${type} has no lossless Q8_0 form`);
  }
}

/** True when splitToQ8 can take type `type`. */
export function splitsToQ8(type: number): boolean {
  return type === GgmlType.Q8_0 || type === GgmlType.Q4_0;
}

// ----------------------------------------------------------------------------------------------
// Encoding (for export)

/** float32 values → F16 bytes (round to nearest even). Values beyond ±65504 become ±inf. */
export function encodeF16(src: Float32Array, dst: Uint8Array): void {
  const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  for (let i = 0; i < src.length; i++) dv.setUint16(2 * i, floatToHalf(src[i]!), true);
}

/** float32 values → BF16 bytes (round to nearest even). */
export function encodeBF16(src: Float32Array, dst: Uint8Array): void {
  const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  for (let i = 0; i < src.length; i++) dv.setUint16(2 * i, floatToBf16(src[i]!), true);
}

/** round(), as C's roundf: halves away from zero. */
function roundAway(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/**
 * float32 values (a whole number of blocks of 32) → Q8_0 bytes, as ggml's quantize_row_q8_0_ref:
 * d = max|x| / 127, q = roundf(x · (1/d)), d stored as f16.
 */
export function encodeQ8_0(src: Float32Array, dst: Uint8Array): void {
  const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  for (let b = 0; b < src.length / QK; b++) {
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(src[b * QK + j]!));
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    dv.setUint16(34 * b, floatToHalf(d), true);
    for (let j = 0; j < QK; j++) dv.setInt8(34 * b + 2 + j, roundAway(Math.fround(src[b * QK + j]! * id)));
  }
}
