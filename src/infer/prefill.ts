// Batched prefill: a prompt goes through the model a block of tokens at a time, so that each weight
// matrix is read once per block instead of once per token (matrix × matrix products,
// assembly/gemm.ts, instead of matrix × vector).
//
// For a block of B tokens at positions pos … pos+B-1, X (B, dim) their residual streams:
//   X = the tokens' embedding rows
//   for each layer l:
//     XB = rmsnorm(X) ⊙ rmsAtt[l]                        row by row
//     Q, K, V = XB Wqᵀ, XB Wkᵀ, XB Wvᵀ                    (B, dim), (B, kvDim), (B, kvDim)
//     RoPE on row i of Q and K at position pos+i; K, V → cache rows pos … pos+B-1
//     XB = attention of row i of Q over cache rows 0 … pos+i   (causal inside the block)
//     X += XB Woᵀ
//     XB = rmsnorm(X) ⊙ rmsFfn[l];  X += (silu(XB W1ᵀ) ⊙ XB W3ᵀ) W2ᵀ
//   logits (only when asked: evaluation) = (rmsnorm(X) ⊙ rmsFinal) Wclsᵀ     (B, vocab)
//
// With Q8_0 weights each product's input rows are quantized one by one (as forward.ts quantizes
// its vector), the int8 products give exactly the one-token results (assembly/gemm-q8.ts) and the
// attention runs with the one-position arithmetic: the whole prefill is bit for bit token by token.
// (A float32 rounding difference would move values across int8 rounding steps, 1/127 at a time.)
//
// With float32 weights, row by row this is exactly forward.ts's computation, but the products sum
// their terms in another order than the one-token matmul (see assembly/gemm.ts) and the attention
// is two matrix products per head: the results differ from feeding the tokens one by one by
// float32 rounding only. The block buffers are allocated on first use.
//
// A model spread over several memories of the kernels (src/infer/placement.ts) comes as parts, one
// per memory, each with its own block buffers: X is copied from one part's to the next's (B · dim
// floats per block), and the last part holds the final norm and the classifier.

import type { Q8Kernels } from '../kernels/q8-types.js';
import type { ForwardProduct, TrainKernels } from '../kernels/train-types.js';
import type { AttentionShape, Kernels, WeightMatrix } from '../kernels/types.js';

/**
 * Tokens per block, at most: each block reads every weight matrix once and pays a fixed cost per
 * product (packing B, the threads' hand-offs), so a prompt in one block runs fastest — 15M shape,
 * 255-token prompt: 5,216 tok/s in one block against 4,512 in blocks of 128; stories260K, 511
 * tokens: 28,193 against 24,358 (medians of 5, interleaved).
 */
export const PREFILL_BLOCK = 512;
/** Tokens per block, at least (when the context has them): enough rows for the products' full speed. */
const PREFILL_BLOCK_MIN = 128;
/** Bytes the block buffers of one part may take before blocks get shorter (down to PREFILL_BLOCK_MIN). */
const BLOCK_BUFFER_BUDGET = 32 << 20;

/**
 * The rows of a block for a model of these widths and context: PREFILL_BLOCK, fewer where the
 * buffers would pass BLOCK_BUFFER_BUDGET (a big model's rows are wide and its products long enough
 * at fewer: Llama-2-7B 180 rows; the 15M shape 256 — its context — 2.9 MB), never more than the
 * context.
 */
export function prefillRows(dim: number, hiddenDim: number, kvDim: number, seqLen: number): number {
  const rowBytes = 4 * blockBufferFloats(dim, hiddenDim, kvDim, 1);
  const fit = Math.max(PREFILL_BLOCK_MIN, Math.min(PREFILL_BLOCK, Math.floor(BLOCK_BUFFER_BUDGET / rowBytes)));
  return Math.max(1, Math.min(fit, seqLen));
}

/** One layer's weights and caches (forward.ts's views). */
export interface BlockLayer extends LayerWeights {
  readonly keyCache: Float32Array; readonly valueCache: Float32Array;
}

/** One layer's weights (forward.ts's views). */
export interface LayerWeights {
  readonly rmsAtt: Float32Array; readonly wq: WeightMatrix; readonly wk: WeightMatrix; readonly wv: WeightMatrix;
  readonly wo: WeightMatrix; readonly rmsFfn: Float32Array; readonly w1: WeightMatrix; readonly w2: WeightMatrix;
  readonly w3: WeightMatrix;
}

/** Consecutive layers in one memory of the kernels. */
export interface BlockPart {
  /** Its memory (see KernelMemories; 0 for kernels with one). */
  readonly memory: number;
  readonly layers: readonly BlockLayer[];
  /** Attention scratch (nHeads, seqLen) in that memory: the one-token state's, which a prefill may overwrite. */
  readonly att: Float32Array;
}

