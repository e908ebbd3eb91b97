// A Llama 2 model being trained: parameters, gradients and AdamW moments (one Float32Array each,
// carved by the tensor table of model/weights.ts), and every activation the backward pass needs,
// allocated once for a batch shape (B, T). Its life cycle is llm.c's five verbs:
//
//   const model = buildTrainModel(config, weights, { B, T });   // build
//   const loss = model.forward(inputs, targets);                 // forward → mean cross-entropy
//   model.zeroGrad();                                            // zero_grad
//   model.backward();                                            // backward (accumulates)
//   model.update(lr, hyper);                                     // update (AdamW, see adamw.ts)
//
// Nothing is allocated by forward, backward or update.
//
// The forward pass (model.py Transformer.forward):
//   x = dropout(embedding[tokens])
//   for each layer:  h = x + dropout(wo · attention(rope(wq·n), rope(wk·n), wv·n)),  n = rmsnorm(x)
//                    x = h + dropout(w2 · (silu(w1·m) ⊙ w3·m)),                       m = rmsnorm(h)
//   logits = rmsnorm(x) · classifierᵀ;  loss = cross_entropy(logits, targets, ignore −1)

import { type ModelConfig, headSize, kvDim } from '../model/config.js';
import { type TransformerWeights, parameterCount, parameterTable, weightsView } from '../model/weights.js';
import { adamwStep, type AdamWHyper, clipFactor, sumOfSquares } from './adamw.js';
import {
  allocateAttentionScratch, type AttentionScratch, attentionBackward, attentionForward, type AttentionDims, type AttentionDropout, crossEntropyForward, crossEntropySoftmaxBackward,
  dropoutBackward, dropoutForward, embeddingBackward, embeddingForward, jsMatmul, type MatmulKernels, residualForward,
  rmsnormBackward, rmsnormForward, ropeBackward, ropeForward, ropeTables, swigluBackward, swigluForward,
} from './layers.js';
import { Rng, type RngState } from './rng.js';

export interface TrainModelOptions {
  /** Batch size. */
  readonly B: number;
  /** Sequence length of a batch (≤ config.seqLen). */
  readonly T: number;
  /** Dropout probability (model.py's places: embedding, attention probabilities, both residual branches). */
  readonly dropout?: number;
  /** Seed of the dropout generator. */
  readonly seed?: number;
  /** The matmul kernels (default: plain TypeScript). */
  readonly kernels?: MatmulKernels;
  /** Where float buffers come from (the kernels' memory); default new Float32Array. */
  readonly allocate?: (floats: number) => Float32Array;
  /** Number of threads that will share the parallel sections (see setParallel); default 1. */
  readonly parts?: number;
}

/**
 * The sections of a step that threads share (each splits its rows, elements or attention
 * heads into `parts` contiguous ranges): see TrainModel.runPart.
 */
export const enum ParallelOp {
  AttentionForward = 1,
  AttentionBackward = 2,
  CrossEntropyForward = 3,
  CrossEntropyBackward = 4,
  SwigluForward = 5,
  SwigluBackward = 6,
  AdamW = 7,
  GradNorm = 8,
}

/** Runs runPart(op, layer, arg, part, parts) for every part, on as many threads (train/pool.ts). */
export interface ParallelRunner {
  readonly parts: number;
  /** Matmul kernels for use inside a part (single-threaded: the parts are the threads). */
  readonly serialKernels: MatmulKernels;
  run(op: ParallelOp, layer: number, arg: number): void;
}

