// The int8 (Q8_0) matrix × matrix product: C (M, d) = X (M, n) · Wᵀ for M vectors at once — a
// prompt's block of tokens through a Q8_0 weight matrix — bit for bit what M calls of
// matmulQ8Rows (kernels.ts) compute.
//
// X is M rows quantized by `quantize` (xq: M × n int8, xs: M × n/gs scales); W is (d, n) Q8_0
// (wq int8, ws one scale per group of gs values). Only the common layout is handled here: every
// row made of whole groups (n % gs == 0) and gs a multiple of 8; matmulQ8Rows does the rest.
// Each output is, as in matmulQ8Rows,
//     val = Σ_g f32(f32(isum_g · ws[r, g]) · xs[m, g])     added in float32, group after group,
// with isum_g the exact integer dot product of group g. Integer sums are exact in any order, so
// only the float32 steps above fix the bits — and both kernels below keep them.
//
// The instruction: i32x4.dot_i16x8_s (x64 pmaddwd) multiplies eight int16 pairs and adds adjacent
// products into four int32 lanes. WebAssembly has no int8 dot product outside relaxed SIMD, so the
// int8 values are widened to int16 first.
//
// The packed kernel (16 rows or more: a prompt's block) makes the lanes of that instruction be
// output channels, so an accumulator needs no horizontal sum:
//   - W, a block of channels at a time, one group at a time, is packed in panels of 8 channels:
//     for each pair of values (k, k+1) of the group, 32 bytes = the pair of channels c … c+3, then
//     of c+4 … c+7, as int16 (a 4 × 4 transpose of 32-bit lanes), the panel's 8 scales after it;
//   - X, one group at a time, is packed in tiles of 4 rows: for each pair, each row's pair repeated
//     in all four 32-bit lanes (a broadcast, done once here rather than in the inner loop, where
//     it would cost a vector µop per load on this x64);
//   - the 4 rows × 8 channels micro-kernel keeps 8 int32 accumulators; per pair it loads two W
//     vectors and four X vectors and issues 8 dot products — one load per 2.7 multiply-adds.
//     At the end of the group, C += (f32(isum) · ws) · xs, lane by lane, in that order (the first
//     group adds to 0, as matmulQ8Rows starts from 0).
// Loop order: rows in blocks that fit the scratch; channels in blocks whose packed group (≤ 16 KiB)
// stays in L1; then group by group (X and W packed for the group), each tile of 4 rows against
// each panel of the block. W is read once per block of rows; C is touched once per group, within
// the block of channels (a few KiB per row, in cache).
//
// The in-place kernel (fewer rows: a few sessions' batched decode) takes 2 rows × 4 channels,
// widening with one sign-extending load, and sums the four channels' lanes at the end of each
// group (hsum4I32). It reads W and X in place: packing would cost more than it saves.

import { hsum4I32 } from './simd';

/** Channels of a panel (two vectors of four). */
const TC: i32 = 8;
/** Bytes of one packed block of W, at most (channels per block = this / (2 gs)). */
const W_BLOCK: i32 = 16384;
/** Fewer rows than this take the in-place kernel. */
const PACKED_MIN_ROWS: i32 = 16;
/** Rows of X kept in L1 while the channel tiles pass over them (in-place kernel). */
const RB: i32 = 16;

/**
 * Packs the rows [m, mEnd) of X, group g, as broadcast pairs: for each tile of four rows, for each
 * pair p of the group, four vectors (one per row) holding the row's two int16 values (2p, 2p + 1)
 * in every 32-bit lane. Rows past mEnd up to the tile's end are zero.
 */
function packX(dst: usize, xq: usize, n: i32, gs: i32, g: i32, m: i32, mEnd: i32): void {
  const pairs = gs >> 1;
  const tiles = (mEnd - m + 3) >> 2;
  const tileBytes = <usize>pairs << 6;
  for (let t = 0; t < tiles; t++) {
    for (let q = 0; q < 4; q++) {
      const row = m + (t << 2) + q;
      let p = dst + <usize>t * tileBytes + (<usize>q << 4);
      if (row >= mEnd) {
        for (let i = 0; i < pairs; i++) { v128.store(p, i32x4.splat(0)); p += 64; }
        continue;
      }
      let src = xq + <usize>row * <usize>n + <usize>g * <usize>gs;
      for (let k = 0; k < gs; k += 8) {
        const v = v128.load8x8_s(src); // four pairs as four 32-bit lanes
        v128.store(p, v128.shuffle<i32>(v, v, 0, 0, 0, 0));
        v128.store(p, v128.shuffle<i32>(v, v, 1, 1, 1, 1), 64);
        v128.store(p, v128.shuffle<i32>(v, v, 2, 2, 2, 2), 128);
        v128.store(p, v128.shuffle<i32>(v, v, 3, 3, 3, 3), 192);
        src += 8;
        p += 256;
      }
    }
  }
}

/**
 * Packs channels [r, r + 8) of W (r1 and past: copies of channel r1 - 1), group g: for each pair p of the group, 32 bytes
 * holding the pair's two int16 values of channels r … r + 3, then r + 4 … r + 7; and after the
 * panel, the eight channels' scales of group g.
 */
