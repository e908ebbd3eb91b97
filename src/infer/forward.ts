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
// rmsnorm(x) = x / sqrt(mean(x²) + ε) and RoPE's base θ come from the config (llama2.c: 1e-5, 10000;
// Hugging Face models carry their own rms_norm_eps and rope_theta).
//
// The matrices are either float32 or Q8_0 (int8 with a float32 scale per group, from a v2 file
// or quantized at load time). With Q8_0 every matrix-vector product first quantizes its input
// vector in groups (as llama2.c's runq.c does), then multiplies in integers; norms stay float32.
//
// All buffers (the RunState) and all per-layer weight views are made once, when the model is
// loaded; forward() allocates nothing.
//
// The context shift (shift()) lets generation run past seqLen positions: when the cache is full,
// rows keep..keep+drop-1 are dropped and the later rows move down by drop. RoPE stored the key of
// position p as R(p·f_i) k for each pair i (f_i = θ^(-i/headSize)), and R(a) R(b) = R(a+b), so the
// moved key becomes R(-drop·f_i) R(p·f_i) k = R((p-drop)·f_i) k: the key position p - drop would
// have stored. Values carry no position. A query then sees the kept tokens at their new places.

import { LlamaError } from '../errors.js';
import type { Q8Weights, QuantizedTensor } from '../model/checkpoint.js';
import { type ModelConfig, headSize, kvDim, normEps, ropeTheta } from '../model/config.js';
import { type TransformerWeights, parameterCount } from '../model/weights.js';
import { jsKernels } from '../kernels/js.js';
import { jsQ8Kernels } from '../kernels/q8-js.js';
import type { Q8Kernels } from '../kernels/q8-types.js';
import type { AttentionShape, FusedForward, GroupedInput, GroupedMatmul, Kernels } from '../kernels/types.js';
import type { TrainKernels } from '../kernels/train-types.js';
import type { InferenceEngine } from './engine.js';
import { DecodeGroup, type DecodeMember, canDecodeTogether } from './decode-batch.js';
import { BlockForward, type LogitsVisitor, canRunBlocks } from './prefill.js';

/** A weight matrix (out, in): float32, or Q8_0 (groups over the flattened matrix). */
type Matrix = Float32Array | QuantizedTensor;

/**
 * The kernels a model needs: the float32 set, plus the int8 ones for Q8_0 weights, plus (optional)
 * the whole forward pass as one call and products sharing an input grouped into one call.
 */
export type ModelKernels = Kernels & Partial<Q8Kernels> & Partial<FusedForward> & Partial<GroupedMatmul> & Partial<Pick<TrainKernels, 'matmulForward'>>;

/** The plain TypeScript kernels, float32 and int8: the default. */
export const referenceKernels: ModelKernels = { ...jsKernels, ...jsQ8Kernels };

/**
 * The context window a model runs with when none is asked for: its seq_len, at most this. The KV
 * cache holds this many positions (a 4096-context 7B model's cache at full length is 2 GiB).
 */
export const DEFAULT_MAX_CONTEXT = 4096;

export interface TransformerOptions {
  /**
   * Positions the KV cache holds, 1 ≤ contextLength ≤ the model's seq_len (default
   * min(seq_len, DEFAULT_MAX_CONTEXT)). The engine's config reports it as seqLen: generation,
   * chat and the server stop there.
   */
  contextLength?: number;
  /**
   * Use the kernels' fused forward pass when they offer one for this model (default true). false
   * forces the kernel-by-kernel code below (the tests compare the two).
   */
  fused?: boolean;
  /**
   * Q8_0 only: whether the int8 products read the weights as streamed from memory (one row at a
   * time) or as cached (four rows at a time). Default: streamed for models over Q8_CACHED_BYTES.
   * The results are the same.
   */
  streamWeights?: boolean;
}

