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

import { LlamaError, OutOfMemoryError } from '../errors.js';
import type { Q8Weights, QuantizedTensor } from '../model/checkpoint.js';
import { type ModelConfig, headSize, kvDim, normEps, ropeTheta } from '../model/config.js';
import { type TransformerWeights, parameterCount } from '../model/weights.js';
import { jsKernels } from '../kernels/js.js';
import { jsQ8Kernels } from '../kernels/q8-js.js';
import type { Q8Kernels } from '../kernels/q8-types.js';
import type { AttentionShape, FusedForward, GroupedInput, GroupedMatmul, KernelMemories, KernelWarmUp, Kernels } from '../kernels/types.js';
import type { TrainKernels } from '../kernels/train-types.js';
import type { InferenceEngine } from './engine.js';
import { DecodeGroup, type DecodeMember, canDecodeTogether } from './decode-batch.js';
import { BlockForward, type LogitsVisitor, canRunBlocks } from './prefill.js';

/** A weight matrix (out, in): float32, or Q8_0 (groups over the flattened matrix). */
type Matrix = Float32Array | QuantizedTensor;

/**
 * The kernels a model needs: the float32 set, plus the int8 ones for Q8_0 weights, plus (optional)
 * the whole forward pass as one call, products sharing an input grouped into one call, and
 * several memories (a model larger than one).
 */
export type ModelKernels = Kernels & Partial<Q8Kernels> & Partial<FusedForward> & Partial<GroupedMatmul> & Partial<KernelMemories>
  & Partial<Pick<TrainKernels, 'matmulForward'>> & Partial<KernelWarmUp>;

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
  /**
   * Tokens per block of a batched prefill, if fewer than prefill.ts's prefillRows (the default:
   * the model's widths and context) — the tests' prompts over several blocks.
   */
  prefillBlock?: number;
}

/** One layer's weights (all in one memory of the kernels). */
export interface LayerWeights {
  readonly rmsAtt: Float32Array; //     (dim)
  readonly wq: Matrix; //               (dim, dim)
  readonly wk: Matrix; //               (kvDim, dim)
  readonly wv: Matrix; //               (kvDim, dim)
  readonly wo: Matrix; //               (dim, dim)
  readonly rmsFfn: Float32Array; //     (dim)
  readonly w1: Matrix; //               (hidden, dim)
  readonly w2: Matrix; //               (dim, hidden)
  readonly w3: Matrix; //               (hidden, dim)
}

/**
 * A model's weights as the engine runs them, layer by layer (the loader, src/infer/load.ts, puts
 * each layer in one memory of the kernels; a model larger than one memory spans several). The
 * final norm and the classifier share a memory; the embedding may be anywhere.
 */
export interface EngineWeights {
  readonly config: ModelConfig;
  /** Q8_0 group size of the matrices, or 0 when they are float32. */
  readonly groupSize: number;
  readonly tokenEmbedding: Matrix; //   (vocab, dim)
  readonly layers: readonly LayerWeights[];
  readonly rmsFinal: Float32Array; //   (dim)
  /** The classifier (vocab, dim); the token embedding itself when shared. */
  readonly wcls: Matrix;
}

/** The weights of a whole-model buffer (TransformerWeights, Q8Weights) as per-layer views. */
export function engineWeights(w: TransformerWeights | Q8Weights | EngineWeights): EngineWeights {
  if ('layers' in w) return w;
  const c = w.config;
  const slice = (a: Float32Array, l: number): Float32Array => {
    const per = a.length / c.nLayers;
    return a.subarray(l * per, (l + 1) * per);
  };
  const matrix = (m: Float32Array | QuantizedTensor[], l: number): Matrix => (m instanceof Float32Array ? slice(m, l) : m[l]!);
  const layers = Array.from({ length: c.nLayers }, (_, l): LayerWeights => ({
    rmsAtt: slice(w.rmsAtt, l), wq: matrix(w.wq, l), wk: matrix(w.wk, l), wv: matrix(w.wv, l), wo: matrix(w.wo, l),
    rmsFfn: slice(w.rmsFfn, l), w1: matrix(w.w1, l), w2: matrix(w.w2, l), w3: matrix(w.w3, l),
  }));
  return { config: c, groupSize: 'groupSize' in w ? w.groupSize : 0, tokenEmbedding: w.tokenEmbedding, layers, rmsFinal: w.rmsFinal, wcls: w.wcls };
}

