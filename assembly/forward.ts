// The whole forward pass of one token in one call — run.c's forward(), built from the kernels of
// kernels.ts and calling them in exactly the order src/infer/forward.ts does, so the logits are
// bit-identical to the kernel-by-kernel path. For small models (stories260K: 64-wide layers) the
// time of a token is mostly the cost of ~60 JavaScript → WebAssembly calls and their argument
// checks; here it is one call. Single-threaded: a model large enough to gain from the worker threads
// goes kernel by kernel instead (src/kernels/threads.ts decides).
//
// `plan` is a table of int32 fields laid out by src/kernels/wasm.ts (fuseForward): the shape, the
// addresses of the activation buffers, of every weight tensor and of the caches, and a RoPE table
// of (cos, sin) for every position. The layout constants below and PLAN in wasm.ts must agree. A
// plan may cover a range of layers only (a model spread over several memories runs one plan per
// memory): without the embedding (EMB 0) it starts from x as it is, without the final norm
// (RMS_FINAL 0) it stops after its last layer.

import { add, attentionHeads, matmul as matmulF32, matmulQ8Rows, quantize, rmsnorm, ropeTable, swiglu } from './kernels';

// header fields
const DIM = 0, HIDDEN = 1, LAYERS = 2, HEADS = 3, KV_HEADS = 4, HEAD_SIZE = 5, KV_DIM = 6, SEQ_LEN = 7, VOCAB = 8;
const GROUP = 9; // Q8_0 group size, 0 for float32 weights
const X = 10, XB = 11, XB2 = 12, HB = 13, HB2 = 14, Q = 15, ATT = 16, LOGITS = 17, XQ = 18, XS = 19, ROPE = 20;
const EMB = 21, EMB_S = 22, RMS_FINAL = 23, WCLS = 24, WCLS_S = 25;
const STREAMED = 26; // Q8_0: 1 when the weights stream from memory (see matmulQ8Rows)
const NORM_EPS = 28; // RMSNorm's ε as a float64 (fields 28 and 29)
// per layer, from LAYER0 in steps of LAYER_FIELDS: (matrices: int8 values then scales; float32: scales 0)
const RMS_ATT = 0, WQ = 1, WK = 3, WV = 5, WO = 7, RMS_FFN = 9, W1 = 10, W2 = 12, W3 = 14, KEY_CACHE = 16, VALUE_CACHE = 17;
const LAYER0 = 32, LAYER_FIELDS = 18;

// @ts-ignore: decorator
@inline function field(p: usize, i: i32): i32 {
  return load<i32>(p + (<usize>i << 2));
}

// @ts-ignore: decorator
@inline function addr(p: usize, i: i32): usize {
  return <usize>load<u32>(p + (<usize>i << 2));
}

/**
 * xout (d) = W (d, n) · x (n). float32 weights: kernels.ts's matmul (as the kernel-by-kernel path). Q8_0: x is quantized first unless
 * `quantized` says xq/xs already hold this x (q, k, v share one input, and so do w1 and w3).
 */
// @ts-ignore: decorator
@inline function matmul(p: usize, xout: usize, x: usize, w: usize, ws: usize, n: i32, d: i32, quantized: bool): void {
  const gs = field(p, GROUP);
  if (gs == 0) {
    matmulF32(xout, x, w, n, d);
  } else {
    if (!quantized) quantize(addr(p, XQ), addr(p, XS), x, n, gs);
    matmulQ8Rows(xout, addr(p, XQ), addr(p, XS), w, ws, n, field(p, STREAMED), gs, 0, d);
  }
}

/**
 * Runs token `token` at position `pos`; the logits are left in the plan's logits buffer, unless
 * `logits` is 0 (a prompt token whose logits nobody reads: the KV cache is all it leaves).
 */
export function forward(p: usize, token: i32, pos: i32, logits: i32): void {
  const dim = field(p, DIM), hidden = field(p, HIDDEN), kvDim = field(p, KV_DIM), headSize = field(p, HEAD_SIZE);
  const nHeads = field(p, HEADS), nKvHeads = field(p, KV_HEADS), seqLen = field(p, SEQ_LEN);
  const x = addr(p, X), xb = addr(p, XB), xb2 = addr(p, XB2), hb = addr(p, HB), hb2 = addr(p, HB2);
  const q = addr(p, Q), att = addr(p, ATT);
  const gs = field(p, GROUP);
  const eps = load<f64>(p + (<usize>NORM_EPS << 2));
  const rope = addr(p, ROPE) + ((<usize>pos * <usize>headSize) << 2);
  const kvRow = (<usize>pos * <usize>kvDim) << 2;

  // the token's embedding row into the residual stream (a plan without the embedding — a later
  // range of layers of a model spread over several memories — starts from x as the caller left it)
  const row = <usize>token * <usize>dim;
  if (addr(p, EMB) == 0) {
    // x holds the input already
  } else if (gs == 0) {
    memory.copy(x, addr(p, EMB) + (row << 2), <usize>dim << 2);
  } else {
    const eq = addr(p, EMB), es = addr(p, EMB_S);
    for (let i = 0; i < dim; i++) {
      const at = row + <usize>i;
      store<f32>(x + (<usize>i << 2), <f32>load<i8>(eq + at) * load<f32>(es + ((at / <usize>gs) << 2)));
    }
  }

  const layers = field(p, LAYERS);
  for (let l = 0; l < layers; l++) {
    const L = p + ((<usize>(LAYER0 + l * LAYER_FIELDS)) << 2);
    // k and v are computed straight into row pos of this layer's caches
    const kc = addr(L, KEY_CACHE), vc = addr(L, VALUE_CACHE);
    const k = kc + kvRow, v = vc + kvRow;
    rmsnorm(xb, x, addr(L, RMS_ATT), dim, eps);
    matmul(p, q, xb, addr(L, WQ), addr(L, WQ + 1), dim, dim, false);
    matmul(p, k, xb, addr(L, WK), addr(L, WK + 1), dim, kvDim, true);
    matmul(p, v, xb, addr(L, WV), addr(L, WV + 1), dim, kvDim, true);
    ropeTable(q, k, rope, dim, kvDim, headSize);
    attentionHeads(xb, q, kc, vc, att, pos, nHeads, nKvHeads, headSize, kvDim, seqLen, 0, nHeads);
    matmul(p, xb2, xb, addr(L, WO), addr(L, WO + 1), dim, dim, false);
    add(x, xb2, dim);

    rmsnorm(xb, x, addr(L, RMS_FFN), dim, eps);
    matmul(p, hb, xb, addr(L, W1), addr(L, W1 + 1), dim, hidden, false);
    matmul(p, hb2, xb, addr(L, W3), addr(L, W3 + 1), dim, hidden, true);
    swiglu(hb, hb2, hidden);
    matmul(p, xb, hb, addr(L, W2), addr(L, W2 + 1), hidden, dim, false);
    add(x, xb, dim);
  }

  // (a plan without the final norm — not the last range of layers — ends here)
  if (logits == 0 || addr(p, RMS_FINAL) == 0) return;
  rmsnorm(x, x, addr(p, RMS_FINAL), dim, eps);
  matmul(p, addr(p, LOGITS), x, addr(p, WCLS), addr(p, WCLS_S), dim, field(p, VOCAB), false);
}