/** One layer's weights and caches, as views made once. */
interface LayerViews {
  readonly rmsAtt: Float32Array; //     (dim)
  readonly wq: Matrix; //               (dim, dim)
  readonly wk: Matrix; //               (kvDim, dim)
  readonly wv: Matrix; //               (kvDim, dim)
  readonly wo: Matrix; //               (dim, dim)
  readonly rmsFfn: Float32Array; //     (dim)
  readonly w1: Matrix; //               (hidden, dim)
  readonly w2: Matrix; //               (dim, hidden)
  readonly w3: Matrix; //               (hidden, dim)
  readonly keyCache: Float32Array; //   (seqLen, kvDim)
  readonly valueCache: Float32Array; // (seqLen, kvDim)
  /** Wq, Wk, Wv · xb as one kernel call, and W1, W3 · xb, when the kernels group products. */
  readonly qkv: (() => void) | undefined;
  readonly gateUp: (() => void) | undefined;
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
  /** Q8_0 only: the quantized input of a matmul (max(dim, hidden)) and its group scales. */
  readonly xq?: Int8Array;
  readonly xs?: Float32Array;
}

/**
 * The run state as views of ONE allocation, each buffer 64-byte aligned: a session that does not
 * fit in memory takes nothing (the kernels' memory is never freed, so the buffers of a half-made
 * state would be lost for good). With Q8_0 weights (groupSize > 0) the int8 input is a view too.
 */
function allocateRunState(c: ModelConfig, kernels: ModelKernels, groupSize: number): RunState {
  const kv = kvDim(c);
  const widest = Math.max(c.dim, c.hiddenDim);
  const aligned = (floats: number): number => Math.ceil(floats / 16) * 16;
  const sizes = {
    x: c.dim, xb: c.dim, xb2: c.dim, hb: c.hiddenDim, hb2: c.hiddenDim, q: c.dim, k: kv, v: kv,
    att: c.nHeads * c.seqLen, logits: c.vocabSize, keyCache: c.nLayers * c.seqLen * kv, valueCache: c.nLayers * c.seqLen * kv,
    ...(groupSize > 0 ? { xs: Math.ceil(widest / groupSize) } : {}),
  };
  const int8Floats = groupSize > 0 ? aligned(Math.ceil(widest / 4)) : 0;
  let total = int8Floats;
  for (const n of Object.values(sizes)) total += aligned(n);
  const block = kernels.allocate(total);
  let at = int8Floats;
  const views = Object.fromEntries(Object.entries(sizes).map(([name, n]) => {
    const view = block.subarray(at, at + n);
    at += aligned(n);
    return [name, view];
  })) as Record<keyof typeof sizes, Float32Array> & { xs?: Float32Array };
  return groupSize > 0 ? { ...views, xq: new Int8Array(block.buffer, block.byteOffset, widest) } : views;
}

/** Models with fewer weights than this decode session by session (see session()). */
const DECODE_TOGETHER_MIN = 2_000_000;

/**
 * Prompts shorter than this go token by token: a block's products pack every weight matrix, which
 * a couple of rows do not repay.
 */
const PREFILL_MIN_TOKENS = 4;

/**
 * Q8_0 models with more weights than this (one byte each) are taken to stream their weights from
 * memory every token; smaller ones to find them in the caches (the 15M shape, 16 MiB: yes; 42M: no).
 * The int8 products read streamed weights one row at a time, which the hardware prefetcher follows
 * (2× faster from memory), and cached ones four rows at a time (20% faster in cache).
 */
const Q8_CACHED_BYTES = 24 << 20;

export class Transformer implements InferenceEngine {
  /** The model's config, with seqLen the context window this engine runs with (its KV cache). */
  readonly config: ModelConfig;
  readonly state: RunState;
  /** Q8_0 group size, or 0 for float32 weights. */
  readonly groupSize: number;
  /** Q8_0 weights too large to stay in the caches between tokens (see Q8_CACHED_BYTES). */
  private readonly streamed: boolean;
  private readonly layers: LayerViews[];
  private readonly shape: AttentionShape;
  private readonly tokenEmbedding: Matrix;
  private readonly rmsFinal: Float32Array;
  private readonly wcls: Matrix;
  /** RMSNorm's ε and RoPE's θ (the config's, llama2.c's by default). */
  private readonly eps: number;
  private readonly theta: number;
  /** The kernels' whole-token forward pass for this model, when they offer one. */
  private readonly fused: ((token: number, pos: number, logits: boolean) => void) | undefined;
  /** The sessions of this model that decode together (decode-batch.ts), once there are several. */
  private group: DecodeGroup | undefined;
  /** This session as a member of the group: its caches, scratch, logits and prepared token. */
  private readonly member: DecodeMember;
  /** prefill()'s block buffers and products, made on first use. */
  private block: BlockForward | undefined;
  /** shift(): (cos, sin) of the rotation by −drop positions for each pair of a head. */
  private readonly shiftRotation: Float64Array;

