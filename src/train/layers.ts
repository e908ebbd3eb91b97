// The layers of Llama 2 for training, llm.c style: each layer's forward pass next to its
// backward pass. Tensors are Float32Arrays in row-major order; shapes are given in the comments
// with B = batch, T = time, C = dim, NH = query heads, KVH = key/value heads, hs = head size,
// H = hidden (SwiGLU) size, V = vocabulary.
//
// Every backward function ACCUMULATES (+=) into the gradients it produces, so gradients of
// parameters shared between uses (the tied embedding/classifier) and of tensors that feed two
// layers (the residual stream) simply add up; zeroing is one explicit step of the caller. The only
// exceptions work in place and say so (RoPE and dropout transform a gradient they own).
//
// Arithmetic: sums are carried in float64 (JavaScript numbers) and stored as float32, which is at
// least as accurate as PyTorch's float32 reductions; tests compare with PyTorch at 1e-5..1e-4. The
// WebAssembly kernels' float32 SIMD versions of the element-wise and row-wise loops (MatmulKernels
// .rows, assembly/train.ts) are compared with these loops, and pass the same PyTorch tests.

import type { AdamWHyper } from './adamw.js';
import type { Rng } from './rng.js';

// ----------------------------------------------------------------------------------------------
// Matrix multiplication without bias: out (BT, OC) = inp (BT, C) · wᵀ, w (OC, C) as nn.Linear
// stores it. The plain-TypeScript reference; faster kernels implement the same two functions.

export interface MatmulKernels {
  readonly name: string;
  /** out (BT, OC) = inp (BT, C) · w (OC, C)ᵀ  (overwrites out). */
  matmulForward(out: Float32Array, inp: Float32Array, w: Float32Array, BT: number, C: number, OC: number): void;
  /** dinp (BT, C) += dout (BT, OC) · w (OC, C);  dw (OC, C) += dout ᵀ · inp. */
  matmulBackward(dinp: Float32Array, dw: Float32Array, dout: Float32Array, inp: Float32Array, w: Float32Array, BT: number, C: number, OC: number): void;
  /**
   * Optional float32 SIMD versions of this file's element-wise and row-wise loops, the same
   * formulas (WebAssembly: assembly/train.ts); the loops here are their reference, in float64.
   */
  readonly rows?: TrainRowKernels;
  /**
   * The product under matmulForward / matmulBackward with offsets and strides, for the attention's
   * products on the heads where they lie (see attentionForward). In elements: C (M, N) = A · B, or
   * C += A · B with `accumulate`, where
   *   A (m, k) is a[aOff + m·sam + k·sak],  B (k, n) is b[bOff + k·sb + n] when bRows, else
   *   b[bOff + n·sb + k] (B given by its transpose),  C (m, n) is c[cOff + m·ldc + n];
   * each C value's terms added in order of k, as the implementation's matmulForward and
   * matmulBackward add them (gemm below; assembly/gemm.ts: in runs of 32 from k = 0).
   */
  gemm(c: Float32Array, cOff: number, ldc: number, a: Float32Array, aOff: number, sam: number, sak: number,
    b: Float32Array, bOff: number, sb: number, bRows: boolean, K: number, accumulate: boolean, M: number, N: number): void;
}