/** Per-layer activations saved by forward for backward; each array is (L, …) stacked. */
interface Activations {
  readonly residual: Float32Array; //   (L + 1, BT, C) the stream entering each layer, and the final one
  readonly hidden: Float32Array; //     (L, BT, C)     h = x + attention branch
  readonly attNorm: Float32Array; //    (L, BT, C)
  readonly attRstd: Float32Array; //    (L, BT)
  readonly q: Float32Array; //          (L, BT, C)     after RoPE
  readonly k: Float32Array; //          (L, BT, kvDim) after RoPE
  readonly v: Float32Array; //          (L, BT, kvDim)
  readonly att: Float32Array; //        (L, B, NH, T, T) attention probabilities
  readonly attOut: Float32Array; //     (L, BT, C)     before wo
  readonly ffnNorm: Float32Array; //    (L, BT, C)
  readonly ffnRstd: Float32Array; //    (L, BT)
  readonly h1: Float32Array; //         (L, BT, H)     w1 · m
  readonly h3: Float32Array; //         (L, BT, H)     w3 · m
  readonly gate: Float32Array; //       (L, BT, H)     silu(h1) ⊙ h3
  readonly finalNorm: Float32Array; //  (BT, C)
  readonly finalRstd: Float32Array; //  (BT)
  readonly probs: Float32Array; //      (BT, V)        softmax of the logits; dlogits after backward
  readonly branch: Float32Array; //     (BT, C)        scratch: output of wo or w2 before the residual add
}

/** Dropout keep flags, only when dropout > 0. */
interface DropoutMasks {
  readonly embedding: Uint8Array; // (BT, C)
  readonly att: Uint8Array; //       (L, B, NH, T, T)
  readonly attResid: Uint8Array; //  (L, BT, C)
  readonly ffnResid: Uint8Array; //  (L, BT, C)
}

/** Gradient scratch for the backward pass, reused by every layer. */
interface GradScratch {
  readonly dres: Float32Array; //   (BT, C) gradient of the residual stream
  readonly dnorm: Float32Array; //  (BT, C)
  readonly dbranch: Float32Array; // (BT, C)
  readonly dq: Float32Array; //     (BT, C)
  readonly dk: Float32Array; //     (BT, kvDim)
  readonly dv: Float32Array; //     (BT, kvDim)
  readonly dattOut: Float32Array; // (BT, C)
  readonly dh1: Float32Array; //    (BT, H)
  readonly dh3: Float32Array; //    (BT, H)
  readonly dgate: Float32Array; //  (BT, H)
  /** One set per part (thread). */
  readonly attention: readonly AttentionScratch[];
}

/** One layer's slices of the parameters, gradients, activations and masks (built once). */
interface LayerViews {
  // parameters and their gradients
  readonly rmsAtt: Float32Array; readonly dRmsAtt: Float32Array; // (C)
  readonly wq: Float32Array; readonly dwq: Float32Array; //         (C, C)
  readonly wk: Float32Array; readonly dwk: Float32Array; //         (kvDim, C)
  readonly wv: Float32Array; readonly dwv: Float32Array; //         (kvDim, C)
  readonly wo: Float32Array; readonly dwo: Float32Array; //         (C, C)
  readonly rmsFfn: Float32Array; readonly dRmsFfn: Float32Array; // (C)
  readonly w1: Float32Array; readonly dw1: Float32Array; //         (H, C)
  readonly w2: Float32Array; readonly dw2: Float32Array; //         (C, H)
  readonly w3: Float32Array; readonly dw3: Float32Array; //         (H, C)
  // activations
  readonly x: Float32Array; //       (BT, C) the residual stream entering the layer
  readonly hid: Float32Array; //     (BT, C) after the attention branch
  readonly xNext: Float32Array; //   (BT, C) leaving the layer
  readonly attNorm: Float32Array; // (BT, C)
  readonly attRstd: Float32Array; // (BT)
  readonly q: Float32Array; //       (BT, C)
  readonly k: Float32Array; //       (BT, kvDim)
  readonly v: Float32Array; //       (BT, kvDim)
  readonly att: readonly Float32Array[]; // B·NH views (T, T): attention probabilities
  readonly attOut: Float32Array; //  (BT, C)
  readonly ffnNorm: Float32Array; // (BT, C)
  readonly ffnRstd: Float32Array; // (BT)
  readonly h1: Float32Array; //      (BT, H)
  readonly h3: Float32Array; //      (BT, H)
  readonly gate: Float32Array; //    (BT, H)
  // dropout (undefined when dropout = 0)
  readonly attDropout: AttentionDropout | undefined;
  readonly attResidKeep: Uint8Array | undefined; // (BT, C)
  readonly ffnResidKeep: Uint8Array | undefined; // (BT, C)
}

