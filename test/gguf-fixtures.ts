// Test fixtures for GGUF: reference decoders written from ggml's published block layouts
// (ggml-common.h), one element at a time — not in the loop order of ggml's dequantize_row_* that
// src/model/gguf-blocks.ts follows — and hand-made blocks of random bytes with finite f16 scales.

import { GgmlType, tensorBytes } from '../src/model/gguf.js';

/** IEEE half → number, from the definition. */
export function refHalf(h: number): number {
  const s = h >> 15 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
  if (e === 0) return s * m / 1024 * 2 ** -14;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
export const f = Math.fround;
export const u16 = (b: Uint8Array, o: number): number => b[o]! | (b[o + 1]! << 8);
export const i8 = (x: number): number => (x > 127 ? x - 256 : x);

/** Element k (0..255) of the 6-bit (scale, min) table of a Q4_K/Q5_K super-block's 12 bytes. */
function refScaleMin(sc: Uint8Array, j: number): [number, number] {
  // scales 0-3 / mins 0-3: low 6 bits of bytes 0-3 / 4-7; scales 4-7: low nibble of bytes 8-11 with
  // the top two bits of bytes 0-3 above it; mins 4-7: high nibble of bytes 8-11 with the top two bits of bytes 4-7
  if (j < 4) return [sc[j]! % 64, sc[j + 4]! % 64];
  return [(sc[j + 4]! % 16) + 16 * Math.floor(sc[j - 4]! / 64), Math.floor(sc[j + 4]! / 16) + 16 * Math.floor(sc[j]! / 64)];
}

export function refDecode(type: number, b: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let k = 0; k < n; k++) {
    switch (type) {
      case GgmlType.F32: out[k] = new DataView(b.buffer, b.byteOffset).getFloat32(4 * k, true); break;
      case GgmlType.F16: out[k] = refHalf(u16(b, 2 * k)); break;
      case GgmlType.BF16: out[k] = new Float32Array(new Uint32Array([u16(b, 2 * k) * 65536]).buffer)[0]!; break;
      case GgmlType.Q8_0: { const o = 34 * Math.floor(k / 32); out[k] = f(refHalf(u16(b, o)) * i8(b[o + 2 + (k % 32)]!)); break; }
      case GgmlType.Q4_0: {
        const o = 18 * Math.floor(k / 32), j = k % 32;
        const byte = b[o + 2 + (j % 16)]!;
        out[k] = f(refHalf(u16(b, o)) * ((j < 16 ? byte % 16 : Math.floor(byte / 16)) - 8));
        break;
      }
      case GgmlType.Q4_K: case GgmlType.Q5_K: {
        const five = type === GgmlType.Q5_K;
        const o = (five ? 176 : 144) * Math.floor(k / 256), r = k % 256;
        const sub = Math.floor(r / 32), l = r % 32; // sub-block 0..7 and index in it
        const byte = b[o + (five ? 48 : 16) + 32 * Math.floor(sub / 2) + l]!;
        let q = sub % 2 === 0 ? byte % 16 : Math.floor(byte / 16);
        if (five) q += 16 * (Math.floor(b[o + 16 + l]! / 2 ** sub) % 2);
        const [sc, m] = refScaleMin(b.subarray(o + 4, o + 16), sub);
        out[k] = f(f(f(refHalf(u16(b, o)) * sc) * q) - f(refHalf(u16(b, o + 2)) * m));
        break;
      }
      case GgmlType.Q6_K: {
        const o = 210 * Math.floor(k / 256), r = k % 256;
        const half = Math.floor(r / 128), quarter = Math.floor((r % 128) / 32), l = r % 32;
        const lowByte = b[o + 64 * half + 32 * (quarter % 2) + l]!;
        const low = quarter < 2 ? lowByte % 16 : Math.floor(lowByte / 16);
        const high = Math.floor(b[o + 128 + 32 * half + l]! / 4 ** quarter) % 4;
        const scale = i8(b[o + 192 + 8 * half + 2 * quarter + Math.floor(l / 16)]!);
        out[k] = f(f(refHalf(u16(b, o + 208)) * scale) * (low + 16 * high - 32));
        break;
      }
      default: throw new Error(`no reference for type ${type}`);
    }
  }
  return out;
}

/** A deterministic byte generator (xorshift32). */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x & 0xff;
  };
}

/** Random blocks of `type` whose f16 fields are finite halves (random everywhere else). */
export function fixture(type: number, blocks: number, seed: number): Uint8Array {
  const next = rng(seed);
  const size = tensorBytes(type, blocks * (type === GgmlType.Q8_0 || type === GgmlType.Q4_0 ? 32 : 256));
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = next();
  const half = (o: number): void => { b[o + 1] = b[o + 1]! & 0x3b; }; // exponent < 15: finite, |x| < 1
  const per = size / blocks;
  for (let k = 0; k < blocks; k++) {
    const o = k * per;
    if (type === GgmlType.Q8_0 || type === GgmlType.Q4_0) half(o);
    if (type === GgmlType.Q4_K || type === GgmlType.Q5_K) { half(o); half(o + 2); }
    if (type === GgmlType.Q6_K) half(o + 208);
  }
  return b;
}


/** `n` random finite values of a float type (F32, F16, BF16), as that type's bytes, |x| < 2. */
export function floatFixture(type: number, n: number, seed: number): Uint8Array {
  const next = rng(seed);
  if (type === GgmlType.F32) return new Uint8Array(Float32Array.from({ length: n }, () => (next() - 128) / 64 + next() / 65536).buffer);
  const b = new Uint8Array(2 * n);
  for (let i = 0; i < n; i++) {
    const bits = type === GgmlType.F16
      ? (next() & 0x80) << 8 | (next() % 16) << 10 | (next() << 2 | next() >> 6) // exponent 0..15: |x| < 2
      : (next() & 0x80) << 8 | (112 + (next() % 16)) << 7 | (next() & 0x7f); // BF16 exponent 112..127
    b[2 * i] = bits & 0xff;
    b[2 * i + 1] = bits >> 8;
  }
  return b;
}
