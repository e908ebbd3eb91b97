// The matrix × matrix product, float32:   C (M, N) = A (M, K) · B (K, N)    or  C += A · B
//
// One routine for every product of several vectors at once: the trainer's forward and backward
// products (src/kernels/train-types.ts), a prompt's block of tokens through a weight matrix
// (batched prefill) and evaluation. Arguments are byte addresses into the kernels' memory and
// byte strides, so that transposed operands need no copy:
//   A  element (m, k) at a + m·sam + k·sak      (rows of A contiguous: sak = 4; columns: sam = 4)
//   B  element (k, n) at b + k·sb + n·4 when bRows = 1 (B stored as (K, N) rows), or at
//      b + n·sb + k·4 when bRows = 0 (B given by its transpose: a weight matrix (N, K) as
//      nn.Linear and llama2.c store it, y = W x)
//   C  element (m, n) at c + m·ldc + n·4
//
// How (GotoBLAS / BLIS): the columns [n0, n1) are taken NC at a time and K in slices of KC; each
// KC × NC block of B is packed into `scratch` as panels of KC rows × 8 columns (zero past the
// last column), so that the block sits in L2 and each panel is read as one sequential stream.
// Then, for every four rows of A, the 4 × 8 micro-kernel runs over each panel: eight accumulators
// (four rows × two vectors of four columns) stay in registers while k runs over the slice, each
// step broadcasting one value of A per row and loading two vectors of the panel. (4 × 8 measured
// fastest on this x64 with V8: 5 × 8, 6 × 8 and 4 × 12 need more than its free vector registers
// and run at half the rate.) The last one to three rows of A go through the same micro-kernel.
//
// Summation order: each C value gets its terms in k order, in float32, in runs of SUB terms each
// summed from zero and then added to C: c + (a₀b₀ + … + a₃₁b₃₁) + (a₃₂b₃₂ + …) + …  (The one-token
// matmul of kernels.ts sums in four interleaved partial sums instead: the two differ by rounding.)

import { madd } from './simd';

/** Columns of B packed at a time (a block of NC/8 panels). */
const NC: i32 = 128;
/**
 * Rows of B (the shared dimension K) packed at a time: a block is KC × NC floats = 112 KiB, and
 * with a tile of A (KC × 4) the scratch stays within 128 KiB. A multiple of SUB, so that the
 * slices do not change the sums (below).
 */
const KC: i32 = 224;
/**
 * Steps of k summed from zero in registers before they are added to C: a sum over K terms then
 * carries the rounding of about SUB + K/SUB additions instead of K (the training gradients are
 * compared with PyTorch's).
 */
const SUB: i32 = 32;
const SUB_BYTES: usize = <usize>SUB << 5; // of a panel

/** Bytes of scratch one call of gemm needs (per thread): a block of B, then a tile of A. */
export function gemmScratchBytes(): i32 {
  return KC * NC * 4 + KC * 16;
}

/**
 * Packs B's rows [k0, k0 + kLen) and columns [n0, nEnd) into panels of 8 columns at `dst`: panel p
 * holds, for each k, the 8 values of columns n0 + 8p … n0 + 8p + 7 (0 beyond nEnd).
 */
