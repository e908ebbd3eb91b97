// int8 (Q8_0) kernels: the interface shared by the reference (q8-js.ts), WebAssembly (wasm.ts) and
// threaded (threads.ts) implementations.
//
// Q8_0 stores a tensor as int8 values q and one float32 scale per group of `groupSize` consecutive
// values: value i ≈ q[i] · s[floor(i / groupSize)]. Weight groups run over the FLATTENED tensor (the
// v2 file layout, see src/model/checkpoint.ts), so when the row length n is not a multiple of
// groupSize a group straddles two rows. Activations are quantized per call in groups that start at
// 0 with a shorter last group (ceil(n / groupSize) scales), so no value is ever left out.
//
// matmulQ8 cuts each row into segments over which both the weight scale and the activation scale
// are constant, computes each segment's dot product exactly in integers, and adds it in float32:
//     val = f32(val + f32(f32(f32(isum) · wscale) · xscale))     segment by segment, left to right.
// Every implementation produces bit-identical results.

export interface Q8Kernels {
  /** A zeroed int8 buffer in the kernels' memory number `memory` (default 0; see KernelMemories), 16-byte aligned. */
  allocateInt8(count: number, memory?: number): Int8Array;
  /**
   * Quantizes x (n) into xq (n) and xs (ceil(n / groupSize)): per group scale = max|x| / 127 (float32),
   * q = round-half-even(x / scale) (0 when the scale is 0).
   */
  quantize(xq: Int8Array, xs: Float32Array, x: Float32Array, n: number, groupSize: number): void;
  /**
   * xout (d) = W (d, n) · x (n) with W as Q8_0 (wq: d·n values from the start of a tensor, ws its
   * scales) and x as quantized by `quantize` with the same groupSize. `streamed`: the weights come
   * from memory rather than the caches (a model larger than them) — a hint on how best to read
   * them; the result is the same either way.
   */
  matmulQ8(xout: Float32Array, xq: Int8Array, xs: Float32Array, wq: Int8Array, ws: Float32Array, n: number, d: number, groupSize: number, streamed?: boolean): void;
  /**
   * matmulQ8 for M vectors at once (a prompt's block of tokens): out (M, d), row i = W · x_i, with
   * xq (M, n) the rows as quantized by `quantize` one by one and xs (M, ceil(n / groupSize)) their
   * scales. Bit for bit M calls of matmulQ8; the weights are read once for all M.
   */
  matmulQ8Forward(out: Float32Array, xq: Int8Array, xs: Float32Array, wq: Int8Array, ws: Float32Array, M: number, n: number, d: number, groupSize: number): void;
}
