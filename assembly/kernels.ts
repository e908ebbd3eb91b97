// llama2ts kernels in AssemblyScript, compiled to WebAssembly with 128-bit SIMD.
//
// Every kernel works in place on linear memory: arguments are byte addresses (`usize`) of float32
// (or int8) arrays that the TypeScript side carved out of the same memory (src/kernels/wasm.ts).
// Nothing here allocates: the module is built with `--runtime stub` and never calls `new`. The
// memory is imported and shared, so worker threads run these same functions on the same buffers;
// the functions taking a row or head range [r0, r1) are the per-thread slices
// (src/kernels/threads.ts splits the work, the calling thread takes the first slice).
//
// What each kernel computes is defined by the reference implementation in src/kernels/js.ts
// (and q8.ts / train-js.ts); the SIMD versions sum in float32 lanes, so results differ from the
// reference (which sums in float64) by rounding only. The int8 dot products are exact.

import { gemm } from './gemm';
import { exp1, exp2Clamp, exp2Finish, exp2Neg4, exp2Shifted, exp4 } from './exp';
import { swigluForwardTrain } from './train';
import { hmax, hsum, hsum4, hsum4I32, hsumI32, madd, scaleInPlace } from './simd';

// ------------------------------------------------------------------------------------------------
// Small helpers

/** log₂ e: e^x = 2^(x·log₂ e). */
const LOG2E: f64 = 1.4426950408889634;

/** The int32 vector (0, 1, 2, 3): each lane's index, for masks of the lanes past a bound. */
// @ts-ignore: decorator
@inline function laneIndex(): v128 {
  return v128(0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0);
}

/** a · b over n float32 values (any n; unaligned addresses are fine in WebAssembly). */
// @ts-ignore: decorator
@inline function dot(a: usize, b: usize, n: i32): f32 {
  let acc0 = f32x4.splat(0);
  let acc1 = f32x4.splat(0);
  let j = 0;
  for (; j + 8 <= n; j += 8) {
    const o = <usize>j << 2;
    acc0 = f32x4.add(acc0, f32x4.mul(v128.load(a + o), v128.load(b + o)));
    acc1 = f32x4.add(acc1, f32x4.mul(v128.load(a + o, 16), v128.load(b + o, 16)));
  }
  if (j + 4 <= n) {
    const o = <usize>j << 2;
    acc0 = f32x4.add(acc0, f32x4.mul(v128.load(a + o), v128.load(b + o)));
    j += 4;
  }
  let s = hsum(f32x4.add(acc0, acc1));
  for (; j < n; j++) s += load<f32>(a + (<usize>j << 2)) * load<f32>(b + (<usize>j << 2));
  return s;
}

/** Exact integer dot product of n int8 values at a and b. */
// @ts-ignore: decorator
@inline function dotI8(a: usize, b: usize, n: i32): i32 {
  let acc = i32x4.splat(0);
  let k = 0;
  for (; k + 16 <= n; k += 16) {
    // int8 → int16 (sign-extending loads), then pairwise int16 products summed into int32 lanes:
    // no overflow possible
    const o = <usize>k;
    acc = i32x4.add(acc, i32x4.dot_i16x8_s(v128.load8x8_s(a + o), v128.load8x8_s(b + o)));
    acc = i32x4.add(acc, i32x4.dot_i16x8_s(v128.load8x8_s(a + o, 8), v128.load8x8_s(b + o, 8)));
  }
  if (k + 8 <= n) {
    const va = i16x8.extend_low_i8x16_s(v128.load64_zero(a + <usize>k));
    const vb = i16x8.extend_low_i8x16_s(v128.load64_zero(b + <usize>k));
    acc = i32x4.add(acc, i32x4.dot_i16x8_s(va, vb));
    k += 8;
  }
  let s = hsumI32(acc);
  for (; k < n; k++) s += <i32>load<i8>(a + <usize>k) * <i32>load<i8>(b + <usize>k);
  return s;
}

// ------------------------------------------------------------------------------------------------
// Inference kernels (one token)

/**
 * xout[r] = W[r, :] · x for rows r in [r0, r1); W is (d, n) row-major.
 *
 * Each row's sum is one accumulator of four lanes — lane l adds up w[j]·x[j] over j ≡ l (mod 4)
 * in order of j — then the lanes added as (l0 + l1) + (l2 + l3), then the n mod 4 last products
 * one by one. That order is what lets matmulRowsMulti give several vectors (a server's sessions)
 * exactly these bits while reading W once for all of them.
 *
 * Two rows are summed at a time, taken half the range apart (r and r + half): W is then read as
 * two sequential streams in different pages, which the hardware prefetchers follow at full memory
 * bandwidth (measured on the 15M classifier, one thread: 27 GB/s, against 20 GB/s for one row at
 * a time and 8 GB/s for two adjacent rows, whose interleaved reads within a page defeat them).
 */
export function matmulRows(xout: usize, x: usize, w: usize, n: i32, r0: i32, r1: i32): void {
  const rowBytes = <usize>n << 2;
  const half = (r1 - r0 + 1) >> 1;
  const n4 = n & ~3;
  for (let r = r0; r < r0 + half; r++) {
    // (an odd range's middle row has no partner: it is summed twice and stored once)
    const paired = r + half < r1;
    const wa = w + <usize>r * rowBytes, wb = paired ? wa + <usize>half * rowBytes : wa;
    let a = f32x4.splat(0), b = f32x4.splat(0);
    for (let j = 0; j < n4; j += 4) {
      const o = <usize>j << 2;
      const xv = v128.load(x + o);
      a = f32x4.add(a, f32x4.mul(v128.load(wa + o), xv));
      b = f32x4.add(b, f32x4.mul(v128.load(wb + o), xv));
    }
    let sa = hsum(a), sb = hsum(b);
    for (let j = n4; j < n; j++) {
      const o = <usize>j << 2;
      const xj = load<f32>(x + o);
      sa += load<f32>(wa + o) * xj;
      sb += load<f32>(wb + o) * xj;
    }
    store<f32>(xout + (<usize>r << 2), sa);
    if (paired) store<f32>(xout + (<usize>(r + half) << 2), sb);
  }
}

/** Bytes interleaveSessions writes for `count` vectors of n. */
export function interleavedBytes(n: i32, count: i32): i32 {
  return ((count + 3) >> 2) * (n & ~3) * 16;
}

/**
 * xI := the vectors x (count, n) regrouped for matmulRowsMulti: in groups of four vectors, group
 * g at xI + g·(n & ~3)·16 holds, for each four values j … j + 3, the four vectors' values one after
 * another (16 floats; zeros for the missing vectors of a last group of fewer than four).
 */
export function interleaveSessions(xI: usize, x: usize, n: i32, count: i32): void {
  const n4 = n & ~3;
  const groupBytes = <usize>n4 << 4;
  for (let v = 0; v < ((count + 3) & ~3); v++) {
    const dst = xI + <usize>(v >> 2) * groupBytes + (<usize>(v & 3) << 4);
    const src = x + <usize>v * (<usize>n << 2);
    for (let j = 0; j < n4; j += 4) v128.store(dst + (<usize>j << 4), v < count ? v128.load(src + (<usize>j << 2)) : f32x4.splat(0));
  }
}

/**
 * matmulRows for `count` vectors at once: xout (count, d) row v = W · x[v] for rows r in [r0, r1),
 * x (count, n), xI the same vectors as interleaveSessions left them. Each row of W is read from
 * memory once for all the vectors (the sessions of a server decoding together): two rows (half
 * the range apart, as matmulRows pairs them) × four vectors are eight sums in flight, each one
 * accumulator whose lanes add up exactly what matmulRows's do, in the same order — so every
 * vector's result is matmulRows's, bit for bit, whatever else runs with it.
 */
