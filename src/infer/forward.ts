// The Llama 2 forward pass for one token at a time, with a key/value cache — run.c's forward().
//
// For token t at position pos, with x the residual stream (dim):
//   for each layer l:
//     xb  = rmsnorm(x) ⊙ rmsAtt[l]
//     q, k, v = Wq xb, Wk xb, Wv xb              (k and v are kvDim wide: grouped-query heads)
//     rotate q and k by RoPE at pos; store k, v in row pos of this layer's cache
//     xb  = attention of q over cache rows 0..pos   (causal)
//     x  += Wo xb
//     xb  = rmsnorm(x) ⊙ rmsFfn[l]
//     x  += W2 (silu(W1 xb) ⊙ W3 xb)              (SwiGLU)
//   logits = Wcls rmsnorm(x) ⊙ rmsFinal
//
// All buffers (the RunState) and all per-layer weight views are made once, when the model is
// loaded; forward() allocates nothing.

import { dequantizeWeights, readCheckpoint } from '../model/checkpoint.js';
import { type ModelConfig, headSize, kvDim } from '../model/config.js';
import { type TransformerWeights, parameterCount } from '../model/weights.js';
import { jsKernels } from '../kernels/js.js';
import type { AttentionShape, Kernels } from '../kernels/types.js';

/** One layer's weights and caches, as views made once. */
interface LayerViews {
  readonly rmsAtt: Float32Array; //     (dim)
  readonly wq: Float32Array; //         (dim, dim)
  readonly wk: Float32Array; //         (kvDim, dim)
  readonly wv: Float32Array; //         (kvDim, dim)
  readonly wo: Float32Array; //         (dim, dim)
  readonly rmsFfn: Float32Array; //     (dim)
  readonly w1: Float32Array; //         (hidden, dim)
  readonly w2: Float32Array; //         (dim, hidden)
  readonly w3: Float32Array; //         (hidden, dim)
  readonly keyCache: Float32Array; //   (seqLen, kvDim)
  readonly valueCache: Float32Array; // (seqLen, kvDim)
}

/** Every activation buffer of the forward pass. */
export interface RunState {
  readonly x: Float32Array; //      (dim) the residual stream
  readonly xb: Float32Array; //     (dim) normalised input of a block / attention output
  readonly xb2: Float32Array; //    (dim) output of a block before the residual add
  readonly hb: Float32Array; //     (hidden) W1 xb, then the SwiGLU gate
  readonly hb2: Float32Array; //    (hidden) W3 xb
  readonly q: Float32Array; //      (dim) query
  readonly k: Float32Array; //      (kvDim) key of this position (copied into the cache)
  readonly v: Float32Array; //      (kvDim) value of this position (copied into the cache)
  readonly att: Float32Array; //    (nHeads, seqLen) attention scores
  readonly logits: Float32Array; // (vocab)
  readonly keyCache: Float32Array; //   (layer, seqLen, kvDim)
  readonly valueCache: Float32Array; // (layer, seqLen, kvDim)
}

export class Transformer {
  readonly config: ModelConfig;
  readonly state: RunState;
  private readonly layers: LayerViews[];
  private readonly shape: AttentionShape;