/** One layer's weights and caches, as views made once. */
interface LayerViews extends LayerWeights {
  readonly keyCache: Float32Array; //   (seqLen, kvDim)
  readonly valueCache: Float32Array; // (seqLen, kvDim)
  /** Wq, Wk, Wv · xb as one kernel call, and W1, W3 · xb, when the kernels group products. */
  readonly qkv: (() => void) | undefined;
  readonly gateUp: (() => void) | undefined;
}

/** The activation buffers of the forward pass in one memory, and the KV caches of the layers there. */
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
  /** (vocab) in the memory of the classifier; empty elsewhere. */
  readonly logits: Float32Array;
  readonly keyCache: Float32Array; //   (layers here, seqLen, kvDim)
  readonly valueCache: Float32Array; // (layers here, seqLen, kvDim)
  /** Q8_0 only: the quantized input of a matmul (max(dim, hidden)) and its group scales. */
  readonly xq?: Int8Array;
  readonly xs?: Float32Array;
}

/** The float32 sizes of a RunState's buffers (one memory: `layers` layers' caches, logits if it holds the classifier). */
function runStateSizes(c: ModelConfig, groupSize: number, layers: number, logits: boolean): Record<string, number> {
  const kv = kvDim(c);
  return {
    x: c.dim, xb: c.dim, xb2: c.dim, hb: c.hiddenDim, hb2: c.hiddenDim, q: c.dim, k: kv, v: kv,
    att: c.nHeads * c.seqLen, logits: logits ? c.vocabSize : 0, keyCache: layers * c.seqLen * kv, valueCache: layers * c.seqLen * kv,
    ...(groupSize > 0 ? { xs: Math.ceil(Math.max(c.dim, c.hiddenDim) / groupSize) } : {}),
  };
}

const alignedFloats = (floats: number): number => Math.ceil(floats / 16) * 16;

/** Floats of the one block a RunState is carved from (see allocateRunState; the int8 input is a view too). */
export function runStateFloats(c: ModelConfig, groupSize: number, layers: number, logits: boolean): number {
  let total = groupSize > 0 ? alignedFloats(Math.ceil(Math.max(c.dim, c.hiddenDim) / 4)) : 0;
  for (const n of Object.values(runStateSizes(c, groupSize, layers, logits))) total += alignedFloats(n);
  return total;
}

/** Bytes the fused forward pass (assembly/forward.ts) takes for a plan of `layers` layers: its fields and RoPE table. */
export function fusedPlanBytes(c: ModelConfig, layers: number): number {
  return 4 * (c.seqLen * headSize(c) + 32 + 18 * layers) + 128;
}

/**
 * The run states of one session, each as views of ONE allocation in its memory, each buffer 64-byte
 * aligned: a session that does not fit takes nothing (the kernels' memory is never freed, so the
 * buffers of a half-made session would be lost for good) — every memory is checked for room before
 * any is taken. With Q8_0 weights (groupSize > 0) the int8 input is a view too.
 */