export class TrainModel {
  readonly config: ModelConfig;
  readonly B: number;
  readonly T: number;
  readonly dropout: number;
  readonly params: TransformerWeights;
  readonly grads: TransformerWeights;
  /** AdamW first and second moments, same layout as params. */
  readonly m: Float32Array;
  readonly v: Float32Array;
  /** Number of AdamW updates done so far (the `step` of the bias correction). */
  adamSteps = 0;
  /** Norm of the gradients before clipping, of the last update. */
  lastGradNorm = 0;
  readonly kernels: MatmulKernels;
  readonly dropoutRng: Rng;

  private readonly acts: Activations;
  private readonly masks: DropoutMasks | undefined;
  private readonly scratch: GradScratch;
  private readonly inputs: Int32Array;
  private readonly targets: Int32Array;
  /** [loss sum, count] per part of the cross-entropy forward, then [loss scale, count] for its backward. */
  private readonly lossParts: Float64Array;
  /**
   * The AdamW step's numbers, for every thread's part of it: lr, weight decay, β1, β2, ε, step, the
   * clipping factor of the gradients; then each part's sum of squared gradients.
   */
  private readonly optimizerArgs: Float64Array;
  /** optimizerArgs as the hyperparameters adamwStep takes (filled in place: no object per step). */
  private readonly adamHyper = { beta1: 0, beta2: 0, eps: 0, weightDecay: 0 };
  /** Every buffer allocated, in order: [byte offset, floats] (a worker rebuilds the same views). */
  readonly allocations: Array<readonly [number, number]> = [];
  readonly parts: number;
  private runner: ParallelRunner | undefined;
  private readonly ropeCos: Float32Array;
  private readonly ropeSin: Float32Array;
  /** Per tensor of the table: views of params, grads, m, v, and whether weight decay applies. */
  private readonly optimizerTensors: ReadonlyArray<{ readonly p: Float32Array; readonly g: Float32Array; readonly m: Float32Array; readonly v: Float32Array; readonly decay: boolean }>;
  private readonly layers: readonly LayerViews[];
  private readonly dims: AttentionDims;
  private lossCount = 0;
  private training = true;