  constructor(readonly weights: TransformerWeights, readonly kernels: Kernels = jsKernels) {
    const c = weights.config;
    this.config = c;
    const kv = kvDim(c);
    const alloc = (n: number) => kernels.allocate(n);
    this.state = {
      x: alloc(c.dim), xb: alloc(c.dim), xb2: alloc(c.dim), hb: alloc(c.hiddenDim), hb2: alloc(c.hiddenDim),
      q: alloc(c.dim), k: alloc(kv), v: alloc(kv), att: alloc(c.nHeads * c.seqLen), logits: alloc(c.vocabSize),
      keyCache: alloc(c.nLayers * c.seqLen * kv), valueCache: alloc(c.nLayers * c.seqLen * kv),
    };
    const slice = (a: Float32Array, l: number) => {
      const per = a.length / c.nLayers;
      return a.subarray(l * per, (l + 1) * per);
    };
    this.layers = Array.from({ length: c.nLayers }, (_, l) => ({
      rmsAtt: slice(weights.rmsAtt, l), wq: slice(weights.wq, l), wk: slice(weights.wk, l), wv: slice(weights.wv, l),
      wo: slice(weights.wo, l), rmsFfn: slice(weights.rmsFfn, l),
      w1: slice(weights.w1, l), w2: slice(weights.w2, l), w3: slice(weights.w3, l),
      keyCache: slice(this.state.keyCache, l), valueCache: slice(this.state.valueCache, l),
    }));
    this.shape = { nHeads: c.nHeads, nKvHeads: c.nKvHeads, headSize: headSize(c), kvDim: kv, seqLen: c.seqLen };
  }

  /** Runs token `token` at position `pos` (0 ≤ pos < seqLen) and returns the logits (vocab). */
  forward(token: number, pos: number): Float32Array {
    const c = this.config;
    const s = this.state;
    const K = this.kernels;
    const { dim, hiddenDim } = c;
    const kv = this.shape.kvDim;
    if (!(pos >= 0 && pos < c.seqLen)) throw new RangeError(`position ${pos} is outside the context window (${c.seqLen})`);
    if (!(token >= 0 && token < c.vocabSize)) throw new RangeError(`token ${token} is outside the vocabulary (${c.vocabSize})`);

    // copy the token's embedding into the residual stream
    const emb = this.weights.tokenEmbedding;
    for (let i = 0, o = token * dim; i < dim; i++) s.x[i] = emb[o + i]!;

    for (const L of this.layers) {
      // attention rmsnorm
      K.rmsnorm(s.xb, s.x, L.rmsAtt, dim);
      // q, k, v for this position
      K.matmul(s.q, s.xb, L.wq, dim, dim);
      K.matmul(s.k, s.xb, L.wk, dim, kv);
      K.matmul(s.v, s.xb, L.wv, dim, kv);
      // RoPE: rotate each (even, odd) pair of q and k by an angle that grows with pos
      K.rope(s.q, s.k, pos, dim, kv, this.shape.headSize);
      // this position's key and value go into row pos of the layer's cache
      L.keyCache.set(s.k, pos * kv);
      L.valueCache.set(s.v, pos * kv);
      // multi-head (grouped-query) attention over positions 0..pos
      K.attention(s.xb, s.q, L.keyCache, L.valueCache, s.att, pos, this.shape);
      // output projection, residual
      K.matmul(s.xb2, s.xb, L.wo, dim, dim);
      K.add(s.x, s.xb2, dim);

      // feed-forward rmsnorm, then W2 (silu(W1 x) ⊙ W3 x), residual
      K.rmsnorm(s.xb, s.x, L.rmsFfn, dim);
      K.matmul(s.hb, s.xb, L.w1, dim, hiddenDim);
      K.matmul(s.hb2, s.xb, L.w3, dim, hiddenDim);
      K.swiglu(s.hb, s.hb2, hiddenDim);
      K.matmul(s.xb, s.hb, L.w2, hiddenDim, dim);
      K.add(s.x, s.xb, dim);
    }

    // final rmsnorm and the classifier
    K.rmsnorm(s.x, s.x, this.weights.rmsFinal, dim);
    K.matmul(s.logits, s.x, this.weights.wcls, dim, c.vocabSize);
    return s.logits;
  }
}

/** Loads a checkpoint (v0, v1 or v2 — v2 is dequantized) straight into the kernels' memory. */
export function loadTransformer(path: string, kernels: Kernels = jsKernels): Transformer {
  const ckpt = readCheckpoint(path, { allocate: (n) => kernels.allocate(n) });
  if (ckpt.format !== 'v2') return new Transformer(ckpt.weights, kernels);
  return new Transformer(dequantizeWeights(ckpt.q8, kernels.allocate(parameterCount(ckpt.config))), kernels);
}