/** What a forward over several tokens at once reads besides the layers: the shape and the weights outside them. */
export interface BatchModel {
  readonly dim: number;
  readonly hiddenDim: number;
  readonly vocabSize: number;
  readonly eps: number;
  readonly theta: number;
  readonly shape: AttentionShape;
  /** Q8_0 group size, or 0 for float32 weights. */
  readonly groupSize: number;
  /** Read by JavaScript (it may live in any memory). */
  readonly tokenEmbedding: WeightMatrix;
  readonly rmsFinal: Float32Array;
  readonly wcls: WeightMatrix;
}

/** What the block forward reads: the model's weights (float32, or Q8_0 with groupSize > 0), caches and shape. */
export interface BlockModel extends BatchModel {
  /** The layers in order, by memory; the last part (possibly of no layers) has rmsFinal and wcls. */
  readonly parts: readonly BlockPart[];
}

/** The kernels of a block: float32 products for float32 weights, the int8 ones for Q8_0. */
export type BlockKernels = Kernels & Partial<Pick<TrainKernels, 'matmulForward' | 'matmulForwardMany'>> & Partial<Q8Kernels>;

/** Whether `kernels` can run blocks of a model with Q8_0 group size `groupSize` (0: float32). */
export function canRunBlocks(kernels: BlockKernels, groupSize: number): boolean {
  return groupSize === 0 ? kernels.matmulForward !== undefined
    : kernels.matmulQ8Forward !== undefined && kernels.quantize !== undefined && kernels.allocateInt8 !== undefined;
}

/** Receives the logits of prompt token `index` (the array is valid during the call only). */
export type LogitsVisitor = (index: number, logits: Float32Array) => void;

/** Floats of each block buffer of one part — x, xb, xb2, q, k, v, hb, hb2 — each rounded up to 16 (64 bytes). */
function blockBufferSizes(dim: number, hiddenDim: number, kvDim: number, rows: number): number[] {
  return [dim, dim, dim, dim, kvDim, kvDim, hiddenDim, hiddenDim].map((w) => Math.ceil((rows * w) / 16) * 16);
}

/** Floats of the block buffers of one part (for placement.ts: a part per memory). */
export function blockBufferFloats(dim: number, hiddenDim: number, kvDim: number, rows: number): number {
  return blockBufferSizes(dim, hiddenDim, kvDim, rows).reduce((a, b) => a + b, 0);
}

/** One part's block buffers, in its memory. */
class PartBuffers {
  readonly x: Float32Array; //   (rows, dim) residual streams
  readonly xb: Float32Array; //  (rows, dim)
  readonly xb2: Float32Array; // (rows, dim)
  readonly q: Float32Array; //   (rows, dim)
  readonly k: Float32Array; //   (rows, kvDim)
  readonly v: Float32Array; //   (rows, kvDim)
  readonly hb: Float32Array; //  (rows, hidden)
  readonly hb2: Float32Array; // (rows, hidden)
  /** Row views, made once (the per-row kernels take one row each). */
  readonly xRows: Float32Array[];
  readonly xbRows: Float32Array[];
  readonly hbRows: Float32Array[];
  readonly qRows: Float32Array[];
  readonly kRows: Float32Array[];
  /** Q8_0: a product's input rows quantized (rows, n) and their scales, as rows of dim and of hidden values. */
  readonly xq: Int8Array | undefined;
  readonly xs: Float32Array | undefined;
  readonly quantized: ReadonlyMap<number, { readonly q: Int8Array[]; readonly s: Float32Array[] }>;