export function matmulRowsMulti(xout: usize, x: usize, xI: usize, w: usize, n: i32, d: i32, count: i32, r0: i32, r1: i32): void {
  const rowBytes = <usize>n << 2, outBytes = <usize>d << 2;
  const n4 = n & ~3;
  const groupBytes = <usize>n4 << 4;
  const half = (r1 - r0 + 1) >> 1;
  for (let r = r0; r < r0 + half; r++) {
    const wa = w + <usize>r * rowBytes;
    const paired = r + half < r1;
    const wb = paired ? wa + <usize>half * rowBytes : wa;
    for (let g = 0; g < count; g += 4) {
      const xg = xI + <usize>(g >> 2) * groupBytes;
      const live = min(4, count - g);
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
      // a last group of one or two: their sums only (the same loop without vectors 2 and 3 — a
      // test for them inside the loop measured 10–25% slower on every shape)
      if (live <= 2) {
        for (let j = 0; j < n4; j += 4) {
          const o = <usize>j << 2, p = xg + (<usize>j << 4);
          const va = v128.load(wa + o), vb = v128.load(wb + o);
          let xv = v128.load(p);
          a0 = f32x4.add(a0, f32x4.mul(va, xv)); b0 = f32x4.add(b0, f32x4.mul(vb, xv));
          xv = v128.load(p, 16);
          a1 = f32x4.add(a1, f32x4.mul(va, xv)); b1 = f32x4.add(b1, f32x4.mul(vb, xv));
        }
      } else for (let j = 0; j < n4; j += 4) {
        const o = <usize>j << 2, p = xg + (<usize>j << 4);
        const va = v128.load(wa + o), vb = v128.load(wb + o);
        let xv = v128.load(p);
        a0 = f32x4.add(a0, f32x4.mul(va, xv)); b0 = f32x4.add(b0, f32x4.mul(vb, xv));
        xv = v128.load(p, 16);
        a1 = f32x4.add(a1, f32x4.mul(va, xv)); b1 = f32x4.add(b1, f32x4.mul(vb, xv));
        xv = v128.load(p, 32);
        a2 = f32x4.add(a2, f32x4.mul(va, xv)); b2 = f32x4.add(b2, f32x4.mul(vb, xv));
        xv = v128.load(p, 48);
        a3 = f32x4.add(a3, f32x4.mul(va, xv)); b3 = f32x4.add(b3, f32x4.mul(vb, xv));
      }
      finishRow(xout, x, wa, r, n, n4, g, live, outBytes, rowBytes, a0, a1, a2, a3);
      if (paired) finishRow(xout, x, wb, r + half, n, n4, g, live, outBytes, rowBytes, b0, b1, b2, b3);
    }
  }
}

/** A row's sums for vectors g … g + live − 1: the lanes added, the last n mod 4 products, stored. */
// @ts-ignore: decorator
@inline function finishRow(xout: usize, x: usize, wr: usize, r: i32, n: i32, n4: i32, g: i32, live: i32, outBytes: usize, rowBytes: usize,
  a0: v128, a1: v128, a2: v128, a3: v128): void {
  for (let v = 0; v < live; v++) {
    let s = hsum(v == 0 ? a0 : v == 1 ? a1 : v == 2 ? a2 : a3);
    const xv = x + <usize>(g + v) * rowBytes;
    for (let j = n4; j < n; j++) s += load<f32>(wr + (<usize>j << 2)) * load<f32>(xv + (<usize>j << 2));
    store<f32>(xout + <usize>(g + v) * outBytes + (<usize>r << 2), s);
  }
}

/**
 * Matrices with fewer elements than this (128 KiB of float32) take matmulSmall; larger ones
 * matmulRows. The same bound as PARALLEL_MIN_WORK in src/kernels/threads.ts, below which the
 * threads never split a matmul: so a product is always computed by the same code, threaded or not,
 * fused forward or kernel by kernel, and gives the same bits.
 */
const SMALL_MATRIX: i32 = 1 << 15;

/** xout (d) = W (d, n) · x (n). */
export function matmul(xout: usize, x: usize, w: usize, n: i32, d: i32): void {
  if (n * d < SMALL_MATRIX) matmulSmall(xout, x, w, n, d);
  else matmulRows(xout, x, w, n, 0, d);
}

/**
 * xout = W · x for a small W (cache-resident, short rows: stories260K's 64-wide layers): four rows
 * at a time share each load of x, and their four sums are reduced together (hsum4) — for rows of
 * 64 the per-row reduction is otherwise a good part of the work.
 */
function matmulSmall(xout: usize, x: usize, w: usize, n: i32, d: i32): void {
  const rowBytes = <usize>n << 2;
  let r = 0;
  for (; r + 4 <= d; r += 4) {
    const w0 = w + <usize>r * rowBytes, w1 = w0 + rowBytes, w2 = w1 + rowBytes, w3 = w2 + rowBytes;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
    let j = 0;
    for (; j + 8 <= n; j += 8) {
      const o = <usize>j << 2;
      const x0 = v128.load(x + o), x1 = v128.load(x + o, 16);
      a0 = f32x4.add(a0, f32x4.mul(v128.load(w0 + o), x0)); b0 = f32x4.add(b0, f32x4.mul(v128.load(w0 + o, 16), x1));
      a1 = f32x4.add(a1, f32x4.mul(v128.load(w1 + o), x0)); b1 = f32x4.add(b1, f32x4.mul(v128.load(w1 + o, 16), x1));
      a2 = f32x4.add(a2, f32x4.mul(v128.load(w2 + o), x0)); b2 = f32x4.add(b2, f32x4.mul(v128.load(w2 + o, 16), x1));
      a3 = f32x4.add(a3, f32x4.mul(v128.load(w3 + o), x0)); b3 = f32x4.add(b3, f32x4.mul(v128.load(w3 + o, 16), x1));
    }
    if (j + 4 <= n) {
      const o = <usize>j << 2;
      const x0 = v128.load(x + o);
      a0 = f32x4.add(a0, f32x4.mul(v128.load(w0 + o), x0));
      a1 = f32x4.add(a1, f32x4.mul(v128.load(w1 + o), x0));
      a2 = f32x4.add(a2, f32x4.mul(v128.load(w2 + o), x0));
      a3 = f32x4.add(a3, f32x4.mul(v128.load(w3 + o), x0));
      j += 4;
    }
    let sums = hsum4(f32x4.add(a0, b0), f32x4.add(a1, b1), f32x4.add(a2, b2), f32x4.add(a3, b3));
    if (j < n) { // row length not a multiple of 4
      let s0: f32 = 0, s1: f32 = 0, s2: f32 = 0, s3: f32 = 0;
      for (; j < n; j++) {
        const o = <usize>j << 2;
        const xj = load<f32>(x + o);
        s0 += load<f32>(w0 + o) * xj; s1 += load<f32>(w1 + o) * xj;
        s2 += load<f32>(w2 + o) * xj; s3 += load<f32>(w3 + o) * xj;
      }
      sums = f32x4.add(sums, f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(s0), 1, s1), 2, s2), 3, s3));
    }
    v128.store(xout + (<usize>r << 2), sums);
  }
  if (r < d) matmulRows(xout, x, w, n, r, d);
}

/** o = weight ⊙ x / sqrt(mean(x²) + eps); o may equal x. */
export function rmsnorm(o: usize, x: usize, weight: usize, size: i32, eps: f64): void {
  let acc = f32x4.splat(0);
  let j = 0;
  for (; j + 4 <= size; j += 4) {
    const v = v128.load(x + (<usize>j << 2));
    acc = f32x4.add(acc, f32x4.mul(v, v));
  }
  let ss = <f64>hsum(acc);
  for (; j < size; j++) {
    const v = <f64>load<f32>(x + (<usize>j << 2));
    ss += v * v;
  }
  const scale = <f32>(1.0 / Math.sqrt(ss / <f64>size + eps));
  const vs = f32x4.splat(scale);
  j = 0;
  for (; j + 4 <= size; j += 4) {
    const off = <usize>j << 2;
    v128.store(o + off, f32x4.mul(v128.load(weight + off), f32x4.mul(vs, v128.load(x + off))));
  }
  for (; j < size; j++) {
    const off = <usize>j << 2;
    store<f32>(o + off, load<f32>(weight + off) * (scale * load<f32>(x + off)));
  }
}

/** rmsnorm of `rows` rows of `size` values one after another (a prompt's block: one call for all). */
export function rmsnormRows(o: usize, x: usize, weight: usize, rows: i32, size: i32, eps: f64): void {
  const step = <usize>size << 2;
  for (let r = 0; r < rows; r++) rmsnorm(o + <usize>r * step, x + <usize>r * step, weight, size, eps);
}

/** The largest of n values (f32x4.pmax four lanes at a time, then the lanes and the tail). */
// @ts-ignore: decorator
@inline function rowMax(x: usize, n: i32): f32 {
  let m0 = v128.load32_splat(x);
  let m1 = m0, m2 = m0, m3 = m0;
  let i = 0;
  // (pmax: one instruction; no NaN is among values a softmax gets — and one would still reach its
  // sum. Four running maxima, so that the loop is not one chain of dependent instructions.)
  for (; i + 16 <= n; i += 16) {
    const p = x + (<usize>i << 2);
    m0 = f32x4.pmax(m0, v128.load(p)); m1 = f32x4.pmax(m1, v128.load(p, 16));
    m2 = f32x4.pmax(m2, v128.load(p, 32)); m3 = f32x4.pmax(m3, v128.load(p, 48));
  }
  for (; i + 4 <= n; i += 4) m0 = f32x4.pmax(m0, v128.load(x + (<usize>i << 2)));
  let max = hmax(f32x4.pmax(f32x4.pmax(m0, m1), f32x4.pmax(m2, m3)));
  for (; i < n; i++) max = Mathf.max(max, load<f32>(x + (<usize>i << 2)));
  return max;
}

