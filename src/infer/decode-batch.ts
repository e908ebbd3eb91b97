// Decoding several sessions together: when the sessions of one model (a server's concurrent
// requests) each have their next token ready, one forward pass computes all of them — every weight
// matrix is read from memory once for the whole group instead of once per session, which is what
// a token of decoding costs on a model larger than the caches.
//
// How a session's token gets into a batch: after sampling, the generation loop tells the engine
// which token it will feed next (InferenceEngine.prepare). When any session of the group then
// calls forward(), the group runs that token together with every other session's prepared one, and
// leaves each session's logits in its own buffer; a session whose token was computed that way
// finds its logits ready when it calls forward() itself. A prepared token that is never asked for
// (the request ended) only wrote a key/value row that the session's next request overwrites.
//
// The numbers are each session's own, bit for bit: every step is forward.ts's for one token —
// rmsnorm, RoPE and attention row by row on the session's own position and cache, the products
// by kernels that give each row exactly what the one-token product gives (matmulMany, and
// matmulManyGroup for the products that share an input; for Q8_0 matmulQ8Forward on rows quantized
// one by one) — so what a request writes does not depend on what else the server is doing.

import type { Q8Kernels } from '../kernels/q8-types.js';
import type { AttentionCall, AttentionShape, GroupedProduct, Kernels, WeightMatrix } from '../kernels/types.js';
import type { BatchModel, LayerWeights } from './prefill.js';

/** The shared model. */
export interface DecodeModel extends BatchModel {
  /** Q8_0: the weights' reading hint (see forward.ts); results are the same either way. */
  readonly streamed: boolean;
  readonly layers: readonly LayerWeights[];
}

/** What the group needs of a session: its caches, scratch and logits, and its prepared token. */
export interface DecodeMember {
  readonly caches: ReadonlyArray<{ readonly keyCache: Float32Array; readonly valueCache: Float32Array }>;
  readonly att: Float32Array;
  readonly logits: Float32Array;
  /** The token prepared for position pendingPos (−1: none), and whether a batch already ran it. */
  pendingToken: number;
  pendingPos: number;
  ready: boolean;
}

export type DecodeKernels = Kernels & Partial<Q8Kernels>;

/** Whether `kernels` can decode sessions of a model with Q8_0 group size `groupSize` (0: float32) together. */
export function canDecodeTogether(kernels: DecodeKernels, groupSize: number): boolean {
  return groupSize === 0 || (kernels.matmulQ8Forward !== undefined && kernels.quantize !== undefined && kernels.allocateInt8 !== undefined);
}

/** The sessions of one model and the buffers of their batches. */
export class DecodeGroup {
  private readonly members: DecodeMember[] = [];
  /** Members in the batch being run, and their tokens and positions (reused arrays). */
  private readonly batch: DecodeMember[] = [];
  private readonly tokens: number[] = [];
  private readonly positions: number[] = [];
  private rows = 0;
  private bufs: ReturnType<DecodeGroup['allocate']> | undefined;
  /** Forward passes run for several sessions, and the tokens they ran (for statistics and tests). */
  batches = 0;
  batchedTokens = 0;

  constructor(private readonly m: DecodeModel, private readonly kernels: DecodeKernels) {}

  add(member: DecodeMember): void {
    if (!this.members.includes(member)) this.members.push(member);
  }

  /**
   * Runs `self`'s `token` at `pos` together with the other members' prepared tokens, leaving each
   * one's logits in its own buffer (the others marked ready). Returns false, doing nothing, when
   * no other member has a token prepared (then one session alone is better served by forward.ts).
   */
  run(self: DecodeMember, token: number, pos: number): boolean {
    const { batch, tokens, positions } = this;
    batch.length = 0; tokens.length = 0; positions.length = 0;
    batch.push(self); tokens.push(token); positions.push(pos);
    for (const other of this.members) {
      if (other !== self && other.pendingPos >= 0 && !other.ready) {
        batch.push(other); tokens.push(other.pendingToken); positions.push(other.pendingPos);
      }
    }
    if (batch.length < 2) return false;
    this.forward(batch.length);
    for (let i = 1; i < batch.length; i++) batch[i]!.ready = true;
    this.batches++;
    this.batchedTokens += batch.length;
    return true;
  }

  private allocate(rows: number) {
    const { dim, hiddenDim: hidden, vocabSize: V, groupSize: gs } = this.m;
    const kv = this.m.shape.kvDim;
    const K = this.kernels;
    const rowsOf = (a: Float32Array, w: number): Float32Array[] => Array.from({ length: rows }, (_, i) => a.subarray(i * w, (i + 1) * w));
    const x = K.allocate(rows * dim), xb = K.allocate(rows * dim), xb2 = K.allocate(rows * dim), q = K.allocate(rows * dim);
    const k = K.allocate(rows * kv), v = K.allocate(rows * kv), hb = K.allocate(rows * hidden), hb2 = K.allocate(rows * hidden);
    const logits = K.allocate(rows * V);
    const widest = Math.max(dim, hidden);
    const xq = gs > 0 ? K.allocateInt8!(rows * widest) : undefined;
    const xs = gs > 0 ? K.allocate(rows * Math.ceil(widest / gs)) : undefined;
    const quantized = (n: number) => ({
      q: Array.from({ length: rows }, (_, i) => xq!.subarray(i * n, (i + 1) * n)),
      s: Array.from({ length: rows }, (_, i) => xs!.subarray(i * Math.ceil(n / gs), (i + 1) * Math.ceil(n / gs))),
    });
    return {
      x, xb, xb2, q, k, v, hb, hb2, logits, xq, xs,
      xRows: rowsOf(x, dim), xbRows: rowsOf(xb, dim), hbRows: rowsOf(hb, hidden), qRows: rowsOf(q, dim),
      kRows: rowsOf(k, kv), vRows: rowsOf(v, kv), logitRows: rowsOf(logits, V),
      // each row's attention arguments (filled layer by layer)
      attention: Array.from({ length: rows }, (_, i): AttentionCall => ({ out: xb, q, keyCache: k, valueCache: v, att: q, pos: i })),
      // each layer's products that share an input (float32 weights), for matmulManyGroup
      qkv: this.m.layers.map((L): GroupedProduct[] => [{ xout: q, w: L.wq, d: dim }, { xout: k, w: L.wk, d: kv }, { xout: v, w: L.wv, d: kv }]),
      ffn: this.m.layers.map((L): GroupedProduct[] => [{ xout: hb, w: L.w1, d: hidden }, { xout: hb2, w: L.w3, d: hidden }]),
      qDim: gs > 0 ? quantized(dim) : undefined, qHidden: gs > 0 ? quantized(hidden) : undefined,
    };
  }