  constructor(readonly weights: TransformerWeights | Q8Weights, readonly kernels: ModelKernels = referenceKernels, private readonly options: TransformerOptions = {}) {
    const ctx = contextLengthFor(weights.config, options.contextLength);
    const c: ModelConfig = { ...weights.config, seqLen: ctx };
    this.config = c;
    this.eps = normEps(c);
    this.theta = ropeTheta(c);
    const kv = kvDim(c);
    const q8 = 'groupSize' in weights;
    this.groupSize = q8 ? weights.groupSize : 0;
    this.streamed = q8 && (options.streamWeights ?? parameterCount(c) > Q8_CACHED_BYTES);
    if (q8 && (kernels.quantize === undefined || kernels.matmulQ8 === undefined || kernels.allocateInt8 === undefined)) {
      throw new LlamaError(`the ${kernels.name} kernels have no int8 support for Q8_0 weights`);
    }
    this.state = allocateRunState(c, kernels, this.groupSize);
    const slice = (a: Float32Array, l: number) => {
      const per = a.length / c.nLayers;
      return a.subarray(l * per, (l + 1) * per);
    };
    const matrix = (m: Float32Array | QuantizedTensor[], l: number): Matrix => (m instanceof Float32Array ? slice(m, l) : m[l]!);
    const s = this.state;
    const input: GroupedInput = q8 ? { xq: s.xq!, xs: s.xs!, groupSize: this.groupSize, streamWeights: this.streamed } : { x: s.xb };
    this.layers = Array.from({ length: c.nLayers }, (_, l) => {
      const wq = matrix(weights.wq, l), wk = matrix(weights.wk, l), wv = matrix(weights.wv, l);
      const w1 = matrix(weights.w1, l), w3 = matrix(weights.w3, l);
      return {
        rmsAtt: slice(weights.rmsAtt, l), wq, wk, wv, wo: matrix(weights.wo, l), rmsFfn: slice(weights.rmsFfn, l),
        w1, w2: matrix(weights.w2, l), w3, keyCache: slice(s.keyCache, l), valueCache: slice(s.valueCache, l),
        qkv: kernels.groupMatmuls?.(input, c.dim, [{ xout: s.q, w: wq, d: c.dim }, { xout: s.k, w: wk, d: kv }, { xout: s.v, w: wv, d: kv }]),
        gateUp: kernels.groupMatmuls?.(input, c.dim, [{ xout: s.hb, w: w1, d: c.hiddenDim }, { xout: s.hb2, w: w3, d: c.hiddenDim }]),
      };
    });
    this.tokenEmbedding = weights.tokenEmbedding;
    this.rmsFinal = weights.rmsFinal;
    this.wcls = weights.wcls;
    this.shape = { nHeads: c.nHeads, nKvHeads: c.nKvHeads, headSize: headSize(c), kvDim: kv, seqLen: c.seqLen };
    this.shiftRotation = new Float64Array(this.shape.headSize);
    this.member = { caches: this.layers, att: this.state.att, logits: this.state.logits, pendingToken: -1, pendingPos: -1, ready: false };
    this.fused = options.fused === false ? undefined : kernels.fuseForward?.({
      dim: c.dim, hiddenDim: c.hiddenDim, vocabSize: c.vocabSize, normEps: this.eps, ropeTheta: this.theta, shape: this.shape, groupSize: this.groupSize, streamWeights: this.streamed,
      state: this.state, layers: this.layers, tokenEmbedding: this.tokenEmbedding, rmsFinal: this.rmsFinal, wcls: this.wcls,
    });
  }