  constructor(config: ModelConfig, initial: Float32Array, opts: TrainModelOptions) {
    const { B, T } = opts;
    if (!Number.isInteger(B) || B <= 0 || !Number.isInteger(T) || T <= 0) throw new RangeError(`bad batch shape ${B}×${T}`);
    if (T > config.seqLen) throw new RangeError(`T = ${T} exceeds the model's seq_len ${config.seqLen}`);
    const p = opts.dropout ?? 0;
    if (!(p >= 0 && p < 1)) throw new RangeError(`dropout ${p} must be in [0, 1)`);
    // kernels that take their arrays by address (rows: WebAssembly) read the model's buffers in
    // their own memory, which only their allocate gives
    if (opts.kernels?.rows !== undefined && opts.allocate === undefined) {
      throw new RangeError(`the ${opts.kernels.name} kernels work on buffers in their own memory: pass their allocate too (engineFromKernelSet gives both)`);
    }
    this.config = config;
    this.B = B;
    this.T = T;
    this.dropout = p;
    this.kernels = opts.kernels ?? jsMatmul;
    this.dropoutRng = new Rng(opts.seed ?? 1337);
    const rawAlloc = opts.allocate ?? ((n: number) => new Float32Array(n));
    const alloc = (floats: number): Float32Array => {
      const a = rawAlloc(floats);
      this.allocations.push([a.byteOffset, floats]);
      return a;
    };
    this.parts = opts.parts ?? 1;
    const n = parameterCount(config);
    if (initial.length !== n) throw new RangeError(`initial weights have ${initial.length} floats, the model needs ${n}`);
    const data = alloc(n);
    if (data !== initial) data.set(initial);
    this.params = weightsView(config, data);
    this.grads = weightsView(config, alloc(n));
    this.m = alloc(n);
    this.v = alloc(n);
    this.optimizerTensors = parameterTable(config).map((t) => {
      const view = (a: Float32Array): Float32Array => a.subarray(t.offset, t.offset + t.size);
      return { p: view(this.params.data), g: view(this.grads.data), m: view(this.m), v: view(this.v), decay: t.decay };
    });

    const { dim: C, hiddenDim: H, nLayers: L, nHeads: NH, vocabSize: V } = config;
    const kvd = kvDim(config);
    const BT = B * T;
    this.acts = {
      residual: alloc((L + 1) * BT * C), hidden: alloc(L * BT * C),
      attNorm: alloc(L * BT * C), attRstd: alloc(L * BT),
      q: alloc(L * BT * C), k: alloc(L * BT * kvd), v: alloc(L * BT * kvd),
      att: alloc(L * B * NH * T * T), attOut: alloc(L * BT * C),
      ffnNorm: alloc(L * BT * C), ffnRstd: alloc(L * BT),
      h1: alloc(L * BT * H), h3: alloc(L * BT * H), gate: alloc(L * BT * H),
      finalNorm: alloc(BT * C), finalRstd: alloc(BT), probs: alloc(BT * V), branch: alloc(BT * C),
    };
    this.masks = p > 0 ? {
      embedding: new Uint8Array(BT * C), att: new Uint8Array(L * B * NH * T * T),
      attResid: new Uint8Array(L * BT * C), ffnResid: new Uint8Array(L * BT * C),
    } : undefined;
    this.scratch = {
      dres: alloc(BT * C), dnorm: alloc(BT * C), dbranch: alloc(BT * C), dq: alloc(BT * C),
      dk: alloc(BT * kvd), dv: alloc(BT * kvd), dattOut: alloc(BT * C),
      dh1: alloc(BT * H), dh3: alloc(BT * H), dgate: alloc(BT * H),
      attention: Array.from({ length: this.parts }, () => allocateAttentionScratch(T, alloc)),
    };
    const ints = (count: number): Int32Array => {
      const f = alloc(count);
      return new Int32Array(f.buffer, f.byteOffset, count);
    };
    this.inputs = ints(BT);
    this.targets = ints(BT);
    const lp = alloc(4 * this.parts + 4);
    this.lossParts = new Float64Array(lp.buffer, lp.byteOffset, 2 * this.parts + 2);
    const oa = alloc(2 * (7 + this.parts));
    this.optimizerArgs = new Float64Array(oa.buffer, oa.byteOffset, 7 + this.parts);
    const rope = ropeTables(T, headSize(config));
    this.ropeCos = rope.cos;
    this.ropeSin = rope.sin;
    this.dims = { B, T, nHeads: NH, nKvHeads: config.nKvHeads, hs: headSize(config) };

    const w = this.params;
    const g = this.grads;
    const a = this.acts;
    const m = this.masks;
    const BTC = BT * C;
    const attSize = B * NH * T * T;
    const slice = <A extends Float32Array | Uint8Array>(t: A, l: number, size: number): A => t.subarray(l * size, (l + 1) * size) as A;
    const heads = <A extends Float32Array | Uint8Array>(t: A): A[] => Array.from({ length: B * NH }, (_, i) => slice(t, i, T * T));
    this.layers = Array.from({ length: L }, (_, l): LayerViews => ({
      rmsAtt: slice(w.rmsAtt, l, C), dRmsAtt: slice(g.rmsAtt, l, C),
      wq: slice(w.wq, l, C * C), dwq: slice(g.wq, l, C * C),
      wk: slice(w.wk, l, kvd * C), dwk: slice(g.wk, l, kvd * C),
      wv: slice(w.wv, l, kvd * C), dwv: slice(g.wv, l, kvd * C),
      wo: slice(w.wo, l, C * C), dwo: slice(g.wo, l, C * C),
      rmsFfn: slice(w.rmsFfn, l, C), dRmsFfn: slice(g.rmsFfn, l, C),
      w1: slice(w.w1, l, H * C), dw1: slice(g.w1, l, H * C),
      w2: slice(w.w2, l, C * H), dw2: slice(g.w2, l, C * H),
      w3: slice(w.w3, l, H * C), dw3: slice(g.w3, l, H * C),
      x: slice(a.residual, l, BTC), hid: slice(a.hidden, l, BTC), xNext: slice(a.residual, l + 1, BTC),
      attNorm: slice(a.attNorm, l, BTC), attRstd: slice(a.attRstd, l, BT),
      q: slice(a.q, l, BTC), k: slice(a.k, l, BT * kvd), v: slice(a.v, l, BT * kvd),
      att: heads(slice(a.att, l, attSize)), attOut: slice(a.attOut, l, BTC),
      ffnNorm: slice(a.ffnNorm, l, BTC), ffnRstd: slice(a.ffnRstd, l, BT),
      h1: slice(a.h1, l, BT * H), h3: slice(a.h3, l, BT * H), gate: slice(a.gate, l, BT * H),
      attDropout: m ? { keep: heads(slice(m.att, l, attSize)), p, rng: this.dropoutRng } : undefined,
      attResidKeep: m ? slice(m.attResid, l, BTC) : undefined,
      ffnResidKeep: m ? slice(m.ffnResid, l, BTC) : undefined,
    }));
  }