  /** out (count, d) = W · row i of x for each row (bit for bit the one-token product). */
  private product(out: Float32Array, x: Float32Array, rows: Float32Array[], w: WeightMatrix, count: number, n: number, d: number, quantized = false): void {
    const K = this.kernels;
    if (w instanceof Float32Array) {
      K.matmulMany(out, x, w, n, d, count);
      return;
    }
    const b = this.bufs!;
    const gs = this.m.groupSize;
    if (!quantized) {
      const qv = n === this.m.dim ? b.qDim! : b.qHidden!;
      for (let i = 0; i < count; i++) K.quantize!(qv.q[i]!, qv.s[i]!, rows[i]!, n, gs);
    }
    K.matmulQ8Forward!(out, b.xq!, b.xs!, w.q, w.s, count, n, d, gs);
  }

  /** forward.ts's run() for each member of the batch, token i at position i. */
  private forward(count: number): void {
    if (this.rows < count) {
      this.bufs = this.allocate(count);
      this.rows = count;
    }
    const b = this.bufs!;
    const m = this.m, K = this.kernels;
    const { dim, hiddenDim: hidden, eps, theta } = m;
    const { kvDim: kv, headSize } = m.shape;
    const emb = m.tokenEmbedding;
    const gs = m.groupSize;
    for (let i = 0; i < count; i++) {
      const t = this.tokens[i]!, row = b.xRows[i]!;
      if (emb instanceof Float32Array) row.set(emb.subarray(t * dim, (t + 1) * dim));
      else for (let j = 0, o = t * dim; j < dim; j++) row[j] = emb.q[o + j]! * emb.s[Math.floor((o + j) / gs)]!;
    }
    m.layers.forEach((L, l) => {
      for (let i = 0; i < count; i++) K.rmsnorm(b.xbRows[i]!, b.xRows[i]!, L.rmsAtt, dim, eps);
      if (K.matmulManyGroup !== undefined && L.wq instanceof Float32Array) {
        K.matmulManyGroup(b.xb, dim, count, b.qkv[l]!);
      } else {
        this.product(b.q, b.xb, b.xbRows, L.wq, count, dim, dim);
        this.product(b.k, b.xb, b.xbRows, L.wk, count, dim, kv, true);
        this.product(b.v, b.xb, b.xbRows, L.wv, count, dim, kv, true);
      }
      for (let i = 0; i < count; i++) {
        const pos = this.positions[i]!, cache = this.batch[i]!.caches[l]!;
        K.rope(b.qRows[i]!, b.kRows[i]!, pos, dim, kv, headSize, theta);
        cache.keyCache.set(b.kRows[i]!, pos * kv);
        cache.valueCache.set(b.vRows[i]!, pos * kv);
        const call = b.attention[i]!;
        call.out = b.xbRows[i]!; call.q = b.qRows[i]!; call.keyCache = cache.keyCache; call.valueCache = cache.valueCache;
        call.att = this.batch[i]!.att; call.pos = pos;
      }
      if (K.attentionMany !== undefined) K.attentionMany(b.attention, count, m.shape);
      else for (let i = 0; i < count; i++) {
        const c = b.attention[i]!;
        K.attention(c.out, c.q, c.keyCache, c.valueCache, c.att, c.pos, m.shape);
      }
      this.product(b.xb2, b.xb, b.xbRows, L.wo, count, dim, dim);
      K.add(b.x, b.xb2, count * dim);
      for (let i = 0; i < count; i++) K.rmsnorm(b.xbRows[i]!, b.xRows[i]!, L.rmsFfn, dim, eps);
      if (K.matmulManyGroup !== undefined && L.w1 instanceof Float32Array) {
        K.matmulManyGroup(b.xb, dim, count, b.ffn[l]!);
      } else {
        this.product(b.hb, b.xb, b.xbRows, L.w1, count, dim, hidden);
        this.product(b.hb2, b.xb, b.xbRows, L.w3, count, dim, hidden, true);
      }
      K.swiglu(b.hb, b.hb2, count * hidden);
      this.product(b.xb, b.hb, b.hbRows, L.w2, count, hidden, dim);
      K.add(b.x, b.xb, count * dim);
    });
    for (let i = 0; i < count; i++) K.rmsnorm(b.xRows[i]!, b.xRows[i]!, m.rmsFinal, dim, eps);
    this.product(b.logits, b.x, b.xRows, m.wcls, count, dim, m.vocabSize);
    for (let i = 0; i < count; i++) this.batch[i]!.logits.set(b.logitRows[i]!);
  }
}