  constructor(m: BlockModel, kernels: BlockKernels, r: number, memory: number) {
    const { dim, hiddenDim } = m;
    const kv = m.shape.kvDim;
    // one allocation (the kernels' memory is never freed: a failure leaves nothing half-made)
    const sizes = blockBufferSizes(dim, hiddenDim, kv, r);
    const block = kernels.allocate(sizes.reduce((a, b) => a + b, 0), memory);
    let at = 0;
    const [x, xb, xb2, q, k, v, hb, hb2] = sizes.map((n) => block.subarray(at, (at += n)));
    this.x = x!; this.xb = xb!; this.xb2 = xb2!; this.q = q!; this.k = k!; this.v = v!; this.hb = hb!; this.hb2 = hb2!;
    const rowsOf = (a: Float32Array, w: number): Float32Array[] => Array.from({ length: r }, (_, i) => a.subarray(i * w, (i + 1) * w));
    this.xRows = rowsOf(this.x, dim);
    this.xbRows = rowsOf(this.xb, dim);
    this.hbRows = rowsOf(this.hb, hiddenDim);
    this.qRows = rowsOf(this.q, dim);
    this.kRows = rowsOf(this.k, kv);
    const gs = m.groupSize;
    const quantized = new Map<number, { q: Int8Array[]; s: Float32Array[] }>();
    if (gs > 0) {
      const widest = Math.max(dim, hiddenDim);
      const xq = kernels.allocateInt8!(r * widest, memory);
      const xs = kernels.allocate(r * Math.ceil(widest / gs), memory);
      this.xq = xq;
      this.xs = xs;
      for (const n of [dim, hiddenDim]) {
        const g = Math.ceil(n / gs);
        quantized.set(n, {
          q: Array.from({ length: r }, (_, i) => xq.subarray(i * n, (i + 1) * n)),
          s: Array.from({ length: r }, (_, i) => xs.subarray(i * g, (i + 1) * g)),
        });
      }
    }
    this.quantized = quantized;
  }
}

export class BlockForward {
  /** Rows per block. */
  readonly rows: number;
  /** Each part's buffers (in its memory). */
  private readonly buffers: PartBuffers[];
  /** (rows, vocab) in the last part's memory, made on the first prefill that asks for logits. */
  private logits: Float32Array | undefined;
  private logitRows: Float32Array[] = [];

  /**
   * Float32 weights with kernels that run several products of one input in one call: each layer's
   * Q, K, V products and its W1, W3 products (by layer, in the order of the parts).
   */
  private readonly grouped: Map<BlockLayer, { readonly qkv: readonly ForwardProduct[]; readonly gate: readonly ForwardProduct[] }> = new Map();

  /** `rows`: tokens per block, at most prefillRows (the model's widths and context: the default). */
  constructor(private readonly m: BlockModel, private readonly kernels: BlockKernels, rows?: number) {
    const most = prefillRows(m.dim, m.hiddenDim, m.shape.kvDim, m.shape.seqLen);
    this.rows = Math.max(1, Math.min(rows ?? most, most));
    this.buffers = m.parts.map((p) => new PartBuffers(m, kernels, this.rows, p.memory));
    if (kernels.matmulForwardMany !== undefined && m.groupSize === 0) {
      const { dim, hiddenDim: hidden } = m, kv = m.shape.kvDim;
      m.parts.forEach((part, p) => {
        const b = this.buffers[p]!;
        for (const L of part.layers) {
          const { wq, wk, wv, w1, w3 } = L;
          if (!(wq instanceof Float32Array && wk instanceof Float32Array && wv instanceof Float32Array && w1 instanceof Float32Array && w3 instanceof Float32Array)) continue;
          this.grouped.set(L, {
            qkv: [{ out: b.q, w: wq, OC: dim }, { out: b.k, w: wk, OC: kv }, { out: b.v, w: wv, OC: kv }],
            gate: [{ out: b.hb, w: w1, OC: hidden }, { out: b.hb2, w: w3, OC: hidden }],
          });
        }
      });
    }
  }

  /**
   * out (count, d) = rows of x (count, n) · Wᵀ: float32, or for Q8_0 weights from the rows
   * quantized first into b's xq / xs (unless `quantized`: the previous product's input, already there).
   */
  private product(b: PartBuffers, out: Float32Array, x: Float32Array, rows: Float32Array[], w: WeightMatrix, count: number, n: number, d: number, quantized = false): void {
    const K = this.kernels;
    if (w instanceof Float32Array) {
      K.matmulForward!(out, x, w, count, n, d);
      return;
    }
    const gs = this.m.groupSize;
    if (!quantized) {
      const v = b.quantized.get(n)!;
      for (let i = 0; i < count; i++) K.quantize!(v.q[i]!, v.s[i]!, rows[i]!, n, gs);
    }
    K.matmulQ8Forward!(out, b.xq!, b.xs!, w.q, w.s, count, n, d, gs);
  }

  /**
   * Feeds tokens[0 … n) at positions pos … pos+n-1 (their keys and values go into the caches), a
   * block at a time; with `visit`, computes every token's logits and hands them over in order.
   */
  run(tokens: ArrayLike<number>, pos: number, visit?: LogitsVisitor): void {
    for (let start = 0; start < tokens.length; start += this.rows) {
      this.block(tokens, start, Math.min(this.rows, tokens.length - start), pos + start, visit);
    }
  }