/**
 * Over the values [0, n4) at p (n4 a multiple of 4): e = e^(value − max), stored in place, and
 * Σ e in float64 — two lanes each in sumLo and sumHi, then added — in order of the values. Four
 * exponentials per loop trip, so that their chains overlap (one per trip: 1.82 against 1.21 ns per
 * value over 32,000 values, one thread); the sums are added in the same order either way.
 */
// @ts-ignore: decorator
@inline function expSum64(p: usize, n4: i32, splatMax: v128): f64 {
  let sumLo = f64x2.splat(0), sumHi = f64x2.splat(0);
  let i = 0;
  for (; i + 16 <= n4; i += 16) {
    const q = p + (<usize>i << 2);
    const e0 = exp4(f32x4.sub(v128.load(q), splatMax)), e1 = exp4(f32x4.sub(v128.load(q, 16), splatMax));
    const e2 = exp4(f32x4.sub(v128.load(q, 32), splatMax)), e3 = exp4(f32x4.sub(v128.load(q, 48), splatMax));
    v128.store(q, e0); v128.store(q, e1, 16); v128.store(q, e2, 32); v128.store(q, e3, 48);
    sumLo = f64x2.add(sumLo, f64x2.promote_low_f32x4(e0)); sumHi = f64x2.add(sumHi, f64x2.promote_low_f32x4(v128.shuffle<f32>(e0, e0, 2, 3, 0, 1)));
    sumLo = f64x2.add(sumLo, f64x2.promote_low_f32x4(e1)); sumHi = f64x2.add(sumHi, f64x2.promote_low_f32x4(v128.shuffle<f32>(e1, e1, 2, 3, 0, 1)));
    sumLo = f64x2.add(sumLo, f64x2.promote_low_f32x4(e2)); sumHi = f64x2.add(sumHi, f64x2.promote_low_f32x4(v128.shuffle<f32>(e2, e2, 2, 3, 0, 1)));
    sumLo = f64x2.add(sumLo, f64x2.promote_low_f32x4(e3)); sumHi = f64x2.add(sumHi, f64x2.promote_low_f32x4(v128.shuffle<f32>(e3, e3, 2, 3, 0, 1)));
  }
  for (; i < n4; i += 4) {
    const q = p + (<usize>i << 2);
    const e = exp4(f32x4.sub(v128.load(q), splatMax));
    v128.store(q, e);
    sumLo = f64x2.add(sumLo, f64x2.promote_low_f32x4(e));
    sumHi = f64x2.add(sumHi, f64x2.promote_low_f32x4(v128.shuffle<f32>(e, e, 2, 3, 0, 1)));
  }
  const both = f64x2.add(sumLo, sumHi);
  return f64x2.extract_lane(both, 0) + f64x2.extract_lane(both, 1);
}

/** expSum64 in place with the sum in four float32 lanes, unfused (decode's attention softmax). */
// @ts-ignore: decorator
@inline function expSum32(p: usize, n4: i32, splatMax: v128): v128 {
  let vsum = f32x4.splat(0);
  let i = 0;
  for (; i + 16 <= n4; i += 16) {
    const q = p + (<usize>i << 2);
    const e0 = exp4(f32x4.sub(v128.load(q), splatMax)), e1 = exp4(f32x4.sub(v128.load(q, 16), splatMax));
    const e2 = exp4(f32x4.sub(v128.load(q, 32), splatMax)), e3 = exp4(f32x4.sub(v128.load(q, 48), splatMax));
    v128.store(q, e0); v128.store(q, e1, 16); v128.store(q, e2, 32); v128.store(q, e3, 48);
    vsum = f32x4.add(f32x4.add(f32x4.add(f32x4.add(vsum, e0), e1), e2), e3);
  }
  for (; i < n4; i += 4) {
    const q = p + (<usize>i << 2);
    const e = exp4(f32x4.sub(v128.load(q), splatMax));
    v128.store(q, e);
    vsum = f32x4.add(vsum, e);
  }
  return vsum;
}

/** In place: x = exp(x - max) / Σ exp(x - max) over size values. The sum is kept in float64. */
export function softmax(x: usize, size: i32): void {
  const max = rowMax(x, size);
  let i = size & ~3;
  let sum = expSum64(x, i, f32x4.splat(max));
  for (; i < size; i++) {
    const p = x + (<usize>i << 2);
    const e = exp1(load<f32>(p) - max);
    store<f32>(p, e);
    sum += <f64>e;
  }
  scaleInPlace(x, size, <f32>(1.0 / sum));
}

/** expSum's results, for crossEntropy (each thread's own instance has its own). */
let partMax: f32 = 0;
let partSum: f64 = 0;

/**
 * max x and Σ e^(x − max) over n values, summed in float64: evaluation's cross-entropy, whose
 * logits come from matrix × matrix products that depend on the build anyway, so it takes the
 * causal softmax's road — e^(x − max) = 2^(x·log₂e − max·log₂e), one multiply-add per four values
 * and exp2Neg4 in its steps, software-pipelined: the first steps of the next vector beside the
 * last of this one. With rowMax's four running maxima: 32,000 logits, one thread, 0.59 against
 * 0.92 ns a value for the code before (exp4 with fused steps, four a trip, one running maximum). The sum's float64
 * lanes take the float32 exponentials exactly, so its order hardly matters.
 */
// @ts-ignore: decorator
@inline function maxAndExpSum(x: usize, n: i32): void {
  const max = rowMax(x, n);
  const vc = f32x4.splat(<f32>LOG2E), vb = f32x4.splat(-max * <f32>LOG2E);
  const n4 = n & ~3;
  let sumLo = f64x2.splat(0), sumHi = f64x2.splat(0);
  if (n4 > 0) {
    let y = exp2Clamp(madd(v128.load(x), vc, vb));
    let shifted = exp2Shifted(y);
    let p = x;
    const last = x + (<usize>(n4 - 4) << 2);
    for (; p < last; p += 16) {
      const y2 = exp2Clamp(madd(v128.load(p, 16), vc, vb));
      const shifted2 = exp2Shifted(y2);
      const e = exp2Finish(y, shifted);
      sumLo = f64x2.add(sumLo, f64x2.promote_low_f32x4(e));
      sumHi = f64x2.add(sumHi, f64x2.promote_low_f32x4(v128.shuffle<f32>(e, e, 2, 3, 0, 1)));
      y = y2; shifted = shifted2;
    }
    const e = exp2Finish(y, shifted);
    sumLo = f64x2.add(sumLo, f64x2.promote_low_f32x4(e));
    sumHi = f64x2.add(sumHi, f64x2.promote_low_f32x4(v128.shuffle<f32>(e, e, 2, 3, 0, 1)));
  }
  const both = f64x2.add(sumLo, sumHi);
  let sum = f64x2.extract_lane(both, 0) + f64x2.extract_lane(both, 1);
  for (let i = n4; i < n; i++) sum += <f64>f32x4.extract_lane(exp2Neg4(madd(v128.load32_splat(x + (<usize>i << 2)), vc, vb)), 0);
  partMax = max;
  partSum = sum;
}

/**
 * −log softmax(x)[target] over n values (a token's cross-entropy): log Σ e^(x − max) + max −
 * x[target], the exponentials as maxAndExpSum's, their sum in float64.
 */
export function crossEntropy(x: usize, n: i32, target: i32): f64 {
  maxAndExpSum(x, n);
  return Math.log(partSum) + <f64>partMax - <f64>load<f32>(x + (<usize>target << 2));
}

/**
 * crossEntropy's two reductions over part of a row, for threads sharing one (threads.ts combines
 * them): stores max (float64) and Σ e^(x − max) (float64) at out.
 */
export function expSum(x: usize, n: i32, out: usize): void {
  maxAndExpSum(x, n);
  store<f64>(out, <f64>partMax);
  store<f64>(out, partSum, 8);
}

/** Rotates one (x[i], x[i+1]) pair by the angle whose cosine and sine are given. */
// @ts-ignore: decorator
@inline function rotatePair(p: usize, fcr: f32, fci: f32): void {
  const v0 = load<f32>(p);
  const v1 = load<f32>(p, 4);
  store<f32>(p, v0 * fcr - v1 * fci);
  store<f32>(p, v0 * fci + v1 * fcr, 4);
}

