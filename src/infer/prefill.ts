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
// float32 rounding only. The block buffers are allocated on
// first use.

import type { Q8Kernels } from '../kernels/q8-types.js';
import type { TrainKernels } from '../kernels/train-types.js';
import type { AttentionShape, Kernels, WeightMatrix } from '../kernels/types.js';

/** Tokens per block: enough rows for the products to run near full speed, buffers of a few MB. */
export const PREFILL_BLOCK = 128;

/** One layer's weights and caches (forward.ts's views). */
export interface BlockLayer {
  readonly rmsAtt: Float32Array; readonly wq: WeightMatrix; readonly wk: WeightMatrix; readonly wv: WeightMatrix;
  readonly wo: WeightMatrix; readonly rmsFfn: Float32Array; readonly w1: WeightMatrix; readonly w2: WeightMatrix;
  readonly w3: WeightMatrix; readonly keyCache: Float32Array; readonly valueCache: Float32Array;
}

/** What the block forward reads: the model's weights (float32, or Q8_0 with groupSize > 0), caches and shape. */
export interface BlockModel {
  readonly dim: number;
  readonly hiddenDim: number;
  readonly vocabSize: number;
  readonly eps: number;
  readonly theta: number;
  readonly shape: AttentionShape;
  readonly groupSize: number;
  readonly layers: readonly BlockLayer[];
  readonly tokenEmbedding: WeightMatrix;
  readonly rmsFinal: Float32Array;
  readonly wcls: WeightMatrix;
  /** Attention scratch (nHeads, seqLen): the one-token state's, which a prefill may overwrite. */
  readonly att: Float32Array;
}

/** The kernels of a block: float32 products for float32 weights, the int8 ones for Q8_0. */
export type BlockKernels = Kernels & Partial<Pick<TrainKernels, 'matmulForward'>> & Partial<Q8Kernels>;

/** Whether `kernels` can run blocks of a model with Q8_0 group size `groupSize` (0: float32). */
export function canRunBlocks(kernels: BlockKernels, groupSize: number): boolean {
  return groupSize === 0 ? kernels.matmulForward !== undefined
    : kernels.matmulQ8Forward !== undefined && kernels.quantize !== undefined && kernels.allocateInt8 !== undefined;
}

/** Receives the logits of prompt token `index` (the array is valid during the call only). */
export type LogitsVisitor = (index: number, logits: Float32Array) => void;

export class BlockForward {
  /** Rows per block. */
  readonly rows: number;
  private readonly x: Float32Array; //   (rows, dim) residual streams
  private readonly xb: Float32Array; //  (rows, dim)
  private readonly xb2: Float32Array; // (rows, dim)
  private readonly q: Float32Array; //   (rows, dim)
  private readonly k: Float32Array; //   (rows, kvDim)
  private readonly v: Float32Array; //   (rows, kvDim)
  private readonly hb: Float32Array; //  (rows, hidden)
  private readonly hb2: Float32Array; // (rows, hidden)
  /** Row views, made once (the per-row kernels take one row each). */
  private readonly xRows: Float32Array[];
  private readonly xbRows: Float32Array[];
  private readonly hbRows: Float32Array[];
  private readonly qRows: Float32Array[];
  private readonly kRows: Float32Array[];
  /** Q8_0: a product's input rows quantized (rows, n) and their scales, as rows of dim and of hidden values. */
  private readonly xq: Int8Array | undefined;
  private readonly xs: Float32Array | undefined;
  private readonly quantized: ReadonlyMap<number, { readonly q: Int8Array[]; readonly s: Float32Array[] }>;
  /** (rows, vocab), made on the first prefill that asks for logits. */
  private logits: Float32Array | undefined;
  private logitRows: Float32Array[] = [];

