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
// Row by row this is exactly forward.ts's computation; the products sum their terms in another
// order than the one-token matmul (see assembly/gemm.ts), so the results differ from feeding the
// tokens one by one by float32 rounding only. The block buffers are allocated on first use.

import type { TrainKernels } from '../kernels/train-types.js';
import type { AttentionShape, Kernels } from '../kernels/types.js';

/** Tokens per block: enough rows for the products to run near full speed, buffers of a few MB. */
export const PREFILL_BLOCK = 128;

/** One layer's float32 weights and caches (forward.ts's views). */
export interface BlockLayer {
  readonly rmsAtt: Float32Array; readonly wq: Float32Array; readonly wk: Float32Array; readonly wv: Float32Array;
  readonly wo: Float32Array; readonly rmsFfn: Float32Array; readonly w1: Float32Array; readonly w2: Float32Array;
  readonly w3: Float32Array; readonly keyCache: Float32Array; readonly valueCache: Float32Array;
}

/** What the block forward reads: the model's float32 weights, caches and shape. */
export interface BlockModel {
  readonly dim: number;
  readonly hiddenDim: number;
  readonly vocabSize: number;
  readonly eps: number;
  readonly theta: number;
  readonly shape: AttentionShape;
  readonly layers: readonly BlockLayer[];
  readonly tokenEmbedding: Float32Array;
  readonly rmsFinal: Float32Array;
  readonly wcls: Float32Array;
  /** Attention scratch (nHeads, seqLen): the one-token state's, which a prefill may overwrite. */
  readonly att: Float32Array;
}

export type BlockKernels = Kernels & Pick<TrainKernels, 'matmulForward'>;

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
  private readonly qRows: Float32Array[];
  private readonly kRows: Float32Array[];
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
    this.qRows = rowsOf(this.q, dim);
    this.kRows = rowsOf(this.k, kv);
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
    for (let i = 0; i < count; i++) {
      const t = tokens[start + i]!;
      this.xRows[i]!.set(emb.subarray(t * dim, (t + 1) * dim));
    }
    for (const L of m.layers) {
      for (let i = 0; i < count; i++) K.rmsnorm(this.xbRows[i]!, this.xRows[i]!, L.rmsAtt, dim, eps);
      K.matmulForward(this.q, this.xb, L.wq, count, dim, dim);
      K.matmulForward(this.k, this.xb, L.wk, count, dim, kv);
      K.matmulForward(this.v, this.xb, L.wv, count, dim, kv);
      for (let i = 0; i < count; i++) K.rope(this.qRows[i]!, this.kRows[i]!, pos + i, dim, kv, headSize, theta);
      L.keyCache.set(count === this.rows ? this.k : this.k.subarray(0, count * kv), pos * kv);
      L.valueCache.set(count === this.rows ? this.v : this.v.subarray(0, count * kv), pos * kv);
      K.attentionBlock(this.xb, this.q, L.keyCache, L.valueCache, m.att, pos, count, m.shape);
      K.matmulForward(this.xb2, this.xb, L.wo, count, dim, dim);
      K.add(this.x, this.xb2, count * dim);

      for (let i = 0; i < count; i++) K.rmsnorm(this.xbRows[i]!, this.xRows[i]!, L.rmsFfn, dim, eps);
      K.matmulForward(this.hb, this.xb, L.w1, count, dim, hidden);
      K.matmulForward(this.hb2, this.xb, L.w3, count, dim, hidden);
      K.swiglu(this.hb, this.hb2, count * hidden);
      K.matmulForward(this.xb, this.hb, L.w2, count, hidden, dim);
      K.add(this.x, this.xb, count * dim);
    }
    if (visit === undefined) return;
    const logits = this.logitBuffer();
    for (let i = 0; i < count; i++) K.rmsnorm(this.xbRows[i]!, this.xRows[i]!, m.rmsFinal, dim, eps);
    K.matmulForward(logits, this.xb, m.wcls, count, dim, m.vocabSize);
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