/**
 * RoPE at position pos: each pair (i, i+1) of every head of q (dim) and k (kvDim) is rotated by
 * pos · θ^(-(i mod headSize)/headSize). The angles are computed in float64, like the reference.
 */
export function rope(q: usize, k: usize, pos: i32, dim: i32, kvDim: i32, headSize: i32, theta: f64): void {
  for (let i = 0; i < headSize; i += 2) {
    const freq = 1.0 / Math.pow(theta, <f64>i / <f64>headSize);
    const angle = <f64>pos * freq;
    const fcr = <f32>Math.cos(angle);
    const fci = <f32>Math.sin(angle);
    // the same angle applies to offset i of every head
    for (let h = i; h < dim; h += headSize) rotatePair(q + (<usize>h << 2), fcr, fci);
    for (let h = i; h < kvDim; h += headSize) rotatePair(k + (<usize>h << 2), fcr, fci);
  }
}

/**
 * RoPE with the rotation precomputed: table holds (cos, sin) for each pair offset i/2 of a head
 * (headSize floats), the same for every head and layer at this position.
 */
export function ropeTable(q: usize, k: usize, table: usize, dim: i32, kvDim: i32, headSize: i32): void {
  for (let i = 0; i < headSize; i += 2) {
    const fcr = load<f32>(table + (<usize>i << 2));
    const fci = load<f32>(table + (<usize>i << 2), 4);
    for (let h = i; h < dim; h += headSize) rotatePair(q + (<usize>h << 2), fcr, fci);
    for (let h = i; h < kvDim; h += headSize) rotatePair(k + (<usize>h << 2), fcr, fci);
  }
}

/**
 * ropeTable for `rows` consecutive positions: row r of q (rows, dim) and k (rows, kvDim) with the
 * table's row r (the table holds the positions one after another, headSize floats each).
 */
export function ropeTableRows(q: usize, k: usize, table: usize, rows: i32, dim: i32, kvDim: i32, headSize: i32): void {
  for (let r = 0; r < rows; r++) {
    ropeTable(q + ((<usize>r * <usize>dim) << 2), k + ((<usize>r * <usize>kvDim) << 2), table + ((<usize>r * <usize>headSize) << 2), dim, kvDim, headSize);
  }
}

/**
 * Causal attention of one position for query heads [h0, h1): scores against keys 0..pos scaled by
 * 1/√headSize, softmax (float32 sums; the weights are left in att), then the weighted sum of values. Caches are (seqLen, kvDim); att is
 * (nHeads, seqLen) scratch; query head h reads kv head h / (nHeads / nKvHeads).
 */
export function attentionHeads(
  out: usize, q: usize, keyCache: usize, valueCache: usize, att: usize, pos: i32,
  nHeads: i32, nKvHeads: i32, headSize: i32, kvDim: i32, seqLen: i32, h0: i32, h1: i32,
): void {
  for (let h = h0; h < h1; h++) attendHead(out, q, keyCache, valueCache, att, pos, h, nHeads, nKvHeads, headSize, kvDim, seqLen);
}

/**
 * attentionHeads for every head of one session (the sessions of a server decoding together: one
 * session per chunk), its key and value rows first read once in order, a load per 64 bytes. A
 * head reads 4·headSize bytes of each row, a stride the hardware prefetchers do not follow well:
 * with the caches cold (the weights of a decode step pass through them in between) the heads of
 * the 15M shape at position 170 took 3.3× as long as with them warm. Read in order, the rows
 * arrive at streaming speed and then stay in L2 for the heads. The arithmetic is attentionHeads's.
 */
export function attentionSession(
  out: usize, q: usize, keyCache: usize, valueCache: usize, att: usize, pos: i32,
  nHeads: i32, nKvHeads: i32, headSize: i32, kvDim: i32, seqLen: i32,
): void {
  const end = <usize>(pos + 1) * (<usize>kvDim << 2);
  let touched: i32 = 0;
  for (let o: usize = 0; o < end; o += 64) touched += load<i32>(keyCache + o) ^ load<i32>(valueCache + o);
  store<i32>(att, touched); // (keeps the loads; every head then overwrites its scores)
  attentionHeads(out, q, keyCache, valueCache, att, pos, nHeads, nKvHeads, headSize, kvDim, seqLen, 0, nHeads);
}

/**
 * attentionBlockHeads computed row by row with the one-position arithmetic of attentionHeads: bit
 * for bit `count` calls of it (row i at position pos+i; att is (nHeads, seqLen) scratch).
 */
export function attentionRowsHeads(
  out: usize, q: usize, keyCache: usize, valueCache: usize, att: usize, pos: i32, count: i32,
  nHeads: i32, nKvHeads: i32, headSize: i32, kvDim: i32, seqLen: i32, h0: i32, h1: i32,
): void {
  const rowBytes = (<usize>nHeads * <usize>headSize) << 2;
  for (let h = h0; h < h1; h++) {
    for (let i = 0; i < count; i++) {
      const o = <usize>i * rowBytes;
      attendHead(out + o, q + o, keyCache, valueCache, att, pos + i, h, nHeads, nKvHeads, headSize, kvDim, seqLen);
    }
  }
}

/** Query rows of the block attention taken at a time: their scores fill QTILE × (keys) floats. */
const QTILE: i32 = 32;

/**
 * Bytes of score buffer attentionBlockHeads needs (per thread) for a cache of seqLen rows: QTILE
 * rows' sums, then QTILE rows of scores, each a whole number of vectors long (more than
 * attentionBlock8's 256 + 32 · seqLen).
 */
export function attentionScoresBytes(seqLen: i32): i32 {
  return QTILE * 4 + QTILE * ((seqLen + 3) & ~3) * 4;
}

/**
 * attentionHeads for a block of `count` consecutive positions pos, pos+1, …: q and out hold one
 * row of nHeads · headSize values per position, and row i attends over cache rows 0..pos+i (the
 * block's own keys and values are in the cache already: causal inside the block). For each head,
 * QTILE query rows at a time, as two matrix products (assembly/gemm.ts):
 *   S = Q_h K_hᵀ (rows × keys),  E = e^(scale·(s − max)) over each row's first pos+i+1 scores (0
 *   after them),  O_h = E V_h,  then each row of O_h divided by its row's Σ E
 * (the division after the product: headSize values a row instead of every score). Heads of 8
 * values take attentionBlock8 below instead: with K = 8 the two products are too short for gemm's
 * packing and micro-kernel to pay (block attention of stories260K's shape, 256 rows from position
 * 0, one thread: 1.24–1.26 against 1.63–1.75 ns per score, interleaved).
 * `scores` holds attentionScoresBytes(seqLen) bytes, `scratch` gemmScratchBytes(), this thread's.
 */
export function attentionBlockHeads(
  out: usize, q: usize, keyCache: usize, valueCache: usize, scores: usize, pos: i32, count: i32,
  nHeads: i32, nKvHeads: i32, headSize: i32, kvDim: i32, h0: i32, h1: i32, scratch: usize,
): void {
  const kvMul = nHeads / nKvHeads;
  const dimBytes = (nHeads * headSize) << 2;
  const scale = <f32>(1.0 / Math.sqrt(<f64>headSize));
  if (headSize == 8) {
    const c = <f32>(<f64>scale * LOG2E);
    for (let h = h0; h < h1; h++) {
      attentionBlock8(out + (<usize>(h * 8) << 2), q + (<usize>(h * 8) << 2), keyCache + (<usize>((h / kvMul) * 8) << 2),
        valueCache + (<usize>((h / kvMul) * 8) << 2), scores, pos, count, dimBytes, kvDim * 4, c);
    }
    return;
  }
  const sums = scores;
  const e = scores + (<usize>QTILE << 2);
  for (let h = h0; h < h1; h++) {
    const headOffset = <usize>(h * headSize) << 2;
    const kvOffset = <usize>((h / kvMul) * headSize) << 2;
    for (let r0 = 0; r0 < count; r0 += QTILE) {
      const rows = min(QTILE, count - r0);
      const keys = pos + r0 + rows; // the tile's last row attends to keys 0 … keys-1
      const room = (keys + 3) & ~3; // a row of scores, in whole vectors
      const rowBytes = <usize>room << 2;
      const qTile = q + <usize>r0 * <usize>dimBytes + headOffset;
      gemm(e, room * 4, qTile, dimBytes, 4, keyCache + kvOffset, kvDim * 4, 0, headSize, 0, 0, rows, 0, keys, scratch);
      for (let i = 0; i < rows; i++) store<f32>(sums + (<usize>i << 2), causalExpRow(e + <usize>i * rowBytes, pos + r0 + i + 1, keys, room, scale));
      const oTile = out + <usize>r0 * <usize>dimBytes + headOffset;
      gemm(oTile, dimBytes, e, room * 4, 4, valueCache + kvOffset, kvDim * 4, 1, keys, 0, 0, rows, 0, headSize, scratch);
      for (let i = 0; i < rows; i++) scaleInPlace(oTile + <usize>i * <usize>dimBytes, headSize, <f32>1 / load<f32>(sums + (<usize>i << 2)));
    }
  }
}