  private block(tokens: ArrayLike<number>, start: number, count: number, pos: number, visit: LogitsVisitor | undefined): void {
    const m = this.m, K = this.kernels;
    const { dim, eps } = m;
    const emb = m.tokenEmbedding;
    const gs = m.groupSize;
    const first = this.buffers[0]!;
    for (let i = 0; i < count; i++) {
      const t = tokens[start + i]!;
      const row = first.xRows[i]!;
      if (emb instanceof Float32Array) {
        row.set(emb.subarray(t * dim, (t + 1) * dim));
      } else {
        for (let j = 0, o = t * dim; j < dim; j++) row[j] = emb.q[o + j]! * emb.s[Math.floor((o + j) / gs)]!;
      }
    }
    for (let p = 0; p < m.parts.length; p++) {
      const b = this.buffers[p]!;
      // the residual streams cross into this part's memory
      if (p > 0) b.x.set(this.buffers[p - 1]!.x.subarray(0, count * dim));
      for (const L of m.parts[p]!.layers) this.layer(b, L, m.parts[p]!.att, count, pos);
    }
    if (visit === undefined) return;
    const b = this.buffers[this.buffers.length - 1]!;
    const logits = this.logitBuffer();
    this.rmsnormRows(b, m.rmsFinal, count);
    this.product(b, logits, b.xb, b.xbRows, m.wcls, count, dim, m.vocabSize);
    for (let i = 0; i < count; i++) visit(start + i, this.logitRows[i]!);
  }

  /** One layer over `count` rows of part buffers b (att: the attention scratch of its memory). */
  private layer(b: PartBuffers, L: BlockLayer, att: Float32Array, count: number, pos: number): void {
    const m = this.m, K = this.kernels;
    const { dim, hiddenDim: hidden, eps, theta } = m;
    const { kvDim: kv, headSize } = m.shape;
    const gs = m.groupSize;
    const xb = b.xb, xbRows = b.xbRows;
    const grouped = this.grouped.get(L);
    this.rmsnormRows(b, L.rmsAtt, count);
    if (grouped !== undefined) {
      K.matmulForwardMany!(xb, count, dim, grouped.qkv); // Q, K, V in one hand-off to the threads
    } else {
      this.product(b, b.q, xb, xbRows, L.wq, count, dim, dim);
      this.product(b, b.k, xb, xbRows, L.wk, count, dim, kv, true);
      this.product(b, b.v, xb, xbRows, L.wv, count, dim, kv, true);
    }
    if (K.ropeRows !== undefined) K.ropeRows(b.q, b.k, pos, count, dim, kv, headSize, theta);
    else for (let i = 0; i < count; i++) K.rope(b.qRows[i]!, b.kRows[i]!, pos + i, dim, kv, headSize, theta);
    L.keyCache.set(count === this.rows ? b.k : b.k.subarray(0, count * kv), pos * kv);
    L.valueCache.set(count === this.rows ? b.v : b.v.subarray(0, count * kv), pos * kv);
    K.attentionBlock(xb, b.q, L.keyCache, L.valueCache, att, pos, count, m.shape, gs > 0);
    this.product(b, b.xb2, xb, xbRows, L.wo, count, dim, dim);
    K.add(b.x, b.xb2, count * dim);

    this.rmsnormRows(b, L.rmsFfn, count);
    if (grouped !== undefined) {
      K.matmulForwardMany!(xb, count, dim, grouped.gate);
    } else {
      this.product(b, b.hb, xb, xbRows, L.w1, count, dim, hidden);
      this.product(b, b.hb2, xb, xbRows, L.w3, count, dim, hidden, true);
    }
    K.swiglu(b.hb, b.hb2, count * hidden);
    this.product(b, xb, b.hb, b.hbRows, L.w2, count, hidden, dim);
    K.add(b.x, xb, count * dim);
  }

  /** xb = rmsnorm(x) ⊙ weight, row by row over the first `count` rows of part buffers b. */
  private rmsnormRows(b: PartBuffers, weight: Float32Array, count: number): void {
    const K = this.kernels, { dim, eps } = this.m;
    if (K.rmsnormRows !== undefined) K.rmsnormRows(b.xb, b.x, weight, count, dim, eps);
    else for (let i = 0; i < count; i++) K.rmsnorm(b.xbRows[i]!, b.xRows[i]!, weight, dim, eps);
  }

  private logitBuffer(): Float32Array {
    if (this.logits === undefined) {
      const V = this.m.vocabSize;
      const logits = this.kernels.allocate(this.rows * V, this.m.parts[this.m.parts.length - 1]!.memory);
      this.logitRows = Array.from({ length: this.rows }, (_, i) => logits.subarray(i * V, (i + 1) * V));
      this.logits = logits;
    }
    return this.logits;
  }
}