/** See MatmulKernels.rows; each is the function of this file named in its comment. */
export interface TrainRowKernels {
  /** In place, x[offset..offset+n) = softmax of itself (crossEntropyForward's exponentials). */
  softmax(x: Float32Array, offset: number, n: number): void;
  /** Index of the first largest of x[offset..offset+n) (crossEntropyForward's argmax). */
  argmax(x: Float32Array, offset: number, n: number): number;
  /** attentionForward's causal softmax of one head's (T, T) scores, in place. */
  causalSoftmax(P: Float32Array, T: number, scale: number): void;
  /** attentionBackward's softmax backward of one head, in place over s (without dropout). */
  softmaxBackward(P: Float32Array, s: Float32Array, T: number, scale: number): void;
  /** swigluForward over [from, to). */
  swigluForward(out: Float32Array, a: Float32Array, b: Float32Array, from: number, to: number): void;
  /** swigluBackward over [from, to). */
  swigluBackward(da: Float32Array, db: Float32Array, dout: Float32Array, a: Float32Array, b: Float32Array, from: number, to: number): void;
  /** crossEntropySoftmaxBackward of one counted row, in place over its probabilities. */
  crossEntropyBackwardRow(p: Float32Array, offset: number, n: number, y: number, s: number): void;
  /** rmsnormForward. */
  rmsnormForward(out: Float32Array, rstd: Float32Array, inp: Float32Array, weight: Float32Array, BT: number, C: number): void;
  /** rmsnormBackward. */
  rmsnormBackward(dinp: Float32Array, dweight: Float32Array, dout: Float32Array, inp: Float32Array, weight: Float32Array, rstd: Float32Array, BT: number, C: number): void;
  /** adamw.ts's adamwStep over [from, to), in float32 as torch.optim.AdamW computes it. */
  adamw(params: Float32Array, grads: Float32Array, m: Float32Array, v: Float32Array, lr: number, weightDecay: number, hyper: AdamWHyper, step: number, from: number, to: number, gradScale: number): void;
}

export function matmulForward(out: Float32Array, inp: Float32Array, w: Float32Array, BT: number, C: number, OC: number): void {
  // Four output columns at a time: each input row is read once per four weight rows.
  const OC4 = OC - (OC % 4);
  for (let bt = 0; bt < BT; bt++) {
    const x = bt * C;
    const o = bt * OC;
    for (let oc = 0; oc < OC4; oc += 4) {
      const w0 = oc * C, w1 = w0 + C, w2 = w1 + C, w3 = w2 + C;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let i = 0; i < C; i++) {
        const xi = inp[x + i]!;
        s0 += xi * w[w0 + i]!;
        s1 += xi * w[w1 + i]!;
        s2 += xi * w[w2 + i]!;
        s3 += xi * w[w3 + i]!;
      }
      out[o + oc] = s0;
      out[o + oc + 1] = s1;
      out[o + oc + 2] = s2;
      out[o + oc + 3] = s3;
    }
    for (let oc = OC4; oc < OC; oc++) {
      const w0 = oc * C;
      let s = 0;
      for (let i = 0; i < C; i++) s += inp[x + i]! * w[w0 + i]!;
      out[o + oc] = s;
    }
  }
}

export function matmulBackward(dinp: Float32Array, dw: Float32Array, dout: Float32Array, inp: Float32Array, w: Float32Array, BT: number, C: number, OC: number): void {
  // dinp[bt, :] += Σ_oc dout[bt, oc] · w[oc, :]
  for (let bt = 0; bt < BT; bt++) {
    const d = bt * C;
    const g = bt * OC;
    for (let oc = 0; oc < OC; oc++) {
      const s = dout[g + oc]!;
      if (s === 0) continue;
      const w0 = oc * C;
      for (let i = 0; i < C; i++) dinp[d + i] += s * w[w0 + i]!;
    }
  }
  // dw[oc, :] += Σ_bt dout[bt, oc] · inp[bt, :]  (rows of dw accumulate; one row at a time stays in cache)
  for (let oc = 0; oc < OC; oc++) {
    const w0 = oc * C;
    for (let bt = 0; bt < BT; bt++) {
      const s = dout[bt * OC + oc]!;
      if (s === 0) continue;
      const x = bt * C;
      for (let i = 0; i < C; i++) dw[w0 + i] += s * inp[x + i]!;
    }
  }
}

/**
 * MatmulKernels.gemm in the arithmetic of the two above: a new C value sums its terms in float64
 * (matmulForward), an accumulated one adds them one by one into its float32 value (matmulBackward).
 */