/**
 * One head of attentionBlockHeads for heads of 8 values (stories260K's), eight query rows at a
 * time with their scores kept transposed — key by key, the eight rows' scores in two vectors — so
 * that every step of the causal softmax is a vertical vector operation: no horizontal maximum or
 * sum, no packing of K or V, and the tile's keys stop at its own last row.
 *   Qᵀ   the tile's queries, 8 dims × 8 rows, times c = log₂e / √8
 *   Sᵀ[t] = Σ_d K[t, d] · Qᵀ[d]          (rows 0–3 and 4–7 of key t)
 *   m = max over the keys each row sees,  Eᵀ[t] = 2^(Sᵀ[t] − m) (0 for a key a row does not see)
 *   O[r] = Σ_t Eᵀ[t, r] · V[t]  /  Σ_t Eᵀ[t, r]
 * q, out, keyCache, valueCache point at the head's (or its key/value head's) first value; `buf`
 * holds 256 + 32 · (pos + count) bytes.
 */
function attentionBlock8(
  out: usize, q: usize, keyCache: usize, valueCache: usize, buf: usize, pos: i32, count: i32,
  dimBytes: i32, rowBytes: i32, c: f32,
): void {
  const qt = buf; // Qᵀ: 8 × 8 floats
  const et = buf + 256; // Sᵀ, then Eᵀ: 8 floats a key
  const rowStride = <usize>rowBytes;
  const row0 = laneIndex(), row4 = i32x4.add(row0, i32x4.splat(4)); // the rows of a key's two vectors
  const minusInf = f32x4.splat(-Infinity);
  for (let r0 = 0; r0 < count; r0 += 8) {
    const rows = min(8, count - r0);
    // Qᵀ (rows past the block: 0)
    if (rows < 8) memory.fill(qt, 0, 256);
    for (let r = 0; r < rows; r++) {
      const src = q + <usize>(r0 + r) * <usize>dimBytes;
      for (let d = 0; d < 8; d++) store<f32>(qt + (<usize>(d * 8 + r) << 2), load<f32>(src + (<usize>d << 2)) * c);
    }
    const full = pos + r0 + 1; // keys 0 … full-1 are seen by every row of the tile
    const keys = pos + r0 + rows; // and its last row sees keys 0 … keys-1
    // Sᵀ, four keys a step, and each row's maximum
    let m0 = minusInf, m1 = minusInf;
    let t = 0;
    for (; t + 4 <= full; t += 4) {
      const k0 = keyCache + <usize>t * rowStride, k1 = k0 + rowStride, k2 = k1 + rowStride, k3 = k2 + rowStride;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
      for (let d = 0; d < 8; d++) {
        const o = <usize>d << 2;
        const lo = v128.load(qt + (o << 3)), hi = v128.load(qt + (o << 3), 16);
        let s = v128.load32_splat(k0 + o);
        a0 = madd(lo, s, a0); b0 = madd(hi, s, b0);
        s = v128.load32_splat(k1 + o);
        a1 = madd(lo, s, a1); b1 = madd(hi, s, b1);
        s = v128.load32_splat(k2 + o);
        a2 = madd(lo, s, a2); b2 = madd(hi, s, b2);
        s = v128.load32_splat(k3 + o);
        a3 = madd(lo, s, a3); b3 = madd(hi, s, b3);
      }
      const p = et + (<usize>t << 5);
      v128.store(p, a0); v128.store(p, b0, 16); v128.store(p, a1, 32); v128.store(p, b1, 48);
      v128.store(p, a2, 64); v128.store(p, b2, 80); v128.store(p, a3, 96); v128.store(p, b3, 112);
      m0 = f32x4.pmax(m0, f32x4.pmax(f32x4.pmax(a0, a1), f32x4.pmax(a2, a3)));
      m1 = f32x4.pmax(m1, f32x4.pmax(f32x4.pmax(b0, b1), f32x4.pmax(b2, b3)));
    }
    // the last keys one at a time; from `full` on, row r sees key t only if r > t − full
    for (; t < keys; t++) {
      const k0 = keyCache + <usize>t * rowStride;
      let a = f32x4.splat(0), b = f32x4.splat(0);
      for (let d = 0; d < 8; d++) {
        const o = <usize>d << 2;
        const s = v128.load32_splat(k0 + o);
        a = madd(v128.load(qt + (o << 3)), s, a);
        b = madd(v128.load(qt + (o << 3), 16), s, b);
      }
      const first = i32x4.splat(t - full);
      a = v128.bitselect(a, minusInf, i32x4.gt_s(row0, first));
      b = v128.bitselect(b, minusInf, i32x4.gt_s(row4, first));
      const p = et + (<usize>t << 5);
      v128.store(p, a); v128.store(p, b, 16);
      m0 = f32x4.pmax(m0, a); m1 = f32x4.pmax(m1, b);
    }
    // Eᵀ = 2^(Sᵀ − m) and its sums, software-pipelined: the reduction of key t + 1 (y = s − m,
    // y = n + r) is written beside the polynomial of key t, so that each step's instructions find
    // their inputs ready (the polynomial's chain of five multiply-adds is long)
    let s0 = f32x4.splat(0), s1 = f32x4.splat(0);
    let ya = exp2Clamp(f32x4.sub(v128.load(et), m0)), yb = exp2Clamp(f32x4.sub(v128.load(et, 16), m1));
    let na = exp2Shifted(ya), nb = exp2Shifted(yb);
    t = 0;
    for (; t + 1 < keys; t++) {
      const p = et + (<usize>t << 5);
      const ya2 = exp2Clamp(f32x4.sub(v128.load(p, 32), m0)), yb2 = exp2Clamp(f32x4.sub(v128.load(p, 48), m1));
      const na2 = exp2Shifted(ya2), nb2 = exp2Shifted(yb2);
      const e0 = exp2Finish(ya, na), e1 = exp2Finish(yb, nb);
      v128.store(p, e0); v128.store(p, e1, 16);
      s0 = f32x4.add(s0, e0); s1 = f32x4.add(s1, e1);
      ya = ya2; yb = yb2; na = na2; nb = nb2;
    }
    {
      const p = et + (<usize>t << 5);
      const e0 = exp2Finish(ya, na), e1 = exp2Finish(yb, nb);
      v128.store(p, e0); v128.store(p, e1, 16);
      s0 = f32x4.add(s0, e0); s1 = f32x4.add(s1, e1);
    }
    // the keys some rows do not see: their −∞ came out as 2⁻¹²⁵ (too small to change a sum that
    // holds the row's maximum, 2⁰, already), set to 0 here
    for (t = full; t < keys; t++) {
      const p = et + (<usize>t << 5);
      const first = i32x4.splat(t - full);
      v128.store(p, v128.and(v128.load(p), i32x4.gt_s(row0, first)));
      v128.store(p, v128.and(v128.load(p, 16), i32x4.gt_s(row4, first)), 16);
    }
    const inv0 = f32x4.div(f32x4.splat(1), s0), inv1 = f32x4.div(f32x4.splat(1), s1);
    // O = Eᵀᵀ V, four rows at a time: per key, each row's weight broadcast against the key's V row
    for (let half = 0; half < 2; half++) {
      const e = et + (<usize>half << 4);
      let x00 = f32x4.splat(0), x01 = f32x4.splat(0), x10 = f32x4.splat(0), x11 = f32x4.splat(0);
      let x20 = f32x4.splat(0), x21 = f32x4.splat(0), x30 = f32x4.splat(0), x31 = f32x4.splat(0);
      let v = valueCache;
      for (let t = 0; t < keys; t++) {
        const p = e + (<usize>t << 5);
        const v0 = v128.load(v), v1 = v128.load(v, 16);
        let w = v128.load32_splat(p);
        x00 = madd(w, v0, x00); x01 = madd(w, v1, x01);
        w = v128.load32_splat(p + 4);
        x10 = madd(w, v0, x10); x11 = madd(w, v1, x11);
        w = v128.load32_splat(p + 8);
        x20 = madd(w, v0, x20); x21 = madd(w, v1, x21);
        w = v128.load32_splat(p + 12);
        x30 = madd(w, v0, x30); x31 = madd(w, v1, x31);
        v += rowStride;
      }
      const inv = half == 0 ? inv0 : inv1;
      const r = r0 + half * 4;
      const o0 = out + <usize>r * <usize>dimBytes;
      if (r < count) { const s = f32x4.splat(f32x4.extract_lane(inv, 0)); v128.store(o0, f32x4.mul(x00, s)); v128.store(o0, f32x4.mul(x01, s), 16); }
      if (r + 1 < count) { const s = f32x4.splat(f32x4.extract_lane(inv, 1)); const o = o0 + <usize>dimBytes; v128.store(o, f32x4.mul(x10, s)); v128.store(o, f32x4.mul(x11, s), 16); }
      if (r + 2 < count) { const s = f32x4.splat(f32x4.extract_lane(inv, 2)); const o = o0 + 2 * <usize>dimBytes; v128.store(o, f32x4.mul(x20, s)); v128.store(o, f32x4.mul(x21, s), 16); }
      if (r + 3 < count) { const s = f32x4.splat(f32x4.extract_lane(inv, 3)); const o = o0 + 3 * <usize>dimBytes; v128.store(o, f32x4.mul(x30, s)); v128.store(o, f32x4.mul(x31, s), 16); }
    }
  }
}

