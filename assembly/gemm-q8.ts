// The int8 (Q8_0) matrix × matrix product: C (M, d) = X (M, n) · Wᵀ for M vectors at once — a
// prompt's block of tokens through a Q8_0 weight matrix — bit for bit what M calls of
// matmulQ8Rows (kernels.ts) compute.
//
// X is M rows quantized by `quantize` (xq: M × n int8, xs: M × n/gs scales); W is (d, n) Q8_0
// (wq int8, ws one scale per group of gs values). Only the common layout is handled here: every
// row made of whole groups (n % gs == 0) and gs a multiple of 8; matmulQ8Rows does the rest.
// Each output is, as in matmulQ8Rows,
//     val = Σ_g f32(f32(isum_g · ws[r, g]) · xs[m, g])     added in float32, group after group,
// with isum_g the exact integer dot product of group g.
//
// How: the micro-kernel takes 2 rows of X × 4 channels (rows of W). Eight values of a row at a
// time are loaded straight into int16 lanes (one sign-extending load), and i32x4.dot_i16x8_s of
// an X row with a W row adds their eight products into four int32 lanes — exact, so the lanes need
// no order; at the end of a group the four channels' lanes are summed together (hsum4I32) and
// each row's four float32 sums take (isum · ws) · xs lane by lane. W and X are read in place (both
// are contiguous along k): no packing. Rows are taken RB at a time so that they stay in L1 while
// every 4-channel tile of W passes over them.

import { hsum4I32 } from './simd';

/** Rows of X kept in L1 while the channel tiles pass over them. */
const RB: i32 = 16;

/** Scales of channels ch … ch+3 for group g (the scale rows are `groups` floats apart). */
// @ts-ignore: decorator
@inline function scales4(ws: usize, ch: i32, groups: i32, g: i32): v128 {
  const row = <usize>groups << 2;
  const p = ws + ((<usize>ch * <usize>groups + <usize>g) << 2);
  let s = f32x4.splat(load<f32>(p));
  s = f32x4.replace_lane(s, 1, load<f32>(p + row));
  s = f32x4.replace_lane(s, 2, load<f32>(p + 2 * row));
  return f32x4.replace_lane(s, 3, load<f32>(p + 3 * row));
}

/**
 * C (M, d) = X · Wᵀ for rows [m0, m1) and channels [r0, r1) of C (row stride ldc bytes); see the
 * top of this file.
 */
