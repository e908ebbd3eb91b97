// e^x for the kernels: the softmaxes, the cross-entropy, SiLU (kernels.ts, train.ts).

import { madd } from './simd';

/** c + a · b as a multiply then an add (two roundings, the same in every build). */
// @ts-ignore: decorator
@inline function step(a: v128, b: v128, c: v128): v128 {
  return f32x4.add(f32x4.mul(a, b), c);
}

/**
 * e^x in four lanes (Cephes' expf): x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-7 polynomial,
 * then 2^n put into the exponent bits. Relative error ≈ 2·10⁻⁷ (about 2 float32 ulp). x is clamped
 * to [-87.3, 88.7], so very negative inputs give ~1e-38 instead of 0 (harmless in a softmax sum).
 *
 * Each step is a multiply then an add, so the bits are the same in every build: the one-token
 * paths (decode's attention and sampling softmax, SiLU) give the same text with or without relaxed
 * SIMD. (The paths whose results depend on the build anyway, beside the matrix × matrix products —
 * the causal softmax, evaluation's cross-entropy — take exp2Neg4 below.)
 */
//
// (The clamp is pmin/pmax — one instruction each, where min/max's NaN and ±0 rules take several;
// a NaN still comes through. n = round(x·log2 e) is taken by adding 1.5·2²³: the sum's ulp is 1, so
// it rounds to the nearest integer, ties to even, exactly as f32x4.nearest, and its low mantissa
// bits are n + 2²² — 2ⁿ's exponent bits without a float-to-int conversion. Same bits as nearest and
// trunc_sat, several instructions fewer.)
// @ts-ignore: decorator
@inline export function exp4(x: v128): v128 {
  x = f32x4.pmin(f32x4.pmax(x, f32x4.splat(-87.3)), f32x4.splat(88.7));
  const shifted = step(x, f32x4.splat(1.44269504088896341), f32x4.splat(12582912.0));
  const n = f32x4.sub(shifted, f32x4.splat(12582912.0));
  // r = x − n·ln2 with ln2 in two parts (0.693359375 is exact in 10 bits: n·it has no rounding)
  const r = step(n, f32x4.splat(2.12194440e-4), step(n, f32x4.splat(-0.693359375), x));
  let p = f32x4.splat(1.9875691500e-4);
  p = step(p, r, f32x4.splat(1.3981999507e-3));
  p = step(p, r, f32x4.splat(8.3334519073e-3));
  p = step(p, r, f32x4.splat(4.1665795894e-2));
  p = step(p, r, f32x4.splat(1.6666665459e-1));
  p = step(p, r, f32x4.splat(5.0000001201e-1));
  p = f32x4.add(step(f32x4.mul(p, r), r, r), f32x4.splat(1));
  const pow2n = i32x4.shl(i32x4.sub(shifted, i32x4.splat(0x4B400000 - 127)), 23);
  return f32x4.mul(p, pow2n);
}

/** e^x for one value, with the same arithmetic as exp4 (so results do not depend on alignment). */
// @ts-ignore: decorator
@inline export function exp1(x: f32): f32 {
  return f32x4.extract_lane(exp4(f32x4.splat(x)), 0);
}

/**
 * 2^y in four lanes, for the exponents of a softmax already scaled by log₂e and with the maximum
 * taken off (y ≤ 0, up to rounding): y = n + r with n = round(y) (the same 1.5·2²³ trick as exp4)
 * and |r| ≤ 1/2 exact, 2^r by a degree-5 polynomial (minimax for the relative error on [−½, ½],
 * fitted by the Remez algorithm), and 2ⁿ added into the exponent bits. Relative error ≤ 2.1·10⁻⁷
 * over y in [−30, 0] in a float32 simulation of these steps (exp4: ≈ 2·10⁻⁷). y is clamped below
 * at −125, so e^(very negative) gives ~2·10⁻³⁸ instead of 0 (harmless in a sum).
 *
 * 11 instructions against exp4's 17 (12 and 18 with the caller's multiply-add for y, or its
 * subtraction of the maximum): one clamp, the reduction in two subtractions, a shorter polynomial,
 * 2ⁿ in a shift and an integer add. Its steps are fused multiply-adds where the build has relaxed
 * SIMD: it serves only the paths beside the matrix products (the causal softmax of block
 * attention and training, evaluation's cross-entropy), whose results depend on the build anyway.
 */
// @ts-ignore: decorator
@inline export function exp2Neg4(y: v128): v128 {
  const yc = exp2Clamp(y);
  return exp2Finish(yc, exp2Shifted(yc));
}

// exp2Neg4 in steps, for loops that software-pipeline it (the first two for one vector beside the
// last for the vector before: each trip's instructions then find their inputs ready, where one
// vector's chain of dependent steps would wait on itself) — the same operations, so the same bits.

/** y clamped below at −125. */
// @ts-ignore: decorator
@inline export function exp2Clamp(y: v128): v128 {
  return f32x4.pmax(y, f32x4.splat(-125.0));
}

/** y + 1.5·2²³: its low mantissa bits are n + 2²², n = round(y). */
// @ts-ignore: decorator
@inline export function exp2Shifted(yc: v128): v128 {
  return f32x4.add(yc, f32x4.splat(12582912.0));
}

/** 2^r by the polynomial, r = y − n exact, times 2ⁿ. */
// @ts-ignore: decorator
@inline export function exp2Finish(yc: v128, shifted: v128): v128 {
  const r = f32x4.sub(yc, f32x4.sub(shifted, f32x4.splat(12582912.0)));
  let p = f32x4.splat(1.3276472454890609e-3);
  p = madd(p, r, f32x4.splat(9.675540961325169e-3));
  p = madd(p, r, f32x4.splat(5.550713092088699e-2));
  p = madd(p, r, f32x4.splat(2.4022120237350464e-1));
  p = madd(p, r, f32x4.splat(6.931469440460205e-1));
  p = madd(p, r, f32x4.splat(1.0000001192092896));
  // (n + 2²² + 0x4B400000's bits) << 23 leaves n << 23: 2ⁿ times p, as an add to p's exponent
  return i32x4.add(p, i32x4.shl(shifted, 23));
}