/**
 * The exponentials of a causal softmax, in place over a row of n scores s: the first `valid`
 * become e^(scale·(s − max)) (max over them), the rest 0; returns their sum (the softmax is each
 * divided by it). The row may be written up to `room` ≥ n floats: where that covers the last,
 * partial vector of valid scores, it is done as a vector with the lanes past them masked.
 *
 * e^(scale·(s − max)) = 2^(s·c − max·c) with c = scale · log₂ e: one fused multiply-add per four
 * scores, and exp2Neg4's shorter polynomial (the fused path: the scores come from matrix × matrix
 * products — block attention, training).
 */
function causalExpRow(row: usize, valid: i32, n: i32, room: i32, scale: f32): f32 {
  const v4 = valid & ~3;
  const masked = v4 < valid && v4 + 4 <= room;
  // lanes of the vector at v4 that hold valid scores
  const lanes = i32x4.lt_s(i32x4.add(i32x4.splat(v4), laneIndex()), i32x4.splat(valid));
  const minusInf = f32x4.splat(-Infinity);
  let vmax = minusInf;
  let max: f32 = -Infinity;
  for (let t = 0; t < v4; t += 4) vmax = f32x4.pmax(vmax, v128.load(row + (<usize>t << 2)));
  if (masked) vmax = f32x4.pmax(vmax, v128.bitselect(v128.load(row + (<usize>v4 << 2)), minusInf, lanes));
  else for (let t = v4; t < valid; t++) max = Mathf.max(max, load<f32>(row + (<usize>t << 2)));
  max = Mathf.max(max, hmax(vmax));
  const c = <f32>(<f64>scale * LOG2E);
  const vc = f32x4.splat(c), vb = f32x4.splat(-max * c);
  let vsum = f32x4.splat(0);
  let t = 0;
  for (; t + 16 <= v4; t += 16) {
    const p = row + (<usize>t << 2);
    const e0 = exp2Neg4(madd(v128.load(p), vc, vb)), e1 = exp2Neg4(madd(v128.load(p, 16), vc, vb));
    const e2 = exp2Neg4(madd(v128.load(p, 32), vc, vb)), e3 = exp2Neg4(madd(v128.load(p, 48), vc, vb));
    v128.store(p, e0); v128.store(p, e1, 16); v128.store(p, e2, 32); v128.store(p, e3, 48);
    vsum = f32x4.add(f32x4.add(f32x4.add(f32x4.add(vsum, e0), e1), e2), e3);
  }
  for (; t < v4; t += 4) {
    const p = row + (<usize>t << 2);
    const e = exp2Neg4(madd(v128.load(p), vc, vb));
    v128.store(p, e);
    vsum = f32x4.add(vsum, e);
  }
  let sum = hsum(vsum);
  let zeroFrom = valid;
  if (masked) {
    const p = row + (<usize>v4 << 2);
    const e = v128.and(exp2Neg4(madd(v128.load(p), vc, vb)), lanes);
    v128.store(p, e);
    sum += hsum(e);
    zeroFrom = v4 + 4;
  } else {
    for (; t < valid; t++) {
      const p = row + (<usize>t << 2);
      const e = f32x4.extract_lane(exp2Neg4(madd(f32x4.splat(load<f32>(p)), vc, vb)), 0);
      store<f32>(p, e);
      sum += e;
    }
  }
  if (zeroFrom < n) memory.fill(row + (<usize>zeroFrom << 2), 0, <usize>(n - zeroFrom) << 2);
  return sum;
}

/**
 * The (T, T) scores of one head of a training sequence into causal attention probabilities in
 * place: row t becomes softmax(scale · s) over its first t + 1 values, 0 after them.
 */
export function causalSoftmaxRows(p: usize, T: i32, scale: f32): void {
  const rowBytes = <usize>T << 2;
  for (let t = 0; t < T; t++) {
    const row = p + <usize>t * rowBytes;
    scaleInPlace(row, t + 1, <f32>1 / causalExpRow(row, t + 1, T, T, scale));
  }
}