  constructor(private readonly m: BlockModel, private readonly kernels: BlockKernels, rows = PREFILL_BLOCK) {
    this.rows = Math.max(1, Math.min(rows, m.shape.seqLen));
    const { dim, hiddenDim } = m;
    const kv = m.shape.kvDim;
    const r = this.rows;
    // one allocation (the kernels' memory is never freed: a failure leaves nothing half-made)
    const sizes = [dim, dim, dim, dim, kv, kv, hiddenDim, hiddenDim].map((w) => Math.ceil((r * w) / 16) * 16);
    const block = kernels.allocate(sizes.reduce((a, b) => a + b, 0));
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
      this.xq = kernels.allocateInt8!(r * widest);
      this.xs = kernels.allocate(r * Math.ceil(widest / gs));
      for (const n of [dim, hiddenDim]) {
        const g = Math.ceil(n / gs);
        quantized.set(n, {
          q: Array.from({ length: r }, (_, i) => this.xq!.subarray(i * n, (i + 1) * n)),
          s: Array.from({ length: r }, (_, i) => this.xs!.subarray(i * g, (i + 1) * g)),
        });
      }
    }
    this.quantized = quantized;
  }

  /**
   * out (count, d) = rows of x (count, n) · Wᵀ: float32, or for Q8_0 weights from the rows
   * quantized first (unless `quantized`: the previous product's input, already in xq / xs).
   */
  private product(out: Float32Array, x: Float32Array, rows: Float32Array[], w: WeightMatrix, count: number, n: number, d: number, quantized = false): void {
    const K = this.kernels;
    if (w instanceof Float32Array) {
      K.matmulForward!(out, x, w, count, n, d);
      return;
    }
    const gs = this.m.groupSize;
    if (!quantized) {
      const v = this.quantized.get(n)!;
      for (let i = 0; i < count; i++) K.quantize!(v.q[i]!, v.s[i]!, rows[i]!, n, gs);
    }
    K.matmulQ8Forward!(out, this.xq!, this.xs!, w.q, w.s, count, n, d, gs);
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
    const { dim, hiddenDim: hidden, eps, theta } = m;
    const { kvDim: kv, headSize } = m.shape;
    const emb = m.tokenEmbedding;
    const gs = m.groupSize;
    for (let i = 0; i < count; i++) {
      const t = tokens[start + i]!;
      const row = this.xRows[i]!;
      if (emb instanceof Float32Array) {
        row.set(emb.subarray(t * dim, (t + 1) * dim));
      } else {
        for (let j = 0, o = t * dim; j < dim; j++) row[j] = emb.q[o + j]! * emb.s[Math.floor((o + j) / gs)]!;
      }
    }
    const xb = this.xb, xbRows = this.xbRows;
    for (const L of m.layers) {
      for (let i = 0; i < count; i++) K.rmsnorm(xbRows[i]!, this.xRows[i]!, L.rmsAtt, dim, eps);
      this.product(this.q, xb, xbRows, L.wq, count, dim, dim);
      this.product(this.k, xb, xbRows, L.wk, count, dim, kv, true);
      this.product(this.v, xb, xbRows, L.wv, count, dim, kv, true);
      for (let i = 0; i < count; i++) K.rope(this.qRows[i]!, this.kRows[i]!, pos + i, dim, kv, headSize, theta);
      L.keyCache.set(count === this.rows ? this.k : this.k.subarray(0, count * kv), pos * kv);
      L.valueCache.set(count === this.rows ? this.v : this.v.subarray(0, count * kv), pos * kv);
      K.attentionBlock(xb, this.q, L.keyCache, L.valueCache, m.att, pos, count, m.shape, gs > 0);
      this.product(this.xb2, xb, xbRows, L.wo, count, dim, dim);
      K.add(this.x, this.xb2, count * dim);

      for (let i = 0; i < count; i++) K.rmsnorm(xbRows[i]!, this.xRows[i]!, L.rmsFfn, dim, eps);
      this.product(this.hb, xb, xbRows, L.w1, count, dim, hidden);
      this.product(this.hb2, xb, xbRows, L.w3, count, dim, hidden, true);
      K.swiglu(this.hb, this.hb2, count * hidden);
      this.product(xb, this.hb, this.hbRows, L.w2, count, hidden, dim);
      K.add(this.x, xb, count * dim);
    }
    if (visit === undefined) return;
    const logits = this.logitBuffer();
    for (let i = 0; i < count; i++) K.rmsnorm(xbRows[i]!, this.xRows[i]!, m.rmsFinal, dim, eps);
    this.product(logits, xb, xbRows, m.wcls, count, dim, m.vocabSize);
    for (let i = 0; i < count; i++) visit(start + i, this.logitRows[i]!);
  }

  private logitBuffer(): Float32Array {
    if (this.logits === undefined) {
      const V = this.m.vocabSize;
      const logits = this.kernels.allocate(this.rows * V);
      this.logitRows = Array.from({ length: this.rows }, (_, i) => logits.subarray(i * V, (i + 1) * V));
      this.logits = logits;
    }
    return this.logits;
  }
}
