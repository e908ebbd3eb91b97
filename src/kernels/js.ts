// The reference kernels in plain TypeScript: the definition of what every kernel computes. The
// WebAssembly kernels are tested against these. Sums accumulate in float64 (JavaScript numbers);
// results are stored as float32.

import type { AttentionShape, Kernels } from './types.js';

export function matmul(xout: Float32Array, x: Float32Array, w: Float32Array, n: number, d: number): void {
  for (let i = 0; i < d; i++) {
    let val = 0;
    const row = i * n;
    for (let j = 0; j < n; j++) val += w[row + j]! * x[j]!;
    xout[i] = val;
  }
}

export function matmulMany(xout: Float32Array, x: Float32Array, w: Float32Array, n: number, d: number, count: number): void {
  for (let v = 0; v < count; v++) matmul(xout.subarray(v * d, (v + 1) * d), x.subarray(v * n, (v + 1) * n), w, n, d);
}

export function rmsnorm(o: Float32Array, x: Float32Array, weight: Float32Array, size: number, eps = 1e-5): void {
  let ss = 0;
  for (let j = 0; j < size; j++) ss += x[j]! * x[j]!;
  const scale = 1 / Math.sqrt(ss / size + eps);
  for (let j = 0; j < size; j++) o[j] = weight[j]! * (scale * x[j]!);
}

export function softmax(x: Float32Array, size: number): void {
  softmaxAt(x, 0, size);
}

/** Softmax of x[offset .. offset+size), in place. */
function softmaxAt(x: Float32Array, offset: number, size: number): void {
  const end = offset + size;
  let max = x[offset]!;
  for (let i = offset + 1; i < end; i++) if (x[i]! > max) max = x[i]!;
  let sum = 0;
  for (let i = offset; i < end; i++) {
    const e = Math.exp(x[i]! - max);
    x[i] = e;
    sum += e;
  }
  for (let i = offset; i < end; i++) x[i] = x[i]! / sum;
}

export function rope(q: Float32Array, k: Float32Array, pos: number, dim: number, kvDim: number, headSize: number, theta = 10000): void {
  for (let i = 0; i < dim; i += 2) {
    const freq = 1 / Math.pow(theta, (i % headSize) / headSize);
    const angle = pos * freq;
    const fcr = Math.cos(angle);
    const fci = Math.sin(angle);
    const q0 = q[i]!, q1 = q[i + 1]!;
    q[i] = q0 * fcr - q1 * fci;
    q[i + 1] = q0 * fci + q1 * fcr;
    if (i < kvDim) {
      const k0 = k[i]!, k1 = k[i + 1]!;
      k[i] = k0 * fcr - k1 * fci;
      k[i + 1] = k0 * fci + k1 * fcr;
    }
  }
}

export function attention(
  out: Float32Array, q: Float32Array, keyCache: Float32Array, valueCache: Float32Array, att: Float32Array,
  pos: number, s: AttentionShape,
): void {
  const { nHeads, headSize, kvDim, seqLen } = s;
  const kvMul = nHeads / s.nKvHeads; // query heads per key/value head
  const scale = 1 / Math.sqrt(headSize);
  for (let h = 0; h < nHeads; h++) {
    const qo = h * headSize;
    const kvo = Math.floor(h / kvMul) * headSize;
    const ao = h * seqLen;
    for (let t = 0; t <= pos; t++) {
      let score = 0;
      const ko = t * kvDim + kvo;
      for (let i = 0; i < headSize; i++) score += q[qo + i]! * keyCache[ko + i]!;
      att[ao + t] = score * scale;
    }
    softmaxAt(att, ao, pos + 1);
    for (let i = 0; i < headSize; i++) out[qo + i] = 0;
    for (let t = 0; t <= pos; t++) {
      const a = att[ao + t]!;
      const vo = t * kvDim + kvo;
      for (let i = 0; i < headSize; i++) out[qo + i] = out[qo + i]! + a * valueCache[vo + i]!;
    }
  }
}

export function attentionBlock(
  out: Float32Array, q: Float32Array, keyCache: Float32Array, valueCache: Float32Array, att: Float32Array,
  pos: number, count: number, s: AttentionShape, _exact?: boolean,
): void {
  const dim = s.nHeads * s.headSize;
  for (let i = 0; i < count; i++) {
    attention(out.subarray(i * dim, (i + 1) * dim), q.subarray(i * dim, (i + 1) * dim), keyCache, valueCache, att, pos + i, s);
  }
}

/** −log softmax(logits)[target], via log-sum-exp in float64. */
export function crossEntropy(logits: Float32Array, n: number, target: number): number {
  let max = logits[0]!;
  for (let i = 1; i < n; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[i]! - max);
  return Math.log(sum) + max - logits[target]!;
}

export function swiglu(hb: Float32Array, hb2: Float32Array, size: number): void {
  for (let i = 0; i < size; i++) {
    const v = hb[i]!;
    hb[i] = (v / (1 + Math.exp(-v))) * hb2[i]!;
  }
}

export function add(x: Float32Array, y: Float32Array, size: number): void {
  for (let i = 0; i < size; i++) x[i] = x[i]! + y[i]!;
}

/** The reference kernel set. */
export const jsKernels: Kernels = {
  name: 'js',
  allocate: (floats) => new Float32Array(floats),
  matmul, matmulMany, rmsnorm, softmax, rope, attention, attentionBlock, crossEntropy, swiglu, add,
};