  get backend(): string {
    return this.kernels.name;
  }

  /** Another Transformer over the same weights and kernels, with its own state and KV cache. */
  session(): Transformer {
    const s = new Transformer(this.weights, this.kernels, this.options);
    // sessions of a model decode together (decode-batch.ts) where it pays: when reading the weights
    // is a good part of a token's time (not the small models run as one fused call per token)
    if (parameterCount(this.config) >= DECODE_TOGETHER_MIN && canDecodeTogether(this.kernels, this.groupSize)) {
      this.group ??= new DecodeGroup({
        dim: this.config.dim, hiddenDim: this.config.hiddenDim, vocabSize: this.config.vocabSize, eps: this.eps, theta: this.theta,
        shape: this.shape, groupSize: this.groupSize, streamed: this.streamed, layers: this.layers,
        tokenEmbedding: this.tokenEmbedding, rmsFinal: this.rmsFinal, wcls: this.wcls,
      }, this.kernels);
      this.group.add(this.member);
      s.group = this.group;
      this.group.add(s.member);
    }
    return s;
  }

  /** Batched decoding so far in this model's group of sessions: forward passes run for several, and their tokens. */
  get decodeBatches(): { batches: number; tokens: number } {
    return { batches: this.group?.batches ?? 0, tokens: this.group?.batchedTokens ?? 0 };
  }

  /**
   * A hint: the token this session will ask forward() for next, at `pos`. With sessions of one
   * model decoding at once (a server), another session's forward() then computes it together with
   * its own token (decode-batch.ts) — the same numbers, the weights read once for both.
   */
  prepare(token: number, pos: number): void {
    if (this.group === undefined) return;
    const ok = Number.isInteger(token) && token >= 0 && token < this.config.vocabSize && Number.isInteger(pos) && pos >= 0 && pos < this.config.seqLen;
    this.member.pendingToken = ok ? token : -1;
    this.member.pendingPos = ok ? pos : -1;
    this.member.ready = false;
  }

  /** Forgets a prepared token (the session is asked something else). */
  private unprepare(): void {
    this.member.pendingPos = -1;
    this.member.ready = false;
  }

  /** True when forward() runs as one call into the kernels (see TransformerOptions.fused). */
  get isFused(): boolean {
    return this.fused !== undefined;
  }

  /** With Q8_0 weights: quantizes x (n) into xq, xs, the input of the next products. */
  private quantizeInput(x: Float32Array, n: number): void {
    if (this.groupSize > 0) this.kernels.quantize!(this.state.xq!, this.state.xs!, x, n, this.groupSize);
  }

  /** xout (d) = W (d, n) · x (n): in float32, or for Q8_0 weights from x as quantizeInput left it. */
  private matmul(xout: Float32Array, x: Float32Array, w: Matrix, n: number, d: number): void {
    if (w instanceof Float32Array) {
      this.kernels.matmul(xout, x, w, n, d);
    } else {
      const { xq, xs } = this.state;
      this.kernels.matmulQ8!(xout, xq!, xs!, w.q, w.s, n, d, this.groupSize, this.streamed);
    }
  }

  /** Runs token `token` at position `pos` (0 ≤ pos < seqLen) and returns the logits (vocab). */
  forward(token: number, pos: number): Float32Array {
    if (this.group !== undefined) {
      const m = this.member;
      const ready = m.ready && m.pendingToken === token && m.pendingPos === pos; // computed with another session's token
      this.unprepare();
      if (ready) return this.state.logits;
      if (pos >= 0 && pos < this.config.seqLen && token >= 0 && token < this.config.vocabSize && this.group.run(m, token, pos)) return this.state.logits;
    }
    this.run(token, pos, true);
    return this.state.logits;
  }

  /**
   * Feeds token `token` at position `pos` when its logits will not be read — a prompt token
   * followed by another: it only fills the KV cache, and skips the final norm and the classifier
   * (with a 32000-token vocabulary, 60% of the 15M model's weights).
   */
  advance(token: number, pos: number): void {
    this.unprepare();
    this.run(token, pos, false);
  }