  /** Switches dropout on (training) or off (evaluation). */
  setTraining(on: boolean): void {
    this.training = on;
  }

  /**
   * Forward pass on a batch: inputs and targets are (B, T) token ids, targets −1 ignored.
   * Returns the mean cross-entropy over the counted targets (NaN if none is counted).
   */
  forward(inputs: ArrayLike<number>, targets: ArrayLike<number>): number {
    const { config: cfg, B, T } = this;
    const { dim: C, hiddenDim: H, nLayers: L, nHeads: NH, nKvHeads: KVH, vocabSize: V } = cfg;
    const BT = B * T;
    if (inputs.length !== BT || targets.length !== BT) throw new RangeError(`a batch needs ${BT} inputs and targets`);
    for (let i = 0; i < BT; i++) {
      const x = inputs[i]!;
      const y = targets[i]!;
      if (!Number.isInteger(x) || x < 0 || x >= V) throw new RangeError(`input token ${x} is outside the vocabulary [0, ${V})`);
      if (!Number.isInteger(y) || y < -1 || y >= V) throw new RangeError(`target token ${y} is outside the vocabulary [0, ${V}) (or −1)`);
      this.inputs[i] = x;
      this.targets[i] = y;
    }
    const kvd = kvDim(cfg);
    const hs = headSize(cfg);
    const w = this.params;
    const a = this.acts;
    const k = this.kernels;
    const masks = this.training ? this.masks : undefined;
    const p = this.dropout;
    const rng = this.dropoutRng;
    const BTC = BT * C;

    const x0 = this.layers[0]!.x;
    embeddingForward(x0, this.inputs, w.tokenEmbedding, BT, C);
    if (masks) dropoutForward(x0, masks.embedding, p, rng, BTC);

    for (let l = 0; l < L; l++) {
      const y = this.layers[l]!;
      // attention branch: h = x + dropout(wo · attention(rope(wq·n), rope(wk·n), wv·n)), n = rmsnorm(x)
      rmsnormForward(y.attNorm, y.attRstd, y.x, y.rmsAtt, BT, C, k);
      k.matmulForward(y.q, y.attNorm, y.wq, BT, C, C);
      k.matmulForward(y.k, y.attNorm, y.wk, BT, C, kvd);
      k.matmulForward(y.v, y.attNorm, y.wv, BT, C, kvd);
      ropeForward(y.q, this.ropeCos, this.ropeSin, B, T, NH, hs);
      ropeForward(y.k, this.ropeCos, this.ropeSin, B, T, KVH, hs);
      if (masks) attentionForward(k, y.attOut, y.att, y.q, y.k, y.v, this.dims, this.scratch.attention[0]!, y.attDropout); // one thread: one dropout stream
      else this.parallel(ParallelOp.AttentionForward, l, 0);
      k.matmulForward(a.branch, y.attOut, y.wo, BT, C, C);
      if (masks) dropoutForward(a.branch, y.attResidKeep!, p, rng, BTC);
      residualForward(y.hid, y.x, a.branch, BTC);

      // feed-forward branch: x_next = h + dropout(w2 · (silu(w1·m) ⊙ w3·m)), m = rmsnorm(h)
      rmsnormForward(y.ffnNorm, y.ffnRstd, y.hid, y.rmsFfn, BT, C, k);
      k.matmulForward(y.h1, y.ffnNorm, y.w1, BT, C, H);
      k.matmulForward(y.h3, y.ffnNorm, y.w3, BT, C, H);
      this.parallel(ParallelOp.SwigluForward, l, 0);
      k.matmulForward(a.branch, y.gate, y.w2, BT, H, C);
      if (masks) dropoutForward(a.branch, y.ffnResidKeep!, p, rng, BTC);
      residualForward(y.xNext, y.hid, a.branch, BTC);
    }

    rmsnormForward(a.finalNorm, a.finalRstd, this.layers[L - 1]!.xNext, w.rmsFinal, BT, C, k);
    k.matmulForward(a.probs, a.finalNorm, w.wcls, BT, C, V);
    this.parallel(ParallelOp.CrossEntropyForward, 0, 0);
    let sum = 0;
    let count = 0;
    for (let i = 0; i < this.parts; i++) {
      sum += this.lossParts[2 * i]!;
      count += this.lossParts[2 * i + 1]!;
    }
    this.lossCount = count;
    return count > 0 ? sum / count : NaN;
  }