export function gemmQ8(
  c: usize, ldc: i32, xq: usize, xs: usize, wq: usize, ws: usize, n: i32, gs: i32,
  m0: i32, m1: i32, r0: i32, r1: i32,
): void {
  const groups = n / gs;
  const xRow = <usize>n;
  const xsRow = <usize>groups << 2;
  const cStride = <usize>ldc;
  const gBytes = <usize>gs;
  for (let mb = m0; mb < m1; mb += RB) {
    const mbEnd = min(mb + RB, m1);
    let r = r0;
    for (; r + 4 <= r1; r += 4) {
      const w0 = wq + <usize>r * xRow, w1 = w0 + xRow, w2 = w1 + xRow, w3 = w2 + xRow;
      let m = mb;
      for (; m + 2 <= mbEnd; m += 2) {
        const x0 = xq + <usize>m * xRow, x1 = x0 + xRow;
        const s0 = xs + <usize>m * xsRow, s1 = s0 + xsRow;
        let v0 = f32x4.splat(0), v1 = f32x4.splat(0);
        let k: usize = 0;
        for (let g = 0; g < groups; g++) {
          let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
          let b0 = i32x4.splat(0), b1 = i32x4.splat(0), b2 = i32x4.splat(0), b3 = i32x4.splat(0);
          const kEnd = k + gBytes;
          for (; k < kEnd; k += 8) {
            const p = v128.load8x8_s(x0 + k), q = v128.load8x8_s(x1 + k);
            let w = v128.load8x8_s(w0 + k);
            a0 = i32x4.add(a0, i32x4.dot_i16x8_s(p, w)); b0 = i32x4.add(b0, i32x4.dot_i16x8_s(q, w));
            w = v128.load8x8_s(w1 + k);
            a1 = i32x4.add(a1, i32x4.dot_i16x8_s(p, w)); b1 = i32x4.add(b1, i32x4.dot_i16x8_s(q, w));
            w = v128.load8x8_s(w2 + k);
            a2 = i32x4.add(a2, i32x4.dot_i16x8_s(p, w)); b2 = i32x4.add(b2, i32x4.dot_i16x8_s(q, w));
            w = v128.load8x8_s(w3 + k);
            a3 = i32x4.add(a3, i32x4.dot_i16x8_s(p, w)); b3 = i32x4.add(b3, i32x4.dot_i16x8_s(q, w));
          }
          const wscale = scales4(ws, r, groups, g);
          const gOff = <usize>g << 2;
          v0 = f32x4.add(v0, f32x4.mul(f32x4.mul(f32x4.convert_i32x4_s(hsum4I32(a0, a1, a2, a3)), wscale), v128.load32_splat(s0 + gOff)));
          v1 = f32x4.add(v1, f32x4.mul(f32x4.mul(f32x4.convert_i32x4_s(hsum4I32(b0, b1, b2, b3)), wscale), v128.load32_splat(s1 + gOff)));
        }
        const o = c + <usize>m * cStride + (<usize>r << 2);
        v128.store(o, v0);
        v128.store(o + cStride, v1);
      }
      // an odd last row
      if (m < mbEnd) {
        const x0 = xq + <usize>m * xRow;
        const s0 = xs + <usize>m * xsRow;
        let v0 = f32x4.splat(0);
        let k: usize = 0;
        for (let g = 0; g < groups; g++) {
          let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
          const kEnd = k + gBytes;
          for (; k < kEnd; k += 8) {
            const p = v128.load8x8_s(x0 + k);
            a0 = i32x4.add(a0, i32x4.dot_i16x8_s(p, v128.load8x8_s(w0 + k)));
            a1 = i32x4.add(a1, i32x4.dot_i16x8_s(p, v128.load8x8_s(w1 + k)));
            a2 = i32x4.add(a2, i32x4.dot_i16x8_s(p, v128.load8x8_s(w2 + k)));
            a3 = i32x4.add(a3, i32x4.dot_i16x8_s(p, v128.load8x8_s(w3 + k)));
          }
          v0 = f32x4.add(v0, f32x4.mul(f32x4.mul(f32x4.convert_i32x4_s(hsum4I32(a0, a1, a2, a3)), scales4(ws, r, groups, g)), v128.load32_splat(s0 + (<usize>g << 2))));
        }
        v128.store(c + <usize>m * cStride + (<usize>r << 2), v0);
      }
    }
    // the last channels (fewer than four), one at a time
    for (; r < r1; r++) {
      const w0 = wq + <usize>r * xRow;
      const sw = ws + ((<usize>r * <usize>groups) << 2);
      for (let m = mb; m < mbEnd; m++) {
        const x0 = xq + <usize>m * xRow;
        const s0 = xs + <usize>m * xsRow;
        let val: f32 = 0;
        let k: usize = 0;
        for (let g = 0; g < groups; g++) {
          let a = i32x4.splat(0);
          const kEnd = k + gBytes;
          for (; k < kEnd; k += 8) a = i32x4.add(a, i32x4.dot_i16x8_s(v128.load8x8_s(x0 + k), v128.load8x8_s(w0 + k)));
          const isum = <f32>((i32x4.extract_lane(a, 0) + i32x4.extract_lane(a, 1)) + (i32x4.extract_lane(a, 2) + i32x4.extract_lane(a, 3)));
          val += (isum * load<f32>(sw + (<usize>g << 2))) * load<f32>(s0 + (<usize>g << 2));
        }
        store<f32>(c + <usize>m * cStride + (<usize>r << 2), val);
      }
    }
  }
}