  /**
   * Feeds tokens at positions pos, pos+1, … (a prompt: every key and value goes into the cache),
   * a block of tokens at a time through matrix × matrix products (prefill.ts) when the kernels
   * have them (float32, or int8 for Q8_0 weights); with `visit`, every token's logits are computed too and
   * handed over in order (evaluation). The same numbers as forward()/advance() token by token, up
   * to float32 rounding (the products sum in another order).
   */
  prefill(tokens: ArrayLike<number>, pos: number, visit?: LogitsVisitor): void {
    this.unprepare();
    const n = tokens.length;
    if (!(Number.isInteger(pos) && pos >= 0 && pos + n <= this.config.seqLen)) {
      throw new RangeError(`positions ${pos} to ${pos + n - 1} are outside the context window (${this.config.seqLen})`);
    }
    for (let i = 0; i < n; i++) {
      const t = tokens[i]!;
      if (!(Number.isInteger(t) && t >= 0 && t < this.config.vocabSize)) throw new RangeError(`token ${t} is outside the vocabulary (${this.config.vocabSize})`);
    }
    const block = n >= PREFILL_MIN_TOKENS ? this.blockForward() : undefined;
    if (block !== undefined) {
      block.run(tokens, pos, visit);
      return;
    }
    for (let i = 0; i < n; i++) {
      if (visit === undefined) this.run(tokens[i]!, pos + i, false);
      else visit(i, this.forward(tokens[i]!, pos + i));
    }
  }

  /** −log softmax(logits)[target] over the vocabulary, by the kernels. */
  crossEntropy(logits: Float32Array, target: number): number {
    return this.kernels.crossEntropy(logits, this.config.vocabSize, target);
  }

  /** The block forward of prefill(), made on first use; undefined for kernels without matrix × matrix products. */
  private blockForward(): BlockForward | undefined {
    if (this.block === undefined && canRunBlocks(this.kernels, this.groupSize)) {
      this.block = new BlockForward({
        dim: this.config.dim, hiddenDim: this.config.hiddenDim, vocabSize: this.config.vocabSize, eps: this.eps, theta: this.theta,
        shape: this.shape, att: this.state.att, groupSize: this.groupSize,
        tokenEmbedding: this.tokenEmbedding, rmsFinal: this.rmsFinal, wcls: this.wcls, layers: this.layers,
      }, this.kernels);
    }
    return this.block;
  }

  /**
   * The context shift (see the top of this file): keeps cache rows 0..keep-1, drops the next
   * `drop`, moves rows keep+drop..length-1 down by `drop` and rotates their keys by −drop
   * positions, in every layer. The next token goes at position length − drop.
   */
  shift(keep: number, drop: number, length: number): void {
    this.unprepare();
    const ok = (n: number): boolean => Number.isInteger(n) && n >= 0;
    if (!(ok(keep) && ok(drop) && ok(length) && keep + drop <= length && length <= this.config.seqLen)) {
      throw new RangeError(`cannot shift: keep ${keep} and drop ${drop} of ${length} positions (context window ${this.config.seqLen})`);
    }
    if (drop === 0) return;
    const { kvDim: kv, headSize: hs } = this.shape;
    const rot = this.shiftRotation;
    for (let i = 0; i < hs; i += 2) {
      // the angle the rope kernel gives offset i at position −drop (computed in float64, as it does)
      const angle = -drop * (1 / Math.pow(this.theta, i / hs));
      rot[i] = Math.cos(angle);
      rot[i + 1] = Math.sin(angle);
    }
    const from = (keep + drop) * kv, to = keep * kv, end = length * kv;
    for (const L of this.layers) {
      L.valueCache.copyWithin(to, from, end);
      const k = L.keyCache;
      k.copyWithin(to, from, end);
      for (let row = to, last = end - drop * kv; row < last; row += kv) {
        for (let h = row; h < row + kv; h += hs) {
          for (let i = 0; i < hs; i += 2) {
            const k0 = k[h + i]!, k1 = k[h + i + 1]!, fcr = rot[i]!, fci = rot[i + 1]!;
            k[h + i] = k0 * fcr - k1 * fci;
            k[h + i + 1] = k0 * fci + k1 * fcr;
          }
        }
      }
    }
  }

