// Float tensors as model files store them, to and from float32: F32 (IEEE single), F16 (IEEE half)
// and BF16 (bfloat16: the top 16 bits of a float32, so widening is a shift). Little-endian, as
// every format here is. Decoding is exact; encoding rounds to nearest even (gguf-blocks.ts's
// floatToHalf / floatToBf16, what numpy and torch do).

import { floatToBf16, floatToHalf, halfToFloat } from './gguf-blocks.js';

export type FloatDType = 'F32' | 'F16' | 'BF16';

export const FLOAT_DTYPE_BYTES: Readonly<Record<FloatDType, number>> = { F32: 4, F16: 2, BF16: 2 };

export function isFloatDType(d: string): d is FloatDType {
  return d === 'F32' || d === 'F16' || d === 'BF16';
}

/** dst[0..count) = the `count` values of `dtype` in `src` (src.byteOffset must be even; 4-aligned for F32). */
export function decodeFloats(dtype: FloatDType, src: Uint8Array, dst: Float32Array, count: number): void {
  if (dtype === 'F32') {
    dst.set(new Float32Array(src.buffer, src.byteOffset, count));
    return;
  }
  const h = new Uint16Array(src.buffer, src.byteOffset, count);
  if (dtype === 'BF16') {
    const out = new Uint32Array(dst.buffer, dst.byteOffset, count);
    for (let i = 0; i < count; i++) out[i] = h[i]! << 16;
  } else {
    for (let i = 0; i < count; i++) dst[i] = halfToFloat(h[i]!);
  }
}

/** The `dtype` bytes of src[0..count) into dst (count · FLOAT_DTYPE_BYTES[dtype] bytes). */
export function encodeFloats(dtype: FloatDType, src: Float32Array, dst: Uint8Array, count: number): void {
  if (dtype === 'F32') {
    dst.set(new Uint8Array(src.buffer, src.byteOffset, 4 * count));
    return;
  }
  const h = new Uint16Array(dst.buffer, dst.byteOffset, count);
  const encode = dtype === 'BF16' ? floatToBf16 : floatToHalf;
  for (let i = 0; i < count; i++) h[i] = encode(src[i]!);
}