  /** Sets every gradient to zero. */
  zeroGrad(): void {
    this.grads.data.fill(0);
  }

  /**
   * Backward pass of the last forward: accumulates d(lossScale · loss)/dθ into the gradients.
   * With gradient accumulation over n micro-batches, lossScale = 1/n.
   */
  backward(lossScale = 1): void {
    const { config: cfg, B, T } = this;
    const { dim: C, hiddenDim: H, nLayers: L, nHeads: NH, nKvHeads: KVH, vocabSize: V } = cfg;
    const BT = B * T;
    const BTC = BT * C;
    const kvd = kvDim(cfg);
    const hs = headSize(cfg);
    const w = this.params;
    const g = this.grads;
    const a = this.acts;
    const s = this.scratch;
    const k = this.kernels;
    const masks = this.training ? this.masks : undefined;
    const p = this.dropout;

    // loss → logits → final norm (the classifier is the embedding when tied: its gradient adds up)
    const dlogits = a.probs;
    this.lossParts[2 * this.parts] = lossScale;
    this.lossParts[2 * this.parts + 1] = this.lossCount;
    this.parallel(ParallelOp.CrossEntropyBackward, 0, 0);
    s.dnorm.fill(0);
    k.matmulBackward(s.dnorm, g.wcls, dlogits, a.finalNorm, w.wcls, BT, C, V);
    s.dres.fill(0);
    rmsnormBackward(s.dres, g.rmsFinal, s.dnorm, this.layers[L - 1]!.xNext, w.rmsFinal, a.finalRstd, BT, C, k);

    for (let l = L - 1; l >= 0; l--) {
      const y = this.layers[l]!;
      // feed-forward branch: x_next = h + dropout(w2 · gate); dres holds d(x_next), which through
      // the residual is also the direct part of d(h)
      s.dbranch.set(s.dres);
      if (masks) dropoutBackward(s.dbranch, y.ffnResidKeep!, p, BTC);
      s.dgate.fill(0);
      k.matmulBackward(s.dgate, y.dw2, s.dbranch, y.gate, y.w2, BT, H, C);
      s.dh1.fill(0);
      s.dh3.fill(0);
      this.parallel(ParallelOp.SwigluBackward, l, 0);
      s.dnorm.fill(0);
      k.matmulBackward(s.dnorm, y.dw1, s.dh1, y.ffnNorm, y.w1, BT, C, H);
      k.matmulBackward(s.dnorm, y.dw3, s.dh3, y.ffnNorm, y.w3, BT, C, H);
      rmsnormBackward(s.dres, y.dRmsFfn, s.dnorm, y.hid, y.rmsFfn, y.ffnRstd, BT, C, k);

      // attention branch: h = x + dropout(wo · attOut); dres now holds d(h)
      s.dbranch.set(s.dres);
      if (masks) dropoutBackward(s.dbranch, y.attResidKeep!, p, BTC);
      s.dattOut.fill(0);
      k.matmulBackward(s.dattOut, y.dwo, s.dbranch, y.attOut, y.wo, BT, C, C);
      s.dq.fill(0);
      s.dk.fill(0);
      s.dv.fill(0);
      if (masks) attentionBackward(k, s.dq, s.dk, s.dv, s.dattOut, y.att, y.q, y.k, y.v, this.dims, s.attention[0]!, y.attDropout);
      else this.parallel(ParallelOp.AttentionBackward, l, 0);
      ropeBackward(s.dq, this.ropeCos, this.ropeSin, B, T, NH, hs);
      ropeBackward(s.dk, this.ropeCos, this.ropeSin, B, T, KVH, hs);
      s.dnorm.fill(0);
      k.matmulBackward(s.dnorm, y.dwq, s.dq, y.attNorm, y.wq, BT, C, C);
      k.matmulBackward(s.dnorm, y.dwk, s.dk, y.attNorm, y.wk, BT, C, kvd);
      k.matmulBackward(s.dnorm, y.dwv, s.dv, y.attNorm, y.wv, BT, C, kvd);
      rmsnormBackward(s.dres, y.dRmsAtt, s.dnorm, y.x, y.rmsAtt, y.attRstd, BT, C, k);
    }

    if (masks) dropoutBackward(s.dres, masks.embedding, p, BTC);
    embeddingBackward(g.tokenEmbedding, s.dres, this.inputs, BT, C);
  }