  private run(token: number, pos: number, logits: boolean): void {
    const c = this.config;
    const s = this.state;
    const K = this.kernels;
    const { dim, hiddenDim } = c;
    const kv = this.shape.kvDim;
    if (!(pos >= 0 && pos < c.seqLen)) throw new RangeError(`position ${pos} is outside the context window (${c.seqLen})`);
    if (!(token >= 0 && token < c.vocabSize)) throw new RangeError(`token ${token} is outside the vocabulary (${c.vocabSize})`);
    if (this.fused !== undefined) {
      // the same steps as below, in the kernels (one call)
      this.fused(token, pos, logits);
      return;
    }

    // copy the token's embedding into the residual stream
    const emb = this.tokenEmbedding;
    if (emb instanceof Float32Array) {
      for (let i = 0, o = token * dim; i < dim; i++) s.x[i] = emb[o + i]!;
    } else {
      const gs = this.groupSize;
      for (let i = 0, o = token * dim; i < dim; i++) s.x[i] = emb.q[o + i]! * emb.s[Math.floor((o + i) / gs)]!;
    }

    for (const L of this.layers) {
      // attention rmsnorm
      K.rmsnorm(s.xb, s.x, L.rmsAtt, dim, this.eps);
      // q, k, v for this position
      this.quantizeInput(s.xb, dim);
      if (L.qkv !== undefined) {
        L.qkv();
      } else {
        this.matmul(s.q, s.xb, L.wq, dim, dim);
        this.matmul(s.k, s.xb, L.wk, dim, kv);
        this.matmul(s.v, s.xb, L.wv, dim, kv);
      }
      // RoPE: rotate each (even, odd) pair of q and k by an angle that grows with pos
      K.rope(s.q, s.k, pos, dim, kv, this.shape.headSize, this.theta);
      // this position's key and value go into row pos of the layer's cache
      L.keyCache.set(s.k, pos * kv);
      L.valueCache.set(s.v, pos * kv);
      // multi-head (grouped-query) attention over positions 0..pos
      K.attention(s.xb, s.q, L.keyCache, L.valueCache, s.att, pos, this.shape);
      // output projection, residual
      this.quantizeInput(s.xb, dim);
      this.matmul(s.xb2, s.xb, L.wo, dim, dim);
      K.add(s.x, s.xb2, dim);

      // feed-forward rmsnorm, then W2 (silu(W1 x) ⊙ W3 x), residual
      K.rmsnorm(s.xb, s.x, L.rmsFfn, dim, this.eps);
      this.quantizeInput(s.xb, dim);
      if (L.gateUp !== undefined) {
        L.gateUp();
      } else {
        this.matmul(s.hb, s.xb, L.w1, dim, hiddenDim);
        this.matmul(s.hb2, s.xb, L.w3, dim, hiddenDim);
      }
      K.swiglu(s.hb, s.hb2, hiddenDim);
      this.quantizeInput(s.hb, hiddenDim);
      this.matmul(s.xb, s.hb, L.w2, hiddenDim, dim);
      K.add(s.x, s.xb, dim);
    }

    // final rmsnorm and the classifier
    if (!logits) return;
    K.rmsnorm(s.x, s.x, this.rmsFinal, dim, this.eps);
    this.quantizeInput(s.x, dim);
    this.matmul(s.logits, s.x, this.wcls, dim, c.vocabSize);
  }
}

/** The context window for `contextLength` asked of a model (see TransformerOptions). */
export function contextLengthFor(c: ModelConfig, contextLength: number | undefined): number {
  if (contextLength === undefined) return Math.min(c.seqLen, DEFAULT_MAX_CONTEXT);
  if (!Number.isInteger(contextLength) || contextLength < 1 || contextLength > c.seqLen) {
    throw new LlamaError(`the context length must be an integer from 1 to the model's ${c.seqLen}, not ${contextLength}`);
  }
  return contextLength;
}