export function gemm(c: Float32Array, cOff: number, ldc: number, a: Float32Array, aOff: number, sam: number, sak: number,
  b: Float32Array, bOff: number, sb: number, bRows: boolean, K: number, accumulate: boolean, M: number, N: number): void {
  const bk = bRows ? sb : 1, bn = bRows ? 1 : sb; // B's strides along k and n
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      const ci = cOff + m * ldc + n;
      let ai = aOff + m * sam, bi = bOff + n * bn;
      if (accumulate) {
        for (let k = 0; k < K; k++, ai += sak, bi += bk) c[ci] += a[ai]! * b[bi]!;
      } else {
        let sum = 0;
        for (let k = 0; k < K; k++, ai += sak, bi += bk) sum += a[ai]! * b[bi]!;
        c[ci] = sum;
      }
    }
  }
}

/** The plain-TypeScript products as a kernel set. */
export const jsMatmul: MatmulKernels = { name: 'js', matmulForward, matmulBackward, gemm };

// ----------------------------------------------------------------------------------------------
// Token embedding: out[bt, :] = emb[tokens[bt], :]

export function embeddingForward(out: Float32Array, tokens: Int32Array, emb: Float32Array, BT: number, C: number): void {
  for (let bt = 0; bt < BT; bt++) out.set(emb.subarray(tokens[bt]! * C, tokens[bt]! * C + C), bt * C);
}

export function embeddingBackward(demb: Float32Array, dout: Float32Array, tokens: Int32Array, BT: number, C: number): void {
  for (let bt = 0; bt < BT; bt++) {
    const e = tokens[bt]! * C;
    const d = bt * C;
    for (let i = 0; i < C; i++) demb[e + i] += dout[d + i]!;
  }
}

// ----------------------------------------------------------------------------------------------
// RMSNorm: out = w ⊙ x · r,  r = 1 / sqrt(mean(x²) + 1e-5)  (per row; r is saved for backward)
//
// Backward, with g = w ⊙ dout:   dw += dout ⊙ x · r
//                                dx += r · g − x · r³ · (g · x) / C

export const RMS_EPS = 1e-5;

export function rmsnormForward(out: Float32Array, rstd: Float32Array, inp: Float32Array, weight: Float32Array, BT: number, C: number, kernels?: MatmulKernels): void {
  if (kernels?.rows !== undefined) {
    kernels.rows.rmsnormForward(out, rstd, inp, weight, BT, C);
    return;
  }
  for (let bt = 0; bt < BT; bt++) {
    const x = bt * C;
    let ss = 0;
    for (let i = 0; i < C; i++) ss += inp[x + i]! * inp[x + i]!;
    const r = Math.fround(1 / Math.sqrt(Math.fround(ss / C) + RMS_EPS));
    rstd[bt] = r;
    for (let i = 0; i < C; i++) out[x + i] = Math.fround(inp[x + i]! * r) * weight[i]!;
  }
}

export function rmsnormBackward(dinp: Float32Array, dweight: Float32Array, dout: Float32Array, inp: Float32Array, weight: Float32Array, rstd: Float32Array, BT: number, C: number, kernels?: MatmulKernels): void {
  if (kernels?.rows !== undefined) {
    kernels.rows.rmsnormBackward(dinp, dweight, dout, inp, weight, rstd, BT, C);
    return;
  }
  for (let bt = 0; bt < BT; bt++) {
    const x = bt * C;
    const r = rstd[bt]!;
    let gx = 0; // Σ_i w_i dout_i x_i
    for (let i = 0; i < C; i++) gx += weight[i]! * dout[x + i]! * inp[x + i]!;
    const k = (r * r * r * gx) / C;
    for (let i = 0; i < C; i++) {
      dweight[i] += dout[x + i]! * inp[x + i]! * r;
      dinp[x + i] += r * weight[i]! * dout[x + i]! - k * inp[x + i]!;
    }
  }
}