function packB(dst: usize, b: usize, sb: i32, bRows: i32, k0: i32, kLen: i32, n0: i32, nEnd: i32): void {
  const panelBytes = <usize>kLen << 5;
  const stride = <usize>sb;
  for (let n = n0; n < nEnd; n += 8) {
    const valid = min(8, nEnd - n);
    if (bRows != 0) {
      // (K, N) rows: the panel's 8 values of row k are contiguous in B
      let src = b + <usize>k0 * stride + (<usize>n << 2);
      let p = dst;
      if (valid == 8) {
        for (let k = 0; k < kLen; k++) {
          v128.store(p, v128.load(src));
          v128.store(p, v128.load(src, 16), 16);
          src += stride;
          p += 32;
        }
      } else {
        for (let k = 0; k < kLen; k++) {
          v128.store(p, f32x4.splat(0));
          v128.store(p, f32x4.splat(0), 16);
          for (let j = 0; j < valid; j++) store<f32>(p + (<usize>j << 2), load<f32>(src + (<usize>j << 2)));
          src += stride;
          p += 32;
        }
      }
    } else {
      // transposed: column n of B is row n of the (N, K) matrix; four of them at a time, four k
      // at a time, turned by a 4 × 4 transpose into four rows of the panel
      for (let j0 = 0; j0 < 8; j0 += 4) {
        const rows = min(4, valid - j0);
        const r0 = b + <usize>(n + j0) * stride + (<usize>k0 << 2);
        const p0 = dst + (<usize>j0 << 2);
        if (rows == 4) {
          const r1 = r0 + stride, r2 = r1 + stride, r3 = r2 + stride;
          let k = 0;
          for (; k + 4 <= kLen; k += 4) {
            const o = <usize>k << 2;
            const a0 = v128.load(r0 + o), a1 = v128.load(r1 + o), a2 = v128.load(r2 + o), a3 = v128.load(r3 + o);
            const t0 = v128.shuffle<f32>(a0, a1, 0, 4, 1, 5), t1 = v128.shuffle<f32>(a0, a1, 2, 6, 3, 7);
            const t2 = v128.shuffle<f32>(a2, a3, 0, 4, 1, 5), t3 = v128.shuffle<f32>(a2, a3, 2, 6, 3, 7);
            const p = p0 + (<usize>k << 5);
            v128.store(p, v128.shuffle<f32>(t0, t2, 0, 1, 4, 5));
            v128.store(p, v128.shuffle<f32>(t0, t2, 2, 3, 6, 7), 32);
            v128.store(p, v128.shuffle<f32>(t1, t3, 0, 1, 4, 5), 64);
            v128.store(p, v128.shuffle<f32>(t1, t3, 2, 3, 6, 7), 96);
          }
          for (; k < kLen; k++) {
            const o = <usize>k << 2;
            const p = p0 + (<usize>k << 5);
            store<f32>(p, load<f32>(r0 + o)); store<f32>(p, load<f32>(r1 + o), 4);
            store<f32>(p, load<f32>(r2 + o), 8); store<f32>(p, load<f32>(r3 + o), 12);
          }
        } else {
          for (let k = 0; k < kLen; k++) {
            const p = p0 + (<usize>k << 5);
            for (let j = 0; j < 4; j++) {
              store<f32>(p + (<usize>j << 2), j < rows ? load<f32>(r0 + <usize>j * stride + (<usize>k << 2)) : 0);
            }
          }
        }
      }
    }
    dst += panelBytes;
  }
}

