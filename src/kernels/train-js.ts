// The reference batched matrix products for training, in plain TypeScript (llm.c's loop order).
// matmulForward sums each dot product in float64; matmulBackward adds term by term into the
// float32 gradients, exactly as llm.c's matmul_backward does.

import type { TrainKernels } from './train-types.js';

export function matmulForward(out: Float32Array, inp: Float32Array, w: Float32Array, BT: number, C: number, OC: number): void {
  for (let b = 0; b < BT; b++) {
    const ib = b * C;
    for (let o = 0; o < OC; o++) {
      const wo = o * C;
      let val = 0;
      for (let c = 0; c < C; c++) val += inp[ib + c]! * w[wo + c]!;
      out[b * OC + o] = val;
    }
  }
}

export function matmulBackward(
  dinp: Float32Array, dw: Float32Array, dout: Float32Array, inp: Float32Array, w: Float32Array,
  BT: number, C: number, OC: number,
): void {
  // dinp[b, :] += Σ_o dout[b, o] · w[o, :]
  for (let b = 0; b < BT; b++) {
    const ib = b * C;
    for (let o = 0; o < OC; o++) {
      const d = dout[b * OC + o]!;
      const wo = o * C;
      for (let c = 0; c < C; c++) dinp[ib + c] = dinp[ib + c]! + d * w[wo + c]!;
    }
  }
  // dw[o, :] += Σ_b dout[b, o] · inp[b, :]
  for (let o = 0; o < OC; o++) {
    const wo = o * C;
    for (let b = 0; b < BT; b++) {
      const d = dout[b * OC + o]!;
      const ib = b * C;
      for (let c = 0; c < C; c++) dw[wo + c] = dw[wo + c]! + d * inp[ib + c]!;
    }
  }
}

export const jsTrainKernels: TrainKernels = { matmulForward, matmulBackward };