  /** Lets `runner` share the parallel sections among threads (undefined: this thread alone). */
  setParallel(runner: ParallelRunner | undefined): void {
    if (runner !== undefined && runner.parts !== this.parts) throw new RangeError(`the runner has ${runner.parts} parts, the model was built for ${this.parts}`);
    this.runner = runner;
  }

  private parallel(op: ParallelOp, layer: number, arg: number): void {
    if (this.runner) this.runner.run(op, layer, arg);
    else this.runPart(op, layer, arg, 0, 1, this.kernels);
  }

  /**
   * Part `part` of `parts` of a parallel section (called on every thread with the same model views
   * over shared memory). Each part writes a disjoint range of the outputs.
   */
  runPart(op: ParallelOp, layer: number, _arg: number, part: number, parts: number, mm: MatmulKernels): void {
    const { B, T } = this;
    const { hiddenDim: H, nKvHeads: KVH, vocabSize: V } = this.config;
    const BT = B * T;
    const y = this.layers[layer]!;
    const s = this.scratch;
    // this part's share of `total` items: [total·part/parts, total·(part+1)/parts)
    const total = op === ParallelOp.AttentionForward || op === ParallelOp.AttentionBackward ? B * KVH
      : op === ParallelOp.SwigluForward || op === ParallelOp.SwigluBackward ? BT * H : BT;
    const i0 = Math.floor((total * part) / parts);
    const i1 = Math.floor((total * (part + 1)) / parts);
    switch (op) {
      case ParallelOp.AttentionForward:
        attentionForward(mm, y.attOut, y.att, y.q, y.k, y.v, this.dims, s.attention[part]!, undefined, i0, i1);
        break;
      case ParallelOp.AttentionBackward:
        attentionBackward(mm, s.dq, s.dk, s.dv, s.dattOut, y.att, y.q, y.k, y.v, this.dims, s.attention[part]!, undefined, i0, i1);
        break;
      case ParallelOp.CrossEntropyForward:
        crossEntropyForward(this.acts.probs, this.targets, BT, V, this.lossParts, 2 * part, i0, i1, mm);
        break;
      case ParallelOp.CrossEntropyBackward: {
        const at = 2 * this.parts; // [loss scale, count], written by backward() before the section
        crossEntropySoftmaxBackward(this.acts.probs, this.acts.probs, this.targets, this.lossParts[at]!, this.lossParts[at + 1]!, BT, V, i0, i1, mm);
        break;
      }
      case ParallelOp.SwigluForward:
        swigluForward(y.gate, y.h1, y.h3, i1, i0, mm);
        break;
      case ParallelOp.SwigluBackward:
        swigluBackward(s.dh1, s.dh3, s.dgate, y.h1, y.h3, i1, i0, mm);
        break;
      case ParallelOp.AdamW: {
        const a = this.optimizerArgs, h = this.adamHyper;
        h.beta1 = a[2]!; h.beta2 = a[3]!; h.eps = a[4]!; h.weightDecay = a[1]!;
        for (let i = 0; i < this.optimizerTensors.length; i++) {
          const t = this.optimizerTensors[i]!, n = t.p.length;
          const from = Math.floor((n * part) / parts), to = Math.floor((n * (part + 1)) / parts);
          if (mm.rows !== undefined) mm.rows.adamw(t.p, t.g, t.m, t.v, a[0]!, t.decay ? a[1]! : 0, h, a[5]!, from, to, a[6]!);
          else adamwStep(t.p, t.g, t.m, t.v, a[0]!, t.decay ? a[1]! : 0, h, a[5]!, from, to, a[6]!);
        }
        break;
      }
      case ParallelOp.GradNorm: {
        const g = this.grads.data, n = g.length;
        this.optimizerArgs[7 + part] = sumOfSquares(g, Math.floor((n * part) / parts), Math.floor((n * (part + 1)) / parts));
        break;
      }
    }
  }