/** Head h of attentionHeads (its scores in row h of att). */
function attendHead(
  out: usize, q: usize, keyCache: usize, valueCache: usize, att: usize, pos: i32, h: i32,
  nHeads: i32, nKvHeads: i32, headSize: i32, kvDim: i32, seqLen: i32,
): void {
  const kvMul = nHeads / nKvHeads;
  const scale = <f32>(1.0 / Math.sqrt(<f64>headSize));
  const rowBytes = <usize>kvDim << 2;
  const headBytes = <usize>headSize << 2;
  const hs4 = headSize & ~3;
  const vscale = f32x4.splat(scale);
  {
    const qh = q + <usize>h * headBytes;
    const kvOffset = <usize>(h / kvMul) * headBytes;
    const ah = att + ((<usize>h * <usize>seqLen) << 2);
    // scores_t = q · k_t / √headSize, four positions at a time, and their maximum
    let vmax = f32x4.splat(-Infinity);
    let max: f32 = -Infinity;
    let t = 0;
    if (headSize == 8) {
      // stories260K's heads: the query in two registers, each key row two loads
      const qlo = v128.load(qh), qhi = v128.load(qh, 16);
      for (; t + 4 <= pos + 1; t += 4) {
        const k0 = keyCache + <usize>t * rowBytes + kvOffset;
        const k1 = k0 + rowBytes, k2 = k1 + rowBytes, k3 = k2 + rowBytes;
        const scores = f32x4.mul(hsum4(
          f32x4.add(f32x4.mul(qlo, v128.load(k0)), f32x4.mul(qhi, v128.load(k0, 16))),
          f32x4.add(f32x4.mul(qlo, v128.load(k1)), f32x4.mul(qhi, v128.load(k1, 16))),
          f32x4.add(f32x4.mul(qlo, v128.load(k2)), f32x4.mul(qhi, v128.load(k2, 16))),
          f32x4.add(f32x4.mul(qlo, v128.load(k3)), f32x4.mul(qhi, v128.load(k3, 16))),
        ), vscale);
        v128.store(ah + (<usize>t << 2), scores);
        vmax = f32x4.pmax(vmax, scores);
      }
    }
    for (; t + 4 <= pos + 1; t += 4) {
      const k0 = keyCache + <usize>t * rowBytes + kvOffset;
      const k1 = k0 + rowBytes, k2 = k1 + rowBytes, k3 = k2 + rowBytes;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      for (let i = 0; i < hs4; i += 4) {
        const o = <usize>i << 2;
        const qv = v128.load(qh + o);
        a0 = f32x4.add(a0, f32x4.mul(qv, v128.load(k0 + o)));
        a1 = f32x4.add(a1, f32x4.mul(qv, v128.load(k1 + o)));
        a2 = f32x4.add(a2, f32x4.mul(qv, v128.load(k2 + o)));
        a3 = f32x4.add(a3, f32x4.mul(qv, v128.load(k3 + o)));
      }
      let sums = hsum4(a0, a1, a2, a3);
      if (hs4 < headSize) { // head size not a multiple of 4
        let s0: f32 = 0, s1: f32 = 0, s2: f32 = 0, s3: f32 = 0;
        for (let i = hs4; i < headSize; i++) {
          const o = <usize>i << 2;
          const qi = load<f32>(qh + o);
          s0 += qi * load<f32>(k0 + o); s1 += qi * load<f32>(k1 + o);
          s2 += qi * load<f32>(k2 + o); s3 += qi * load<f32>(k3 + o);
        }
        sums = f32x4.add(sums, f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(s0), 1, s1), 2, s2), 3, s3));
      }
      const scores = f32x4.mul(sums, vscale);
      v128.store(ah + (<usize>t << 2), scores);
      vmax = f32x4.pmax(vmax, scores);
    }
    for (; t <= pos; t++) {
      const score = dot(qh, keyCache + <usize>t * rowBytes + kvOffset, headSize) * scale;
      store<f32>(ah + (<usize>t << 2), score);
      max = Mathf.max(max, score);
    }
    // softmax: att_t = e^(score_t − max) / Σ e^(score − max)
    max = Mathf.max(max, hmax(vmax));
    t = (pos + 1) & ~3;
    let sum = hsum(expSum32(ah, t, f32x4.splat(max)));
    for (; t <= pos; t++) {
      const p = ah + (<usize>t << 2);
      const e = exp1(load<f32>(p) - max);
      store<f32>(p, e);
      sum += e;
    }
    scaleInPlace(ah, pos + 1, <f32>1 / sum);
    // out_h = Σ_t att_t · v_t: sixteen output lanes at a time, accumulated in registers over t
    const oh = out + <usize>h * headBytes;
    let i = 0;
    if (headSize == 8) {
      // stories260K's heads: both halves of the head in one pass over t, two positions per step
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
      let v = valueCache + kvOffset;
      t = 0;
      for (; t + 2 <= pos + 1; t += 2) {
        const at = ah + (<usize>t << 2);
        const w0 = v128.load32_splat(at), w1 = v128.load32_splat(at + 4);
        a0 = f32x4.add(a0, f32x4.mul(w0, v128.load(v)));
        a1 = f32x4.add(a1, f32x4.mul(w0, v128.load(v, 16)));
        b0 = f32x4.add(b0, f32x4.mul(w1, v128.load(v + rowBytes)));
        b1 = f32x4.add(b1, f32x4.mul(w1, v128.load(v + rowBytes, 16)));
        v += 2 * rowBytes;
      }
      if (t <= pos) {
        const w0 = v128.load32_splat(ah + (<usize>t << 2));
        a0 = f32x4.add(a0, f32x4.mul(w0, v128.load(v)));
        a1 = f32x4.add(a1, f32x4.mul(w0, v128.load(v, 16)));
      }
      v128.store(oh, f32x4.add(a0, b0));
      v128.store(oh, f32x4.add(a1, b1), 16);
      return;
    }
    for (; i + 16 <= headSize; i += 16) {
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      let v = valueCache + kvOffset + (<usize>i << 2);
      for (let t = 0; t <= pos; t++) {
        const a = v128.load32_splat(ah + (<usize>t << 2));
        a0 = f32x4.add(a0, f32x4.mul(a, v128.load(v)));
        a1 = f32x4.add(a1, f32x4.mul(a, v128.load(v, 16)));
        a2 = f32x4.add(a2, f32x4.mul(a, v128.load(v, 32)));
        a3 = f32x4.add(a3, f32x4.mul(a, v128.load(v, 48)));
        v += rowBytes;
      }
      const o = oh + (<usize>i << 2);
      v128.store(o, a0); v128.store(o, a1, 16); v128.store(o, a2, 32); v128.store(o, a3, 48);
    }
    for (; i + 4 <= headSize; i += 4) {
      // small heads: four positions per step into four accumulators (no add-latency chain)
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      let v = valueCache + kvOffset + (<usize>i << 2);
      let t = 0;
      for (; t + 4 <= pos + 1; t += 4) {
        const at = ah + (<usize>t << 2);
        a0 = f32x4.add(a0, f32x4.mul(v128.load32_splat(at), v128.load(v)));
        a1 = f32x4.add(a1, f32x4.mul(v128.load32_splat(at + 4), v128.load(v + rowBytes)));
        a2 = f32x4.add(a2, f32x4.mul(v128.load32_splat(at + 8), v128.load(v + 2 * rowBytes)));
        a3 = f32x4.add(a3, f32x4.mul(v128.load32_splat(at + 12), v128.load(v + 3 * rowBytes)));
        v += 4 * rowBytes;
      }
      for (; t <= pos; t++) {
        a0 = f32x4.add(a0, f32x4.mul(v128.load32_splat(ah + (<usize>t << 2)), v128.load(v)));
        v += rowBytes;
      }
      v128.store(oh + (<usize>i << 2), f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
    }
    for (; i < headSize; i++) {
      let s: f32 = 0;
      for (let t = 0; t <= pos; t++) {
        s += load<f32>(ah + (<usize>t << 2)) * load<f32>(valueCache + <usize>t * rowBytes + kvOffset + (<usize>i << 2));
      }
      store<f32>(oh + (<usize>i << 2), s);
    }
  }
}

/** SwiGLU gate in place: hb = silu(hb) ⊙ hb2 with silu(v) = v · σ(v) (train.ts's, out = a = hb). */
export function swiglu(hb: usize, hb2: usize, size: i32): void {
  swigluForwardTrain(hb, hb, hb2, size);
}

/** x += y over size values. */
export function add(x: usize, y: usize, size: i32): void {
  let i = 0;
  for (; i + 4 <= size; i += 4) {
    const o = <usize>i << 2;
    v128.store(x + o, f32x4.add(v128.load(x + o), v128.load(y + o)));
  }
  for (; i < size; i++) {
    const o = <usize>i << 2;
    store<f32>(x + o, load<f32>(x + o) + load<f32>(y + o));
  }
}

// ------------------------------------------------------------------------------------------------
// int8 (Q8_0): symmetric quantization, one float32 scale per group of groupSize values.

/**
 * Quantizes x (n) into xq (n int8) and xs (ceil(n / groupSize) scales). Groups start at 0; the last
 * one is partial when groupSize does not divide n. scale = max|x| / 127, q = round-half-even(x / scale).
 */
export function quantize(xq: usize, xs: usize, x: usize, n: i32, groupSize: i32): void {
  let g = 0;
  for (let start = 0; start < n; start += groupSize) {
    const end = min(start + groupSize, n);
    // max|x| over the group (the order of a maximum does not matter: four lanes, then across them)
    let i = start;
    let vmax = f32x4.splat(0);
    for (; i + 4 <= end; i += 4) vmax = f32x4.max(vmax, f32x4.abs(v128.load(x + (<usize>i << 2))));
    let wmax: f32 = hmax(vmax);
    for (; i < end; i++) wmax = Mathf.max(wmax, Mathf.abs(load<f32>(x + (<usize>i << 2))));
    const scale = wmax / <f32>127;
    store<f32>(xs + (<usize>g << 2), scale);
    i = start;
    if (scale != 0) {
      // sixteen at a time: divide and round half to even lane by lane (the scalar operations),
      // then narrow int32 → int16 → int8 (|q| ≤ 127: nothing saturates)
      const vscale = f32x4.splat(scale);
      for (; i + 16 <= end; i += 16) {
        const p = x + (<usize>i << 2);
        const q0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v128.load(p), vscale)));
        const q1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v128.load(p, 16), vscale)));
        const q2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v128.load(p, 32), vscale)));
        const q3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v128.load(p, 48), vscale)));
        v128.store(xq + <usize>i, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3)));
      }
    }
    for (; i < end; i++) {
      const q: i32 = scale == 0 ? 0 : <i32>nearest<f32>(load<f32>(x + (<usize>i << 2)) / scale);
      store<i8>(xq + <usize>i, <i8>q);
    }
    g++;
  }
}

/**
 * xout[r] = Σ_j W[r, j] x[j] in int8 for rows [r0, r1). `streamed` (0 or 1): the weights come
 * from memory rather than the caches — they are then read one row at a time (matmulQ8Aligned). W is (d, n) Q8_0 grouped over the FLATTENED
 * tensor (value i has scale ws[floor(i / groupSize)], so a group may straddle two rows); x was
 * quantized by `quantize` (groups starting at 0). A row is cut into segments over which both
 * scales are constant; each segment's integer dot product is exact and is added as
 * val += f32(f32(isum) · wscale) · xscale, in segment order.
 */