function allocateRunStates(c: ModelConfig, kernels: ModelKernels, groupSize: number, parts: ReadonlyArray<{ memory: number; layers: number; logits: boolean }>): RunState[] {
  const floats = parts.map((p) => runStateFloats(c, groupSize, p.layers, p.logits));
  if (kernels.memoryAvailable !== undefined && parts.length > 1) {
    const need = new Map<number, number>();
    parts.forEach((p, i) => need.set(p.memory, (need.get(p.memory) ?? 0) + 4 * floats[i]! + 64));
    for (const [memory, bytes] of need) {
      if (bytes > kernels.memoryAvailable(memory)) {
        throw new OutOfMemoryError(`out of WebAssembly memory: a session needs ${bytes} more bytes in memory ${memory}, which has ${kernels.memoryAvailable(memory)}`);
      }
    }
  }
  return parts.map((p, i) => {
    const sizes = runStateSizes(c, groupSize, p.layers, p.logits);
    const int8Floats = groupSize > 0 ? alignedFloats(Math.ceil(Math.max(c.dim, c.hiddenDim) / 4)) : 0;
    const block = kernels.allocate(floats[i]!, p.memory);
    let at = int8Floats;
    const views = Object.fromEntries(Object.entries(sizes).map(([name, n]) => {
      const view = block.subarray(at, at + n);
      at += alignedFloats(n);
      return [name, view];
    })) as unknown as RunState;
    return groupSize > 0 ? { ...views, xq: new Int8Array(block.buffer, block.byteOffset, Math.max(c.dim, c.hiddenDim)) } : views;
  });
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

/**
 * A run of consecutive layers in one memory of the kernels, with the activation buffers and KV
 * caches there (its RunState). A model in one memory is one segment; the residual stream x is copied
 * from one segment's state to the next's (dim floats). The classifier's memory has the logits.
 */
interface Segment {
  readonly memory: number;
  readonly state: RunState;
  readonly layers: readonly LayerViews[];
  /** The kernels' fused forward pass over these layers (and the embedding / head when they are here). */
  readonly fused: ((token: number, pos: number, logits: boolean) => void) | undefined;
}

export class Transformer implements InferenceEngine {
  /** The model's config, with seqLen the context window this engine runs with (its KV cache). */
  readonly config: ModelConfig;
  /** The run state of the first (usually only) memory: activations and the KV caches of its layers. */
  readonly state: RunState;
  /** Q8_0 group size, or 0 for float32 weights. */
  readonly groupSize: number;
  /** Q8_0 weights too large to stay in the caches between tokens (see Q8_CACHED_BYTES). */
  private readonly streamed: boolean;
  /** Every layer, in order (each refers to its segment's caches). */
  private readonly layers: LayerViews[];
  /** The layers grouped by memory, in order; the last one ends with the head unless `head` is its own. */
  private readonly segments: Segment[];
  /** Where the final norm and classifier run: the last segment, or a segment of no layers in the classifier's memory. */
  private readonly head: Segment;
  private readonly shape: AttentionShape;
  private readonly tokenEmbedding: Matrix;
  private readonly rmsFinal: Float32Array;
  private readonly wcls: Matrix;
  /** RMSNorm's ε and RoPE's θ (the config's, llama2.c's by default). */
  private readonly eps: number;
  private readonly theta: number;
  /** True when every segment runs fused; then whether the first one copies the embedding itself. */
  private readonly allFused: boolean;
  private readonly fusedEmbeds: boolean;
  /** The sessions of this model that decode together (decode-batch.ts), once there are several. */
  private group: DecodeGroup | undefined;
  /** This session as a member of the group: its caches, scratch, logits and prepared token. */
  private readonly member: DecodeMember;
  /** prefill()'s block buffers and products, made on first use. */
  private block: BlockForward | undefined;
  /** shift(): (cos, sin) of the rotation by −drop positions for each pair of a head. */
  private readonly shiftRotation: Float64Array;

  constructor(readonly weights: TransformerWeights | Q8Weights | EngineWeights, readonly kernels: ModelKernels = referenceKernels, private readonly options: TransformerOptions = {}) {
    const w = engineWeights(weights);
    const ctx = contextLengthFor(w.config, options.contextLength);
    const c: ModelConfig = { ...w.config, seqLen: ctx };
    this.config = c;
    this.eps = normEps(c);
    this.theta = ropeTheta(c);
    const kv = kvDim(c);
    const q8 = w.groupSize > 0;
    this.groupSize = w.groupSize;
    this.streamed = q8 && (options.streamWeights ?? parameterCount(c) > Q8_CACHED_BYTES);
    if (q8 && (kernels.quantize === undefined || kernels.matmulQ8 === undefined || kernels.allocateInt8 === undefined)) {
      throw new LlamaError(`the ${kernels.name} kernels have no int8 support for Q8_0 weights`);
    }
    this.tokenEmbedding = w.tokenEmbedding;
    this.rmsFinal = w.rmsFinal;
    this.wcls = w.wcls;
    this.shape = { nHeads: c.nHeads, nKvHeads: c.nKvHeads, headSize: headSize(c), kvDim: kv, seqLen: c.seqLen };
    this.shiftRotation = new Float64Array(this.shape.headSize);

    // which memory each part lives in; consecutive layers in one memory form a segment
    const memoryOf = (m: Matrix | Float32Array): number => kernels.memoryOf?.(m instanceof Float32Array ? m : m.q) ?? 0;
    const runs: Array<{ memory: number; first: number; count: number }> = [];
    w.layers.forEach((L, l) => {
      const memory = memoryOf(L.wq);
      const last = runs[runs.length - 1];
      if (last !== undefined && last.memory === memory) last.count++;
      else runs.push({ memory, first: l, count: 1 });
    });
    const headMemory = memoryOf(w.wcls);
    const lastRun = runs[runs.length - 1]!;
    const ownHead = headMemory !== lastRun.memory;
    const parts = runs.map((r) => ({ memory: r.memory, layers: r.count, logits: !ownHead && r === lastRun }));
    if (ownHead) parts.push({ memory: headMemory, layers: 0, logits: true });
    const states = allocateRunStates(c, kernels, this.groupSize, parts);

    this.layers = [];
    this.segments = parts.map((part, i) => {
      const s = states[i]!;
      const run = runs[i];
      const input: GroupedInput = q8 ? { xq: s.xq!, xs: s.xs!, groupSize: this.groupSize, streamWeights: this.streamed } : { x: s.xb };
      const layers = run === undefined ? [] : w.layers.slice(run.first, run.first + run.count).map((L, j): LayerViews => ({
        ...L,
        keyCache: s.keyCache.subarray(j * ctx * kv, (j + 1) * ctx * kv), valueCache: s.valueCache.subarray(j * ctx * kv, (j + 1) * ctx * kv),
        qkv: kernels.groupMatmuls?.(input, c.dim, [{ xout: s.q, w: L.wq, d: c.dim }, { xout: s.k, w: L.wk, d: kv }, { xout: s.v, w: L.wv, d: kv }]),
        gateUp: kernels.groupMatmuls?.(input, c.dim, [{ xout: s.hb, w: L.w1, d: c.hiddenDim }, { xout: s.hb2, w: L.w3, d: c.hiddenDim }]),
      }));
      for (const layer of layers) this.layers.push(layer);
      const isHead = part.logits;
      const fused = options.fused === false ? undefined : kernels.fuseForward?.({
        dim: c.dim, hiddenDim: c.hiddenDim, vocabSize: c.vocabSize, normEps: this.eps, ropeTheta: this.theta, shape: this.shape,
        groupSize: this.groupSize, streamWeights: this.streamed, state: s, layers,
        ...(i === 0 && memoryOf(w.tokenEmbedding) === part.memory ? { tokenEmbedding: w.tokenEmbedding } : {}),
        ...(isHead ? { rmsFinal: w.rmsFinal, wcls: w.wcls } : {}),
      });
      return { memory: part.memory, state: s, layers, fused };
    });
    this.state = this.segments[0]!.state;
    this.head = this.segments[this.segments.length - 1]!;
    this.allFused = this.segments.every((g) => g.fused !== undefined);
    this.fusedEmbeds = memoryOf(w.tokenEmbedding) === this.segments[0]!.memory;
    this.member = { caches: this.layers, att: this.state.att, logits: this.head.state.logits, pendingToken: -1, pendingPos: -1, ready: false };
  }

  get backend(): string {
    return this.kernels.name;
  }

  /** Another Transformer over the same weights and kernels, with its own state and KV cache. */
  session(): Transformer {
    const s = new Transformer(this.weights, this.kernels, this.options);
    // sessions of a model decode together (decode-batch.ts) where it pays: when reading the weights
    // is a good part of a token's time (not the small models run as one fused call per token)
    // (and in one memory: the group's buffers are not yet split by memory as the segments are)
    if (parameterCount(this.config) >= DECODE_TOGETHER_MIN && canDecodeTogether(this.kernels, this.groupSize) && this.segments.length === 1) {
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

  /** True when forward() runs as one call into the kernels per memory (see TransformerOptions.fused). */
  get isFused(): boolean {
    return this.allFused;
  }

  /** How many memories of the kernels the model's layers and classifier are spread over. */
  get memories(): number {
    return new Set(this.segments.map((g) => g.memory)).size;
  }

  /** With Q8_0 weights: quantizes x (n) into s.xq, s.xs, the input of the next products. */
  private quantizeInput(s: RunState, x: Float32Array, n: number): void {
    if (this.groupSize > 0) this.kernels.quantize!(s.xq!, s.xs!, x, n, this.groupSize);
  }

  /** xout (d) = W (d, n) · x (n): in float32, or for Q8_0 weights from x as quantizeInput left it in s. */
  private matmul(s: RunState, xout: Float32Array, x: Float32Array, w: Matrix, n: number, d: number): void {
    if (w instanceof Float32Array) {
      this.kernels.matmul(xout, x, w, n, d);
    } else {
      this.kernels.matmulQ8!(xout, s.xq!, s.xs!, w.q, w.s, n, d, this.groupSize, this.streamed);
    }
  }

  /** Runs token `token` at position `pos` (0 ≤ pos < seqLen) and returns the logits (vocab). */
  forward(token: number, pos: number): Float32Array {
    if (this.group !== undefined) {
      const m = this.member;
      const ready = m.ready && m.pendingToken === token && m.pendingPos === pos; // computed with another session's token
      this.unprepare();
      if (ready) return this.head.state.logits;
      if (pos >= 0 && pos < this.config.seqLen && token >= 0 && token < this.config.vocabSize && this.group.run(m, token, pos)) return this.head.state.logits;
    }
    this.run(token, pos, true);
    return this.head.state.logits;
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
        shape: this.shape, groupSize: this.groupSize, tokenEmbedding: this.tokenEmbedding, rmsFinal: this.rmsFinal, wcls: this.wcls,
        // one part per memory, as the segments (the head's own segment, if any, is a part of no layers)
        parts: this.segments.map((g) => ({ memory: g.memory, att: g.state.att, layers: g.layers })),
      }, this.kernels, this.options.prefillBlock);
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

  /** Copies the token's embedding row into x (dequantized from Q8_0). */
  private embed(token: number, x: Float32Array): void {
    const dim = this.config.dim;
    const emb = this.tokenEmbedding;
    if (emb instanceof Float32Array) {
      for (let i = 0, o = token * dim; i < dim; i++) x[i] = emb[o + i]!;
    } else {
      const gs = this.groupSize;
      for (let i = 0, o = token * dim; i < dim; i++) x[i] = emb.q[o + i]! * emb.s[Math.floor((o + i) / gs)]!;
    }
  }

  private run(token: number, pos: number, logits: boolean): void {
    const c = this.config;
    if (!(pos >= 0 && pos < c.seqLen)) throw new RangeError(`position ${pos} is outside the context window (${c.seqLen})`);
    if (!(token >= 0 && token < c.vocabSize)) throw new RangeError(`token ${token} is outside the vocabulary (${c.vocabSize})`);
    const segments = this.segments;
    if (this.allFused) {
      // the same steps as below, in the kernels (one call per memory)
      if (!this.fusedEmbeds) this.embed(token, segments[0]!.state.x);
      for (let i = 0; i < segments.length; i++) {
        if (i > 0) segments[i]!.state.x.set(segments[i - 1]!.state.x);
        segments[i]!.fused!(token, pos, logits);
      }
      return;
    }
    // copy the token's embedding into the residual stream
    this.embed(token, segments[0]!.state.x);
    for (let i = 0; i < segments.length; i++) {
      const s = segments[i]!.state;
      // the residual stream crosses into this memory
      if (i > 0) s.x.set(segments[i - 1]!.state.x);
      for (const L of segments[i]!.layers) this.layer(s, L, pos);
    }
    // final rmsnorm and the classifier (in the classifier's memory)
    if (!logits) return;
    const s = this.head.state;
    if (s !== segments[segments.length - 1]!.state) s.x.set(segments[segments.length - 1]!.state.x);
    this.kernels.rmsnorm(s.x, s.x, this.rmsFinal, c.dim, this.eps);
    this.quantizeInput(s, s.x, c.dim);
    this.matmul(s, s.logits, s.x, this.wcls, c.dim, c.vocabSize);
  }

  /** One layer at position pos, on the run state s of its memory. */
  private layer(s: RunState, L: LayerViews, pos: number): void {
    const K = this.kernels;
    const { dim, hiddenDim } = this.config;
    const kv = this.shape.kvDim;
    // attention rmsnorm
    K.rmsnorm(s.xb, s.x, L.rmsAtt, dim, this.eps);
    // q, k, v for this position
    this.quantizeInput(s, s.xb, dim);
    if (L.qkv !== undefined) {
      L.qkv();
    } else {
      this.matmul(s, s.q, s.xb, L.wq, dim, dim);
      this.matmul(s, s.k, s.xb, L.wk, dim, kv);
      this.matmul(s, s.v, s.xb, L.wv, dim, kv);
    }
    // RoPE: rotate each (even, odd) pair of q and k by an angle that grows with pos
    K.rope(s.q, s.k, pos, dim, kv, this.shape.headSize, this.theta);
    // this position's key and value go into row pos of the layer's cache
    L.keyCache.set(s.k, pos * kv);
    L.valueCache.set(s.v, pos * kv);
    // multi-head (grouped-query) attention over positions 0..pos
    K.attention(s.xb, s.q, L.keyCache, L.valueCache, s.att, pos, this.shape);
    // output projection, residual
    this.quantizeInput(s, s.xb, dim);
    this.matmul(s, s.xb2, s.xb, L.wo, dim, dim);
    K.add(s.x, s.xb2, dim);

    // feed-forward rmsnorm, then W2 (silu(W1 x) ⊙ W3 x), residual
    K.rmsnorm(s.xb, s.x, L.rmsFfn, dim, this.eps);
    this.quantizeInput(s, s.xb, dim);
    if (L.gateUp !== undefined) {
      L.gateUp();
    } else {
      this.matmul(s, s.hb, s.xb, L.w1, dim, hiddenDim);
      this.matmul(s, s.hb2, s.xb, L.w3, dim, hiddenDim);
    }
    K.swiglu(s.hb, s.hb2, hiddenDim);
    this.quantizeInput(s, s.hb, hiddenDim);
    this.matmul(s, s.xb, s.hb, L.w2, hiddenDim, dim);
    K.add(s.x, s.xb, dim);
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
