// The reference int8 (Q8_0) kernels in plain TypeScript: the definition the WebAssembly version is
// tested against, bit for bit. Math.fround after each float operation makes the float64 arithmetic
// of JavaScript round exactly like float32 arithmetic.

import type { Q8Kernels } from './q8-types.js';

/** Rounds to the nearest integer, ties to even (WebAssembly's `nearest`, torch.round). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export function quantize(xq: Int8Array, xs: Float32Array, x: Float32Array, n: number, groupSize: number): void {
  for (let start = 0, g = 0; start < n; start += groupSize, g++) {
    const end = Math.min(start + groupSize, n);
    let wmax = 0;
    for (let i = start; i < end; i++) wmax = Math.max(wmax, Math.abs(x[i]!));
    const scale = Math.fround(wmax / 127);
    xs[g] = scale;
    for (let i = start; i < end; i++) xq[i] = scale === 0 ? 0 : roundHalfEven(Math.fround(x[i]! / scale));
  }
}

export function matmulQ8(
  xout: Float32Array, xq: Int8Array, xs: Float32Array, wq: Int8Array, ws: Float32Array,
  n: number, d: number, groupSize: number,
): void {
  for (let r = 0; r < d; r++) {
    const rowStart = r * n;
    let wg = Math.floor(rowStart / groupSize); // weight group of the segment, over the flattened tensor
    let wEnd = (wg + 1) * groupSize - rowStart; // where it ends, in row coordinates
    let xg = 0; // activation group
    let xEnd = groupSize;
    let val = 0;
    for (let j = 0; j < n;) {
      const end = Math.min(wEnd, xEnd, n);
      let isum = 0;
      for (let k = j; k < end; k++) isum += wq[rowStart + k]! * xq[k]!;
      val = Math.fround(val + Math.fround(Math.fround(isum * ws[wg]!) * xs[xg]!));
      if (end === wEnd) { wg++; wEnd += groupSize; }
      if (end === xEnd) { xg++; xEnd += groupSize; }
      j = end;
    }
    xout[r] = val;
  }
}

export function matmulQ8Forward(
  out: Float32Array, xq: Int8Array, xs: Float32Array, wq: Int8Array, ws: Float32Array, M: number, n: number, d: number, groupSize: number,
): void {
  const xsRow = Math.ceil(n / groupSize);
  for (let m = 0; m < M; m++) {
    matmulQ8(out.subarray(m * d, (m + 1) * d), xq.subarray(m * n, (m + 1) * n), xs.subarray(m * xsRow, (m + 1) * xsRow), wq, ws, n, d, groupSize);
  }
}

/** out[0..count) = the dequantized values first..first+count of a Q8_0 tensor (e.g. one embedding row). */
export function dequantize(out: Float32Array, q: Int8Array, s: Float32Array, first: number, count: number, groupSize: number): void {
  for (let i = 0; i < count; i++) out[i] = q[first + i]! * s[Math.floor((first + i) / groupSize)]!;
}

export const jsQ8Kernels: Q8Kernels = {
  allocateInt8: (count) => new Int8Array(count),
  quantize,
  matmulQ8,
  matmulQ8Forward,
};
