// e^x for the kernels: the softmaxes, the cross-entropy, SiLU (kernels.ts, train.ts).

/**
 * e^x in four lanes (Cephes' expf): x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-7 polynomial,
 * then 2^n put into the exponent bits. Relative error ≈ 2·10⁻⁷ (about 2 float32 ulp). x is clamped
 * to [-87.3, 88.7], so very negative inputs give ~1e-38 instead of 0 (harmless in a softmax sum).
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
  const shifted = f32x4.add(f32x4.mul(x, f32x4.splat(1.44269504088896341)), f32x4.splat(12582912.0));
  const n = f32x4.sub(shifted, f32x4.splat(12582912.0));
  const r = f32x4.sub(f32x4.sub(x, f32x4.mul(n, f32x4.splat(0.693359375))), f32x4.mul(n, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  p = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(p, r), r), r), f32x4.splat(1));
  const pow2n = i32x4.shl(i32x4.sub(shifted, i32x4.splat(0x4B400000 - 127)), 23);
  return f32x4.mul(p, pow2n);
}

/** e^x for one value, with the same arithmetic as exp4 (so results do not depend on alignment). */
// @ts-ignore: decorator
@inline export function exp1(x: f32): f32 {
  return f32x4.extract_lane(exp4(f32x4.splat(x)), 0);
}