function packW(dst: usize, wq: usize, ws: usize, n: i32, gs: i32, groups: i32, g: i32, r: i32, r1: i32): void {
  const pairs = gs >> 1;
  for (let h = 0; h < 2; h++) {
    const c = r + (h << 2);
    const base = wq + <usize>g * <usize>gs;
    const row = <usize>n;
    let p = dst + (<usize>h << 4);
    // channels past r1 repeat the last one (their results are never stored)
    const last = r1 - 1;
    const p0 = base + <usize>min(c, last) * row, p1 = base + <usize>min(c + 1, last) * row;
    const p2 = base + <usize>min(c + 2, last) * row, p3 = base + <usize>min(c + 3, last) * row;
    for (let k: usize = 0; k < <usize>gs; k += 8) {
      const a = v128.load8x8_s(p0 + k), b = v128.load8x8_s(p1 + k);
      const e = v128.load8x8_s(p2 + k), f = v128.load8x8_s(p3 + k);
      // 4 × 4 transpose of 32-bit lanes: lane j of output p = pair p of channel c + j
      const ab0 = v128.shuffle<i32>(a, b, 0, 4, 1, 5), ab1 = v128.shuffle<i32>(a, b, 2, 6, 3, 7);
      const ef0 = v128.shuffle<i32>(e, f, 0, 4, 1, 5), ef1 = v128.shuffle<i32>(e, f, 2, 6, 3, 7);
      v128.store(p, v128.shuffle<i32>(ab0, ef0, 0, 1, 4, 5));
      v128.store(p, v128.shuffle<i32>(ab0, ef0, 2, 3, 6, 7), 32);
      v128.store(p, v128.shuffle<i32>(ab1, ef1, 0, 1, 4, 5), 64);
      v128.store(p, v128.shuffle<i32>(ab1, ef1, 2, 3, 6, 7), 96);
      p += 128;
    }
  }
  const s = dst + (<usize>pairs << 5);
  for (let j = 0; j < TC; j++) {
    store<f32>(s + (<usize>j << 2), load<f32>(ws + ((<usize>min(r + j, r1 - 1) * <usize>groups + <usize>g) << 2)));
  }
}

/** Adds one group's tile results (cvt(isum) · ws) · xs to C (or starts C with them at g == 0). */
// @ts-ignore: decorator
@inline function addRow(o: usize, acc: v128, wsv: v128, xsv: v128, first: bool): void {
  const t = f32x4.mul(f32x4.mul(f32x4.convert_i32x4_s(acc), wsv), xsv);
  v128.store(o, f32x4.add(first ? f32x4.splat(0) : v128.load(o), t));
}

// @ts-ignore: decorator
@inline function addRowPart(o: usize, acc: v128, wsv: v128, xsv: v128, first: bool, lanes: i32): void {
  const t = f32x4.mul(f32x4.mul(f32x4.convert_i32x4_s(acc), wsv), xsv);
  if (lanes > 0) store<f32>(o, (first ? <f32>0 : load<f32>(o)) + f32x4.extract_lane(t, 0));
  if (lanes > 1) store<f32>(o + 4, (first ? <f32>0 : load<f32>(o + 4)) + f32x4.extract_lane(t, 1));
  if (lanes > 2) store<f32>(o + 8, (first ? <f32>0 : load<f32>(o + 8)) + f32x4.extract_lane(t, 2));
  if (lanes > 3) store<f32>(o + 12, (first ? <f32>0 : load<f32>(o + 12)) + f32x4.extract_lane(t, 3));
}

/** One row of a tile whose channels or rows are cut short (lanes of the 8 are written). */
function addTile(o: usize, lo: v128, hi: v128, wlo: v128, whi: v128, xsv: v128, first: bool, lanes: i32): void {
  if (lanes >= 4) addRow(o, lo, wlo, xsv, first); else addRowPart(o, lo, wlo, xsv, first, lanes);
  if (lanes >= 8) addRow(o + 16, hi, whi, xsv, first); else addRowPart(o + 16, hi, whi, xsv, first, lanes - 4);
}

/**
 * C (M, d) = X · Wᵀ for rows [m0, m1) and channels [r0, r1) of C (row stride ldc bytes); see the
 * top of this file. `scratch` holds gemmScratchBytes() bytes, this thread's.
 */