// ----------------------------------------------------------------------------------------------
// RoPE (rotary position embedding), as llama2.c's model.py apply_rotary_emb: within each head,
// the adjacent pair (x[2i], x[2i+1]) at position t is a complex number rotated by the angle
// t · θ_i, θ_i = 10000^(−2i/hs). Applied in place to q (B, T, NH·hs) and k (B, T, KVH·hs).
// Backward rotates the gradient by the opposite angle (a rotation's transpose is its inverse),
// also in place: on entry dx is the gradient w.r.t. the rotated x, on exit w.r.t. the input.

export const ROPE_THETA = 10000;

/** cos and sin of t · θ_i for t < T, i < hs/2: two (T, hs/2) tables, computed in float32 as PyTorch does. */
export function ropeTables(T: number, hs: number): { cos: Float32Array; sin: Float32Array } {
  const half = hs / 2;
  const cos = new Float32Array(T * half);
  const sin = new Float32Array(T * half);
  for (let i = 0; i < half; i++) {
    const freq = Math.fround(1 / Math.fround(Math.pow(ROPE_THETA, Math.fround((2 * i) / hs))));
    for (let t = 0; t < T; t++) {
      const angle = Math.fround(t * freq);
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

function ropeRotate(x: Float32Array, cos: Float32Array, sin: Float32Array, B: number, T: number, nHeads: number, hs: number, direction: 1 | -1): void {
  const half = hs / 2;
  const width = nHeads * hs;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const row = (b * T + t) * width;
      const f = t * half;
      for (let h = 0; h < nHeads; h++) {
        const head = row + h * hs;
        for (let i = 0; i < half; i++) {
          const c = cos[f + i]!;
          const s = direction * sin[f + i]!;
          const re = x[head + 2 * i]!;
          const im = x[head + 2 * i + 1]!;
          x[head + 2 * i] = re * c - im * s;
          x[head + 2 * i + 1] = re * s + im * c;
        }
      }
    }
  }
}

export function ropeForward(x: Float32Array, cos: Float32Array, sin: Float32Array, B: number, T: number, nHeads: number, hs: number): void {
  ropeRotate(x, cos, sin, B, T, nHeads, hs, 1);
}

export function ropeBackward(dx: Float32Array, cos: Float32Array, sin: Float32Array, B: number, T: number, nHeads: number, hs: number): void {
  ropeRotate(dx, cos, sin, B, T, nHeads, hs, -1);
}

// ----------------------------------------------------------------------------------------------
// Causal self-attention with grouped-query heads. Query head h reads key/value head
// h / (NH / KVH). Per batch row b and head h, with Q (T, hs), K and V (T, hs) that head's slices:
//   S = Q Kᵀ / √hs,   P = softmax over t2 ≤ t of each row (0 above the diagonal)   (saved: att)
//   O = (P ⊙ keep / (1 − p)) V                                  (keep: dropout on the probabilities)
// q (B, T, NH·hs), k and v (B, T, KVH·hs), out (B, T, NH·hs); att[b·NH + h] is the (T, T)
// probability matrix of batch row b, head h (views made once, so that a step creates none).
//
// Backward, with P' = P ⊙ keep / (1 − p):
//   dV += P'ᵀ dO,   dP = (dO Vᵀ) ⊙ keep / (1 − p),   dS = P ⊙ (dP − rowsum(P ⊙ dP)) / √hs
//   dQ += dS K,     dK += dSᵀ Q
//
// The products read the heads where they lie in q, k, v and dout and write out, dq, dk and dv in
// place (MatmulKernels.gemm takes offsets and strides), and cover only the causal part of each
// T × T square, CAUSAL_TILE rows of queries (or keys) at a time: query rows [r0, r0 + R) against
// keys [0, r0 + R) for S, dP, O and dQ; key rows [j0, j0 + R) against queries [j0, T) for dV and
// dK. What is left out is the products' terms with P or dS = 0 above the diagonal and the entries
// of S and dP there, which the softmax and its backward zero; so the results are what the full
// squares give, bit for bit: a term left out is an exact 0, and with j0 a multiple of
// assembly/gemm.ts's runs of 32 terms the others are added in the same runs. dq, dk and dv take
// each head's terms directly, the heads of a group one after another (where they start at 0, as
// the model has them, the same as summing a head apart and adding it). The row-wise softmax and
// its backward stay here.

/** Query (or key) rows of a causal tile: a multiple of 32, gemm.ts's runs (see above). */
const CAUSAL_TILE = 64;

export interface AttentionDims {
  readonly B: number;
  readonly T: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly hs: number;
}

/** Dropout on the attention probabilities: keep flags (T, T) per (b, h) as att, and the drop probability. */
export interface AttentionDropout {
  readonly keep: readonly Uint8Array[];
  readonly p: number;
  readonly rng: Rng;
}

/** Per-head working space (allocated once, in the kernels' memory). */
export interface AttentionScratch {
  readonly s: Float32Array; //  (T, T)   dP, then dS, in backward
  readonly pd: Float32Array; // (T, T)   probabilities after dropout
}

export function allocateAttentionScratch(T: number, alloc: (n: number) => Float32Array): AttentionScratch {
  return { s: alloc(T * T), pd: alloc(T * T) };
}

/** In place over one head's (T, T) scores: row t becomes softmax(scale · s) over t2 ≤ t, 0 after. */
function causalSoftmax(mm: MatmulKernels, P: Float32Array, T: number, scale: number): void {
  if (mm.rows !== undefined) {
    mm.rows.causalSoftmax(P, T, scale);
    return;
  }
  for (let t = 0; t < T; t++) {
    const r = t * T;
    let max = -Infinity;
    for (let t2 = 0; t2 <= t; t2++) {
      const x = P[r + t2]! * scale;
      if (x > max) max = x;
    }
    let sum = 0;
    for (let t2 = 0; t2 <= t; t2++) {
      const e = Math.exp(P[r + t2]! * scale - max);
      P[r + t2] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let t2 = 0; t2 <= t; t2++) P[r + t2] = P[r + t2]! * inv;
    P.fill(0, r + t + 1, r + T);
  }
}

/** Draws one head's keep flags and returns pd = P ⊙ keep / (1 − p) (forward). */
function dropProbabilities(P: Float32Array, pd: Float32Array, keep: Uint8Array, dropout: AttentionDropout, T: number): Float32Array {
  const { p, rng } = dropout;
  const keepScale = 1 / (1 - p);
  for (let i = 0; i < T * T; i++) {
    const kf = rng.nextFloat() >= p ? 1 : 0;
    keep[i] = kf;
    pd[i] = kf === 1 ? P[i]! * keepScale : 0;
  }
  return pd;
}

/** pd = P ⊙ keep / (1 − p) with the flags drawn in the forward pass (backward). */
function keptProbabilities(P: Float32Array, pd: Float32Array, keep: Uint8Array, p: number, T: number): Float32Array {
  const keepScale = 1 / (1 - p);
  for (let i = 0; i < T * T; i++) pd[i] = keep[i] === 1 ? P[i]! * keepScale : 0;
  return pd;
}

/** In place over s = dP' of one head: dS = P ⊙ (dP − rowsum(P ⊙ dP)) / √hs, causal part only, 0 after. */
function softmaxBackward(mm: MatmulKernels, P: Float32Array, s: Float32Array, keep: Uint8Array | undefined, p: number, T: number, scale: number): void {
  if (keep === undefined && mm.rows !== undefined) {
    mm.rows.softmaxBackward(P, s, T, scale);
    return;
  }
  const keepScale = 1 / (1 - p);
  for (let t = 0; t < T; t++) {
    const r = t * T;
    let dot = 0;
    for (let t2 = 0; t2 <= t; t2++) {
      let g = s[r + t2]!;
      if (keep !== undefined) g = keep[r + t2] === 1 ? g * keepScale : 0;
      s[r + t2] = g;
      dot += P[r + t2]! * g;
    }
    for (let t2 = 0; t2 <= t; t2++) s[r + t2] = P[r + t2]! * (s[r + t2]! - dot) * scale;
    s.fill(0, r + t + 1, r + T);
  }
}

/**
 * Works on the (batch row, kv head) pairs [pair0, pair1) of the B·KVH pairs (default: all), so that
 * threads can share the work; the pairs write disjoint parts of every output.
 */
export function attentionForward(mm: MatmulKernels, out: Float32Array, att: readonly Float32Array[], q: Float32Array, k: Float32Array, v: Float32Array, d: AttentionDims, sc: AttentionScratch, dropout?: AttentionDropout, pair0 = 0, pair1 = d.B * d.nKvHeads): void {
  const { T, nHeads, nKvHeads, hs } = d;
  const C = nHeads * hs;
  const kvd = nKvHeads * hs;
  const group = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(hs);
  for (let pair = pair0; pair < pair1; pair++) {
    const b = Math.floor(pair / nKvHeads);
    const kvh = pair % nKvHeads;
    const kvOff = b * T * kvd + kvh * hs; // K and V (t, i) at k[kvOff + t·kvd + i]
    for (let h = kvh * group; h < (kvh + 1) * group; h++) {
      const qOff = b * T * C + h * hs; //    Q and out (t, i) at q[qOff + t·C + i]
      const P = att[b * nHeads + h]!;
      // raw scores Q Kᵀ: rows [r0, r0 + R) against keys [0, r0 + R)
      for (let r0 = 0; r0 < T; r0 += CAUSAL_TILE) {
        const R = Math.min(CAUSAL_TILE, T - r0);
        mm.gemm(P, r0 * T, T, q, qOff + r0 * C, C, 1, k, kvOff, kvd, false, hs, false, R, r0 + R);
      }
      causalSoftmax(mm, P, T, scale);
      const Pv = dropout === undefined ? P : dropProbabilities(P, sc.pd, dropout.keep[b * nHeads + h]!, dropout, T);
      // out = P' V: rows [r0, r0 + R) over keys [0, r0 + R)
      for (let r0 = 0; r0 < T; r0 += CAUSAL_TILE) {
        const R = Math.min(CAUSAL_TILE, T - r0);
        mm.gemm(out, qOff + r0 * C, C, Pv, r0 * T, T, 1, v, kvOff, kvd, true, r0 + R, false, R, hs);
      }
    }
  }
}

/** Pairs [pair0, pair1) as attentionForward. */
export function attentionBackward(mm: MatmulKernels, dq: Float32Array, dk: Float32Array, dv: Float32Array, dout: Float32Array, att: readonly Float32Array[], q: Float32Array, k: Float32Array, v: Float32Array, d: AttentionDims, sc: AttentionScratch, dropout?: Omit<AttentionDropout, 'rng'>, pair0 = 0, pair1 = d.B * d.nKvHeads): void {
  const { T, nHeads, nKvHeads, hs } = d;
  const C = nHeads * hs;
  const kvd = nKvHeads * hs;
  const group = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(hs);
  for (let pair = pair0; pair < pair1; pair++) {
    const b = Math.floor(pair / nKvHeads);
    const kvh = pair % nKvHeads;
    const kvOff = b * T * kvd + kvh * hs;
    for (let h = kvh * group; h < (kvh + 1) * group; h++) {
      const qOff = b * T * C + h * hs;
      const P = att[b * nHeads + h]!;
      const keep = dropout?.keep[b * nHeads + h];
      const Pv = keep === undefined ? P : keptProbabilities(P, sc.pd, keep, dropout!.p, T);
      sc.s.fill(0);
      for (let r0 = 0; r0 < T; r0 += CAUSAL_TILE) {
        const R = Math.min(CAUSAL_TILE, T - r0);
        // dP' rows [r0, r0 + R) += dO Vᵀ over keys [0, r0 + R)
        mm.gemm(sc.s, r0 * T, T, dout, qOff + r0 * C, C, 1, v, kvOff, kvd, false, hs, true, R, r0 + R);
        // dV rows [r0, r0 + R) += P'ᵀ dO over queries [r0, T)
        mm.gemm(dv, kvOff + r0 * kvd, kvd, Pv, r0 * T + r0, 1, T, dout, qOff + r0 * C, C, true, T - r0, true, R, hs);
      }
      softmaxBackward(mm, P, sc.s, keep, dropout?.p ?? 0, T, scale);
      for (let r0 = 0; r0 < T; r0 += CAUSAL_TILE) {
        const R = Math.min(CAUSAL_TILE, T - r0);
        // dQ rows [r0, r0 + R) += dS K over keys [0, r0 + R)
        mm.gemm(dq, qOff + r0 * C, C, sc.s, r0 * T, T, 1, k, kvOff, kvd, true, r0 + R, true, R, hs);
        // dK rows [r0, r0 + R) += dSᵀ Q over queries [r0, T)
        mm.gemm(dk, kvOff + r0 * kvd, kvd, sc.s, r0 * T + r0, 1, T, q, qOff + r0 * C, C, true, T - r0, true, R, hs);
      }
    }
  }
}
// ----------------------------------------------------------------------------------------------
// SwiGLU gate: out = silu(a) ⊙ b, silu(a) = a · σ(a)   (a = w1 x, b = w3 x)
// Backward: db += dout · silu(a);  da += dout · b · σ(a) · (1 + a · (1 − σ(a)))

/** Elements [from, N). */
export function swigluForward(out: Float32Array, a: Float32Array, b: Float32Array, N: number, from = 0, kernels?: MatmulKernels): void {
  if (kernels?.rows !== undefined) {
    kernels.rows.swigluForward(out, a, b, from, N);
    return;
  }
  for (let i = from; i < N; i++) {
    const x = a[i]!;
    out[i] = Math.fround(x / (1 + Math.exp(-x))) * b[i]!;
  }
}

/** Elements [from, N). */
export function swigluBackward(da: Float32Array, db: Float32Array, dout: Float32Array, a: Float32Array, b: Float32Array, N: number, from = 0, kernels?: MatmulKernels): void {
  if (kernels?.rows !== undefined) {
    kernels.rows.swigluBackward(da, db, dout, a, b, from, N);
    return;
  }
  for (let i = from; i < N; i++) {
    const x = a[i]!;
    const sig = 1 / (1 + Math.exp(-x));
    const g = dout[i]!;
    db[i] += g * x * sig;
    da[i] += g * b[i]! * sig * (1 + x * (1 - sig));
  }
}

// ----------------------------------------------------------------------------------------------
// Residual connection: out = a + b.  Backward: da = db = dout — which needs no code of its own:
// the model keeps one gradient buffer for the residual stream (model.ts: dres), gives the branch a
// copy of it as its output gradient, and the branch's backward pass adds its input gradient into
// dres.

export function residualForward(out: Float32Array, a: Float32Array, b: Float32Array, N: number): void {
  for (let i = 0; i < N; i++) out[i] = a[i]! + b[i]!;
}

// ----------------------------------------------------------------------------------------------
// Dropout (inverted): each value is kept with probability 1 − p and scaled by 1 / (1 − p).
// Forward and backward both work in place; the keep flags are saved between them.

export function dropoutForward(x: Float32Array, keep: Uint8Array, p: number, rng: Rng, N: number): void {
  const s = 1 / (1 - p);
  for (let i = 0; i < N; i++) {
    const k = rng.nextFloat() >= p ? 1 : 0;
    keep[i] = k;
    x[i] = k === 1 ? x[i]! * s : 0;
  }
}

export function dropoutBackward(dx: Float32Array, keep: Uint8Array, p: number, N: number): void {
  const s = 1 / (1 - p);
  for (let i = 0; i < N; i++) dx[i] = keep[i] === 1 ? dx[i]! * s : 0;
}

// ----------------------------------------------------------------------------------------------
// Cross-entropy over the vocabulary with the softmax fused in. Targets −1 are ignored; the loss
// is the mean over the other positions (F.cross_entropy(..., ignore_index=-1)).
// Forward turns logits (BT, V) into probabilities in place and returns the summed loss and the
// number of counted positions. Backward overwrites the probabilities with dlogits:
//   dlogits[bt, j] = (p[bt, j] − [j = y_bt]) · dloss / count      (0 for ignored rows)

/**
 * Rows [row0, row1) (default all); result[slot], result[slot + 1] receive the summed loss and the
 * counted positions. With a softmax kernel the exponentials are its own; the loss then comes from
 * the probability of the largest logit, which never underflows:
 *   −log p_y = log Σ exp(z − max) + max − z_y = (max − z_y) − log p_argmax
 */
export function crossEntropyForward(probs: Float32Array, targets: Int32Array, BT: number, V: number, result: Float64Array, slot = 0, row0 = 0, row1 = BT, kernels?: MatmulKernels): void {
  let sum = 0;
  let count = 0;
  for (let bt = row0; bt < row1; bt++) {
    const o = bt * V;
    let max = -Infinity;
    let argmax = 0;
    if (kernels?.rows !== undefined) {
      argmax = kernels.rows.argmax(probs, o, V);
      max = probs[o + argmax]!;
    } else {
      for (let j = 0; j < V; j++) {
        if (probs[o + j]! > max) {
          max = probs[o + j]!;
          argmax = j;
        }
      }
    }
    const y = targets[bt]!;
    const logitY = y >= 0 ? probs[o + y]! : 0;
    if (kernels?.rows !== undefined) {
      kernels.rows.softmax(probs, o, V);
      if (y >= 0) {
        sum += max - logitY - Math.log(probs[o + argmax]!);
        count++;
      }
      continue;
    }
    let z = 0;
    for (let j = 0; j < V; j++) {
      const e = Math.exp(probs[o + j]! - max);
      probs[o + j] = e;
      z += e;
    }
    if (y >= 0) {
      sum += Math.log(z) + max - logitY; // −log softmax(logits)[y], from the logits
      count++;
    }
    const inv = 1 / z;
    for (let j = 0; j < V; j++) probs[o + j] = probs[o + j]! * inv;
  }
  result[slot] = sum;
  result[slot + 1] = count;
}

/** Rows [row0, row1) (default all). */
export function crossEntropySoftmaxBackward(dlogits: Float32Array, probs: Float32Array, targets: Int32Array, dloss: number, count: number, BT: number, V: number, row0 = 0, row1 = BT, kernels?: MatmulKernels): void {
  const s = count > 0 ? dloss / count : 0;
  for (let bt = row0; bt < row1; bt++) {
    const o = bt * V;
    const y = targets[bt]!;
    if (y < 0) {
      dlogits.fill(0, o, o + V);
      continue;
    }
    if (dlogits === probs && kernels?.rows !== undefined) {
      kernels.rows.crossEntropyBackwardRow(probs, o, V, y, s);
      continue;
    }
    const py = probs[o + y]!; // read first: dlogits may be the probs buffer itself
    for (let j = 0; j < V; j++) dlogits[o + j] = probs[o + j]! * s;
    dlogits[o + y] = (py - 1) * s;
  }
}