export function matmulQ8Rows(
  xout: usize, xq: usize, xs: usize, wq: usize, ws: usize, n: i32, streamed: i32, groupSize: i32, r0: i32, r1: i32,
): void {
  let r = r0;
  if (n % groupSize == 0 && (groupSize & 15) == 0) {
    r = streamed ? matmulQ8Aligned(xout, xq, xs, wq, ws, n, groupSize, r0, r1)
      : matmulQ8FourRows(xout, xq, xs, wq, ws, n, groupSize, r0, r1);
  }
  for (; r < r1; r++) {
    const rowStart = <i64>r * <i64>n;
    const row = wq + <usize>rowStart;
    let wg = <i32>(rowStart / <i64>groupSize);
    let wEnd = <i32>(<i64>(wg + 1) * <i64>groupSize - rowStart); // where weight group wg ends, in row coordinates
    let xg = 0;
    let xEnd = groupSize;
    let val: f32 = 0;
    let j = 0;
    while (j < n) {
      const end = min(min(wEnd, xEnd), n);
      const isum = dotI8(row + <usize>j, xq + <usize>j, end - j);
      val += (<f32>isum * load<f32>(ws + (<usize>wg << 2))) * load<f32>(xs + (<usize>xg << 2));
      if (end == wEnd) { wg++; wEnd += groupSize; }
      if (end == xEnd) { xg++; xEnd += groupSize; }
      j = end;
    }
    store<f32>(xout + (<usize>r << 2), val);
  }
}

/** The integer products of one group (groupSize a multiple of 16) at a and b, in four int32 lanes (sum them for the dot product). */
// @ts-ignore: decorator
@inline function dotI8Lanes(a: usize, b: usize, groupSize: i32): v128 {
  let acc = i32x4.splat(0);
  for (let k = 0; k < groupSize; k += 16) {
    // 8 int8 at a time loaded straight into int16 lanes (load8x8_s: one sign-extending load on
    // x64, where extend_high of a 16-byte load costs a shuffle more)
    const o = <usize>k;
    acc = i32x4.add(acc, i32x4.add(
      i32x4.dot_i16x8_s(v128.load8x8_s(a + o), v128.load8x8_s(b + o)),
      i32x4.dot_i16x8_s(v128.load8x8_s(a + o, 8), v128.load8x8_s(b + o, 8))));
  }
  return acc;
}

/**
 * The common case of matmulQ8Rows: every row starts on a group boundary (groupSize divides n) and
 * groups are whole 16-byte vectors. One row at a time, four groups per step: their integer sums
 * are reduced together (hsum4I32), scaled lane-wise by the four weight scales and the four input
 * scales (both consecutive in memory), and added to the row's float32 sum one lane after the other
 * — the same operations in the same order as the per-row code, so the results are identical.
 *
 * Why one row at a time: the weights then stream through memory in one sequential run, which the
 * hardware prefetcher follows. Measured (one thread, 32000×512, group 64, weights not in cache):
 * 15 GB/s, against 7 GB/s for four rows at a time sharing the loads of x (four interleaved streams);
 * four rows (matmulQ8FourRows) win while the weights stay in cache (by ~20%).
 * Returns r1.
 */
function matmulQ8Aligned(
  xout: usize, xq: usize, xs: usize, wq: usize, ws: usize, n: i32, groupSize: i32, r0: i32, r1: i32,
): i32 {
  const groups = n / groupSize; // per row
  const groups4 = groups & ~3;
  const gBytes = <usize>groupSize;
  for (let r = r0; r < r1; r++) {
    const row = wq + <usize>r * <usize>n;
    const rowScales = ws + ((<usize>r * <usize>groups) << 2);
    let val: f32 = 0;
    let g = 0;
    for (; g < groups4; g += 4) {
      const o = <usize>g * gBytes;
      const isum = f32x4.convert_i32x4_s(hsum4I32(
        dotI8Lanes(row + o, xq + o, groupSize), dotI8Lanes(row + o + gBytes, xq + o + gBytes, groupSize),
        dotI8Lanes(row + o + 2 * gBytes, xq + o + 2 * gBytes, groupSize), dotI8Lanes(row + o + 3 * gBytes, xq + o + 3 * gBytes, groupSize),
      ));
      const terms = f32x4.mul(f32x4.mul(isum, v128.load(rowScales + (<usize>g << 2))), v128.load(xs + (<usize>g << 2)));
      val += f32x4.extract_lane(terms, 0);
      val += f32x4.extract_lane(terms, 1);
      val += f32x4.extract_lane(terms, 2);
      val += f32x4.extract_lane(terms, 3);
    }
    for (; g < groups; g++) {
      const o = <usize>g * gBytes;
      const isum = <f32>hsumI32(dotI8Lanes(row + o, xq + o, groupSize));
      val += (isum * load<f32>(rowScales + (<usize>g << 2))) * load<f32>(xs + (<usize>g << 2));
    }
    store<f32>(xout + (<usize>r << 2), val);
  }
  return r1;
}

/**
 * matmulQ8Aligned for weights in cache: four rows at a time share each load of x; their four group
 * sums are reduced together (hsum4I32), scaled lane-wise, and added to one float32 lane per row
 * — the same operations in the same order as the per-row code, so the results are identical.
 * Returns the first row it did not do (the last r1 - r0 mod 4 rows are left to the caller).
 */
function matmulQ8FourRows(
  xout: usize, xq: usize, xs: usize, wq: usize, ws: usize, n: i32, groupSize: i32, r0: i32, r1: i32,
): i32 {
  const groups = n / groupSize; // per row
  const scaleRowBytes = <usize>groups << 2;
  let r = r0;
  for (; r + 4 <= r1; r += 4) {
    const w0 = wq + <usize>r * <usize>n;
    const w1 = w0 + <usize>n, w2 = w1 + <usize>n, w3 = w2 + <usize>n;
    const s0 = ws + <usize>r * scaleRowBytes;
    let val = f32x4.splat(0);
    for (let g = 0; g < groups; g++) {
      let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
      const end = (g + 1) * groupSize;
      for (let k = g * groupSize; k < end; k += 16) {
        // 8 int8 at a time loaded straight into int16 lanes (load8x8_s: one sign-extending load on
        // x64, where extend_high of a 16-byte load costs a shuffle more)
        const o = <usize>k;
        const xl = v128.load8x8_s(xq + o);
        const xh = v128.load8x8_s(xq + o, 8);
        a0 = i32x4.add(a0, i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(w0 + o), xl), i32x4.dot_i16x8_s(v128.load8x8_s(w0 + o, 8), xh)));
        a1 = i32x4.add(a1, i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(w1 + o), xl), i32x4.dot_i16x8_s(v128.load8x8_s(w1 + o, 8), xh)));
        a2 = i32x4.add(a2, i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(w2 + o), xl), i32x4.dot_i16x8_s(v128.load8x8_s(w2 + o, 8), xh)));
        a3 = i32x4.add(a3, i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(w3 + o), xl), i32x4.dot_i16x8_s(v128.load8x8_s(w3 + o, 8), xh)));
      }
      const sg = s0 + (<usize>g << 2);
      let wscale = f32x4.splat(load<f32>(sg));
      wscale = f32x4.replace_lane(wscale, 1, load<f32>(sg + scaleRowBytes));
      wscale = f32x4.replace_lane(wscale, 2, load<f32>(sg + 2 * scaleRowBytes));
      wscale = f32x4.replace_lane(wscale, 3, load<f32>(sg + 3 * scaleRowBytes));
      const isum = f32x4.convert_i32x4_s(hsum4I32(a0, a1, a2, a3));
      val = f32x4.add(val, f32x4.mul(f32x4.mul(isum, wscale), v128.load32_splat(xs + (<usize>g << 2))));
    }
    v128.store(xout + (<usize>r << 2), val);
  }
  return r;
}

// ------------------------------------------------------------------------------------------------
// The matrix × matrix product (training, batched prefill, evaluation): assembly/gemm.ts

export { gemm, gemmScratchBytes } from './gemm';
export { gemmQ8 } from './gemm-q8';
export {
  adamwTrain, crossEntropyBackwardRow, rmsnormBackwardTrain, rmsnormForwardTrain, softmaxBackwardRows, swigluBackwardTrain, swigluForwardTrain,
} from './train';

/** First free byte after the module's own static data: the kernels' allocator starts here. */
export function heapBase(): usize {
  return __heap_base;
}

// ------------------------------------------------------------------------------------------------
// The token sampler (run.c's, bit for bit): assembly/sampler.ts

export { greedy, sample, sampleScratchBytes } from './sampler';

// ------------------------------------------------------------------------------------------------
// A whole token's forward pass in one call (small models): assembly/forward.ts

export { forward } from './forward';