export function gemmQ8(
  c: usize, ldc: i32, xq: usize, xs: usize, wq: usize, ws: usize, n: i32, gs: i32,
  m0: i32, m1: i32, r0: i32, r1: i32, scratch: usize, scratchBytes: i32,
): void {
  const groups = n / gs;
  const pairs = gs >> 1;
  const panelBytes = (<i32>pairs << 5) + 32;
  const cb = max(TC, min(256, (W_BLOCK / (gs << 1)) & ~(TC - 1))); // channels per block
  const blockBytes = (cb / TC) * panelBytes;
  const mbMax = ((scratchBytes - blockBytes) / (gs << 3)) & ~3; // rows whose packed group fits
  if (m1 - m0 < PACKED_MIN_ROWS || mbMax < 4) {
    gemmQ8InPlace(c, ldc, xq, xs, wq, ws, n, gs, m0, m1, r0, r1);
    return;
  }
  const wp = scratch, xp = scratch + <usize>blockBytes;
  const xsRow = <usize>groups << 2;
  const cStride = <usize>ldc;
  const tileBytes = <usize>pairs << 6;
  const pairBytes = <usize>pairs << 5;
  for (let mb = m0; mb < m1; mb += mbMax) {
    const mEnd = min(mb + mbMax, m1);
    const tiles = (mEnd - mb + 3) >> 2;
    for (let rb = r0; rb < r1; rb += cb) {
      const rbEnd = min(rb + cb, r1);
      for (let g = 0; g < groups; g++) {
        const first = g == 0; // C starts from 0 + the first group's sums, as matmulQ8Rows does
        const gOff = <usize>g << 2;
        packX(xp, xq, n, gs, g, mb, mEnd);
        let panel = wp;
        for (let r = rb; r < rbEnd; r += TC) {
          packW(panel, wq, ws, n, gs, groups, g, r, rbEnd);
          panel += <usize>panelBytes;
        }
        for (let t = 0; t < tiles; t++) {
          const row0 = mb + (t << 2);
          const rows = mEnd - row0;
          const xs0 = xs + <usize>row0 * xsRow + gOff;
          const xt = xp + <usize>t * tileBytes;
          panel = wp;
          for (let r = rb; r < rbEnd; r += TC) {
            let a0 = i32x4.splat(0), a1 = i32x4.splat(0), b0 = i32x4.splat(0), b1 = i32x4.splat(0);
            let c0 = i32x4.splat(0), c1 = i32x4.splat(0), d0 = i32x4.splat(0), d1 = i32x4.splat(0);
            // the micro-kernel: a0/a1 … d0/d1 = rows 0 … 3 × channels r … r+3 / r+4 … r+7; each
            // step takes one pair of values (k, k+1): two W vectors, then each row's broadcast pair
            let px = xt;
            let pw = panel;
            const end = panel + pairBytes;
            for (; pw < end; pw += 32, px += 64) {
              const w0 = v128.load(pw), w1 = v128.load(pw, 16);
              let x = v128.load(px);
              a0 = i32x4.add(a0, i32x4.dot_i16x8_s(x, w0)); a1 = i32x4.add(a1, i32x4.dot_i16x8_s(x, w1));
              x = v128.load(px, 16);
              b0 = i32x4.add(b0, i32x4.dot_i16x8_s(x, w0)); b1 = i32x4.add(b1, i32x4.dot_i16x8_s(x, w1));
              x = v128.load(px, 32);
              c0 = i32x4.add(c0, i32x4.dot_i16x8_s(x, w0)); c1 = i32x4.add(c1, i32x4.dot_i16x8_s(x, w1));
              x = v128.load(px, 48);
              d0 = i32x4.add(d0, i32x4.dot_i16x8_s(x, w0)); d1 = i32x4.add(d1, i32x4.dot_i16x8_s(x, w1));
            }
            // the group's end: C += (f32(isum) · ws) · xs per lane, the panel's scales after it
            const wlo = v128.load(end), whi = v128.load(end, 16);
            const o0 = c + <usize>row0 * cStride + (<usize>r << 2);
            if (r + TC <= rbEnd && rows >= 4) {
              let xsv = v128.load32_splat(xs0);
              addRow(o0, a0, wlo, xsv, first); addRow(o0 + 16, a1, whi, xsv, first);
              xsv = v128.load32_splat(xs0 + xsRow);
              addRow(o0 + cStride, b0, wlo, xsv, first); addRow(o0 + cStride + 16, b1, whi, xsv, first);
              xsv = v128.load32_splat(xs0 + 2 * xsRow);
              addRow(o0 + 2 * cStride, c0, wlo, xsv, first); addRow(o0 + 2 * cStride + 16, c1, whi, xsv, first);
              xsv = v128.load32_splat(xs0 + 3 * xsRow);
              addRow(o0 + 3 * cStride, d0, wlo, xsv, first); addRow(o0 + 3 * cStride + 16, d1, whi, xsv, first);
            } else {
              const lanes = min(rbEnd - r, TC);
              addTile(o0, a0, a1, wlo, whi, v128.load32_splat(xs0), first, lanes);
              if (rows > 1) addTile(o0 + cStride, b0, b1, wlo, whi, v128.load32_splat(xs0 + xsRow), first, lanes);
              if (rows > 2) addTile(o0 + 2 * cStride, c0, c1, wlo, whi, v128.load32_splat(xs0 + 2 * xsRow), first, lanes);
              if (rows > 3) addTile(o0 + 3 * cStride, d0, d1, wlo, whi, v128.load32_splat(xs0 + 3 * xsRow), first, lanes);
            }
            panel += <usize>panelBytes;
          }
        }
      }
    }
  }
}

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
 * The in-place kernel (few rows): C (M, d) = X · Wᵀ for rows [m0, m1) and channels [r0, r1) of C
 * (row stride ldc bytes).
 */
function gemmQ8InPlace(
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