  get lastLossCount(): number {
    return this.lossCount;
  }

  /**
   * One optimiser step: AdamW with learning rate `lr` on the gradients clipped to global norm
   * `gradClip` (0 = no clipping; the norm before clipping is kept in lastGradNorm). The clipping is
   * applied as AdamW reads them: `grads` keeps backward()'s values.
   */
  update(lr: number, hyper: AdamWHyper, gradClip: number): void {
    // the global norm: each thread's slice of the squares, the slices' sums added in order
    const a = this.optimizerArgs;
    this.parallel(ParallelOp.GradNorm, 0, 0);
    let squares = 0;
    for (let part = 0; part < this.parts; part++) squares += a[7 + part]!;
    this.lastGradNorm = Math.sqrt(squares);
    this.adamSteps++;
    a[0] = lr; a[1] = hyper.weightDecay; a[2] = hyper.beta1; a[3] = hyper.beta2; a[4] = hyper.eps; a[5] = this.adamSteps;
    a[6] = clipFactor(this.lastGradNorm, gradClip); // applied as AdamW reads each gradient
    this.parallel(ParallelOp.AdamW, 0, 0); // each thread a slice of every tensor
  }

  /** The dropout generator's state (saved in training checkpoints). */
  getRngState(): RngState {
    return this.dropoutRng.getState();
  }
}

/** build: a training model over a copy of `initial` (parameterCount(config) floats, v1 order). */
export function buildTrainModel(config: ModelConfig, initial: Float32Array, opts: TrainModelOptions): TrainModel {
  return new TrainModel(config, initial, opts);
}
