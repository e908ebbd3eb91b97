// Batched kernels for training: the matrix-matrix products of a linear layer over a whole batch of
// B·T positions (llm.c's matmul_forward / matmul_backward, without bias: Llama has none). Shared by
// the reference (train-js.ts), WebAssembly (wasm.ts) and threaded (threads.ts) implementations.
// All arrays are row-major; Float32Arrays must come from the kernel set's own `allocate`.

export interface TrainKernels {
  /** out (BT, OC) = inp (BT, C) · wᵀ, with w (OC, C): out[b, o] = Σ_c inp[b, c] · w[o, c]. Overwrites out. */
  matmulForward(out: Float32Array, inp: Float32Array, w: Float32Array, BT: number, C: number, OC: number): void;
  /**
   * The gradients of matmulForward, ACCUMULATED (+=) like llm.c, so zeroing is the caller's step:
   *   dinp (BT, C)  += dout (BT, OC) · w        dinp[b, c] += Σ_o dout[b, o] · w[o, c]
   *   dw   (OC, C)  += doutᵀ · inp (BT, C)      dw[o, c]   += Σ_b dout[b, o] · inp[b, c]
   */
  matmulBackward(dinp: Float32Array, dw: Float32Array, dout: Float32Array, inp: Float32Array, w: Float32Array, BT: number, C: number, OC: number): void;
  /**
   * matmulForward of one input into several products at once — the same results as one call per
   * product, in one hand-off to the threads (batched prefill: Q, K and V; W1 and W3). Optional:
   * where it is missing, the caller makes one call per product.
   */
  matmulForwardMany?(inp: Float32Array, BT: number, C: number, products: readonly ForwardProduct[]): void;
}

/** One product of matmulForwardMany: out (BT, OC) = inp · wᵀ. */
export interface ForwardProduct {
  readonly out: Float32Array;
  readonly w: Float32Array;
  readonly OC: number;
}