/** Stores `valid` (≤ 4) lanes of v at p. */
// @ts-ignore: decorator
@inline function storeLanes(p: usize, v: v128, valid: i32): void {
  if (valid >= 4) { v128.store(p, v); return; }
  if (valid > 0) store<f32>(p, f32x4.extract_lane(v, 0));
  if (valid > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (valid > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

/** The first `valid` (≤ 4) lanes at p, zero beyond. */
// @ts-ignore: decorator
@inline function loadLanes(p: usize, valid: i32): v128 {
  if (valid >= 4) return v128.load(p);
  let v = f32x4.splat(0);
  if (valid > 0) v = f32x4.replace_lane(v, 0, load<f32>(p));
  if (valid > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (valid > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

/** The first `valid` (≤ 4) lanes at p = v, or (add) += v. */
// @ts-ignore: decorator
@inline function put(p: usize, v: v128, valid: i32, add: bool): void {
  if (valid >= 4) {
    v128.store(p, add ? f32x4.add(v128.load(p), v) : v);
  } else if (valid > 0) {
    storeLanes(p, add ? f32x4.add(loadLanes(p, valid), v) : v, valid);
  }
}

/**
 * The 4 × 8 micro-kernel over every panel of a packed block: C's rows at c, c + cStride, … (the
 * first `rows` of them stored) += A's four rows at aBase, aBase + a1, + a2, + a3 (aK bytes a step
 * of k) times the panels.
 */
// @ts-ignore: decorator
@inline function tile4(
  c: usize, cStride: usize, aBase: usize, a1: usize, a2: usize, a3: usize, aK: usize, scratch: usize,
  panelBytes: usize, nc: i32, ncEnd: i32, fromC: bool, rows: i32,
): void {
  let panel = scratch;
  for (let n = nc; n < ncEnd; n += 8) {
    const lo = min(4, ncEnd - n), hi = min(4, ncEnd - n - 4);
    const c0 = c + (<usize>n << 2), c1 = c0 + cStride, c2 = c1 + cStride, c3 = c2 + cStride;
    let p = aBase;
    let q = panel;
    const qEnd = panel + panelBytes;
    let add = fromC;
    while (q < qEnd) {
      // SUB steps of k from zero in registers, then into C
      const qSub = min(q + SUB_BYTES, qEnd);
      let x00 = f32x4.splat(0), x01 = f32x4.splat(0), x10 = f32x4.splat(0), x11 = f32x4.splat(0);
      let x20 = f32x4.splat(0), x21 = f32x4.splat(0), x30 = f32x4.splat(0), x31 = f32x4.splat(0);
      while (q < qSub) {
        const b0 = v128.load(q), b1 = v128.load(q, 16);
        let s = v128.load32_splat(p);
        x00 = madd(s, b0, x00); x01 = madd(s, b1, x01);
        s = v128.load32_splat(p + a1);
        x10 = madd(s, b0, x10); x11 = madd(s, b1, x11);
        s = v128.load32_splat(p + a2);
        x20 = madd(s, b0, x20); x21 = madd(s, b1, x21);
        s = v128.load32_splat(p + a3);
        x30 = madd(s, b0, x30); x31 = madd(s, b1, x31);
        p += aK;
        q += 32;
      }
      put(c0, x00, lo, add); put(c0 + 16, x01, hi, add);
      if (rows > 1) { put(c1, x10, lo, add); put(c1 + 16, x11, hi, add); }
      if (rows > 2) { put(c2, x20, lo, add); put(c2 + 16, x21, hi, add); }
      if (rows > 3) { put(c3, x30, lo, add); put(c3 + 16, x31, hi, add); }
      add = true;
    }
    panel += panelBytes;
  }
}

/**
 * C (M, N) = A · B (accumulate 0) or C += A · B (accumulate 1), for the rows [m0, m1) and the
 * columns [n0, n1) of C; see the top of this file for the layout. `scratch` holds
 * gemmScratchBytes() bytes of this thread's own.
 */
export function gemm(
  c: usize, ldc: i32, a: usize, sam: i32, sak: i32, b: usize, sb: i32, bRows: i32,
  K: i32, accumulate: i32, m0: i32, m1: i32, n0: i32, n1: i32, scratch: usize,
): void {
  const cStride = <usize>ldc;
  const aRow = <usize>sam, aStep = <usize>sak;
  if (K == 0 && accumulate == 0) { // an empty sum
    for (let m = m0; m < m1; m++) memory.fill(c + <usize>m * cStride + (<usize>n0 << 2), 0, <usize>(n1 - n0) << 2);
    return;
  }
  for (let nc = n0; nc < n1; nc += NC) {
    const ncEnd = min(nc + NC, n1);
    for (let kc = 0; kc < K; kc += KC) {
      const kLen = min(KC, K - kc);
      packB(scratch, b, sb, bRows, kc, kLen, nc, ncEnd);
      const fromC = accumulate != 0 || kc > 0; // start from C's partial sum, or from zero
      const panelBytes = <usize>kLen << 5;
      let m = m0;
      for (; m + 4 <= m1; m += 4) {
        let aBase = a + <usize>m * aRow + <usize>kc * aStep;
        let a1 = aRow, aK = aStep;
        if (aRow == 4 && aStep != 4) {
          // A given by columns (a transposed operand, as dW = doutᵀ · inp): the four rows' values
          // at one k are 16 contiguous bytes, but k steps a whole column apart — copy the tile's
          // kLen steps next to each other once, rather than touching kLen distant lines per panel
          const aTile = scratch + <usize>(KC * NC * 4);
          for (let k = 0; k < kLen; k++) v128.store(aTile + (<usize>k << 4), v128.load(aBase + <usize>k * aStep));
          aBase = aTile;
          aK = 16;
        }
        tile4(c + <usize>m * cStride, cStride, aBase, a1, a1 * 2, a1 * 3, aK, scratch, panelBytes, nc, ncEnd, fromC, 4);
      }
      // the last one to three rows as four, the missing ones reading the last row again and not
      // stored: the same work as four rows at the tile's rate (a one-row loop, two accumulators
      // in a chain each, ran far below it: a 255-token prompt's products of the 15M shape, one
      // thread, 49–51 → 50–52 GFLOP/s; the same bits). A call of its own, apart from the full
      // tiles' with rows a constant 4: one loop for both (rows = min(4, m1 − m)) gave the same
      // bits but ran 10–15% slower on the 15M shape's products (M = 255 and 256, one thread)
      if (m < m1) {
        const rows = m1 - m;
        let aBase = a + <usize>m * aRow + <usize>kc * aStep;
        let aR = aRow, aK = aStep;
        if (aRow == 4 && aStep != 4) {
          const aTile = scratch + <usize>(KC * NC * 4);
          for (let k = 0; k < kLen; k++) {
            for (let i = 0; i < rows; i++) store<f32>(aTile + (<usize>k << 4) + (<usize>i << 2), load<f32>(aBase + <usize>k * aStep + (<usize>i << 2)));
          }
          aBase = aTile;
          aR = 4;
          aK = 16;
        }
        tile4(c + <usize>m * cStride, cStride, aBase, <usize>min(1, rows - 1) * aR, <usize>min(2, rows - 1) * aR, <usize>min(3, rows - 1) * aR, aK, scratch, panelBytes, nc, ncEnd, fromC, rows);
      }
    }
  }
}
