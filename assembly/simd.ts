// Horizontal sums of SIMD lanes and a scaling loop, shared by the kernels.

/** Sum of the four float32 lanes of v. */
// @ts-ignore: decorator
@inline export function hsum(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

/** Largest of the four float32 lanes of v (Mathf.max: a NaN lane gives NaN). */
// @ts-ignore: decorator
@inline export function hmax(v: v128): f32 {
  return Mathf.max(Mathf.max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), Mathf.max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

/** Sum of the four int32 lanes of v. */
// @ts-ignore: decorator
@inline export function hsumI32(v: v128): i32 {
  return (i32x4.extract_lane(v, 0) + i32x4.extract_lane(v, 1)) + (i32x4.extract_lane(v, 2) + i32x4.extract_lane(v, 3));
}

/** [Σ a0, Σ a1, Σ a2, Σ a3]: the four horizontal sums at once (a 4×4 transpose folded into adds). */
// @ts-ignore: decorator
@inline export function hsum4(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const u01 = f32x4.add(v128.shuffle<f32>(a0, a1, 0, 4, 1, 5), v128.shuffle<f32>(a0, a1, 2, 6, 3, 7));
  const u23 = f32x4.add(v128.shuffle<f32>(a2, a3, 0, 4, 1, 5), v128.shuffle<f32>(a2, a3, 2, 6, 3, 7));
  return f32x4.add(v128.shuffle<f32>(u01, u23, 0, 1, 4, 5), v128.shuffle<f32>(u01, u23, 2, 3, 6, 7));
}

/** The same for int32 lanes (exact). */
// @ts-ignore: decorator
@inline export function hsum4I32(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const u01 = i32x4.add(v128.shuffle<i32>(a0, a1, 0, 4, 1, 5), v128.shuffle<i32>(a0, a1, 2, 6, 3, 7));
  const u23 = i32x4.add(v128.shuffle<i32>(a2, a3, 0, 4, 1, 5), v128.shuffle<i32>(a2, a3, 2, 6, 3, 7));
  return i32x4.add(v128.shuffle<i32>(u01, u23, 0, 1, 4, 5), v128.shuffle<i32>(u01, u23, 2, 3, 6, 7));
}

/**
 * c + a · b, lane by lane: one fused multiply-add (one rounding) where the build has relaxed SIMD
 * (kernels-fma.wasm), else a multiply then an add (two roundings).
 */
// @ts-ignore: decorator
@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

/** In place: x *= s over n values. */
// @ts-ignore: decorator
@inline export function scaleInPlace(x: usize, n: i32, s: f32): void {
  const vs = f32x4.splat(s);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const p = x + (<usize>i << 2);
    v128.store(p, f32x4.mul(v128.load(p), vs));
  }
  for (; i < n; i++) {
    const p = x + (<usize>i << 2);
    store<f32>(p, load<f32>(p) * s);
  }
}
