// How the calling thread commands the kernel worker threads: through a small control block of
// int32s in the shared WebAssembly memory, with Atomics — no message per kernel call.
//
// A command's work is cut into chunks (rows of a matmul, heads of attention, …). Each participant
// (the calling thread is 0, the workers 1 … threads-1) owns a fixed, contiguous home range of
// the chunks — the same rows of the same matrix on every token — and works through it first;
// then it helps with the other participants' unclaimed chunks. The fixed ranges matter: each core
// then streams the same part of the weights every token and finds more of it still in its caches
// (measured on the 15M shape, 2 threads: 2.09 ms per forward pass with a first-come split, which
// hands the rows to whichever thread asks first, 1.67–1.78 ms with fixed ranges; llama2.c's run.c
// built with OpenMP's schedule(dynamic) instead of static: 345 instead of 600–667 tok/s). The
// helping means a thread the OS has descheduled (2 cores shared with other processes) gets fewer
// chunks instead of holding everyone up. The calling thread then waits until every claimed chunk
// is finished.
//
//   STATE     (command number mod 2^21) << 10 | chunks. The caller writes OP, ARGS and the
//             chunking, resets FINISHED and the cursors, then publishes the command by storing
//             STATE (+ notify).
//   CURSOR p  (one per participant, each on its own cache line) (command number) << 10 | chunks
//             of p's home range already claimed. A chunk is claimed by raising a cursor with
//             compareExchange, which only succeeds while the cursor still carries the command
//             number the claimer is working on; the caller rewrites arguments only after every
//             chunk is finished, and resets the cursors after that, so a worker waking late can
//             never run a stale or half-written command.
//   OP        which kernel (Op below);   ARGS  its integer arguments (addresses are byte offsets)
//   MEM       which memory the arguments are addresses in (a model spread over several memories:
//             every participant has an instance of the kernels on each, src/kernels/wasm.ts)
//   CHUNK, CHUNK2, SPLIT  how items map to chunks (chunkRange)
//   FAILED    set when a worker's chunk threw
//   FINISHED  chunks completed (on its own cache line): each participant adds the number it ran
//             once it finds nothing left to claim
//   TABLE     per-item arguments of a command that has more than ARGS holds (attentionMany:
//             six per session)
//
// Idle workers spin briefly (the next command of a forward pass follows within microseconds),
// then sleep in Atomics.wait. This file is platform-neutral: a browser Web Worker could run
// `commandLoop` unchanged.

import type { KernelExports } from './wasm.js';

export const STATE = 0;
export const OP = 1;
export const MEM = 2;
export const CHUNK = 3;
export const CHUNK2 = 4;
export const SPLIT = 5;
export const FAILED = 6;
export const ARGS = 8;
export const FINISHED = 32;
export const TABLE = 48;
const TABLE_INTS = 64;
/** Participant p's cursor is at CURSORS + p * CURSOR_STRIDE (one 64-byte cache line each). */
const CURSORS = TABLE + TABLE_INTS;
const CURSOR_STRIDE = 16;

/** Int32 slots in the control block of a pool of `threads` participants. */
export function controlInts(threads: number): number {
  return CURSORS + threads * CURSOR_STRIDE;
}

const CHUNK_BITS = 10;
/** At most this many chunks per command. */
export const MAX_CHUNKS = (1 << CHUNK_BITS) - 1;
const SEQ_MASK = (1 << 21) - 1;

export const Op = {
  exit: 0,
  matmul: 1, //          xout, x, w, n, d                                 chunks of CHUNK rows
  attention: 2, //       out, q, keyCache, valueCache, att, pos, nHeads, nKvHeads, headSize, kvDim, seqLen;  one head per chunk
  matmulQ8: 3, //        xout, xq, xs, wq, ws, n, d, groupSize, streamed  chunks of CHUNK rows
  gemm: 4, //            c, ldc, a, sam, sak, b, sb, bRows, K, accumulate, M, N, scratch, scratchBytes
  //                     (assembly/gemm.ts); chunks of CHUNK rows × CHUNK2 columns of C, SPLIT
  //                     column chunks per row of chunks; participant p packs into scratch + p·scratchBytes
  matmulGroup: 6, //     x, n, count, then count × (xout, w, d)          chunks of CHUNK rows of the products' rows one after another
  matmulQ8Group: 7, //   xq, xs, n, groupSize, streamed, count, then count × (xout, wq, ws, d)   the same
  gemmQ8: 9, //          c, ldc, xq, xs, wq, ws, n, gs, M, d, scratch, scratchBytes (assembly/gemm-q8.ts);
  //                     chunks as gemm's (CHUNK rows × CHUNK2 channels, SPLIT channel chunks per row of chunks)
  attentionRows: 10, //  out, q, keyCache, valueCache, att, pos, count, nHeads, nKvHeads, headSize, kvDim, seqLen;  one head per chunk
  matmulManyGroup: 11, // matmulGroup's, and at MANY_XI, MANY_COUNT: x interleaved (interleaveSessions), the vectors
  expSum: 12, //         x, n, out                                        chunks of CHUNK values; chunk c's (max, sum) at out + 16c
  swiglu: 13, //         hb, hb2, size                                    chunks of CHUNK values
  attentionBlock: 8, //  out, q, keyCache, valueCache, scores, pos, count, nHeads, nKvHeads, headSize, kvDim, scoresBytes,
  //                     scratch, scratchBytes;  one head per chunk; participant p's scores at scores + p·scoresBytes
  gemmMany: 14, //       a, K, M, scratch, scratchBytes, count, then count × (c, b, N): c (M, N) = a (M, K) · bᵀ, b (N, K)
  //                     rows, for each product; chunks as gemm's over the products' columns one after another
  attentionMany: 15, //  count, nHeads, nKvHeads, headSize, kvDim, seqLen; TABLE: count × (out, q, keyCache, valueCache,
  //                     att, pos);  one session per chunk
} as const;

/** Most sessions in one attentionMany command (TABLE holds 6 ints for each). */
export const MAX_ATTENTION_MANY = Math.floor(TABLE_INTS / 6);

/** Most products in one gemmMany command. */
export const MAX_GEMM_MANY = 3;

/** Most products in one matmulGroup / matmulQ8Group / matmulManyGroup command (the ARGS slots hold 3). */
export const MAX_GROUP = 3;
/** matmulManyGroup's two arguments after matmulGroup's (x, n, count, MAX_GROUP × (xout, w, d)). */
export const MANY_XI = ARGS + 3 + 3 * MAX_GROUP, MANY_COUNT = MANY_XI + 1;

/**
 * How long a thread polls (STATE / FINISHED) before sleeping in Atomics.wait. Polling is what makes
 * a hand-off take a microsecond instead of tens, but on an oversubscribed machine a polling thread
 * only steals the core from the thread it waits for. So the budget adapts: it halves each time
 * polling was in vain (the thread had to sleep) and doubles each time it sufficed, between about
 * 2 µs and 1 ms of polling. The upper end outlasts the gap between two tokens' forward passes (the
 * sampler: ~0.3 ms for a 32000-token vocabulary), so during a generation the workers are awake
 * when the next token starts: sleeping there cost the 15M int8 model ~0.1 ms per token.
 */
export class SpinBudget {
  static readonly MIN = 1 << 8;
  static readonly MAX = 1 << 17;
  limit = SpinBudget.MAX;

  /**
   * Waits until ctrl[index] !== value (unchanged: keep waiting); returns the new value. Sleeps
   * in slices of at most sliceMs once the polling budget is spent.
   */
  waitWhileEqual(ctrl: Int32Array, index: number, value: number, sliceMs = Infinity): number {
    for (let spins = 0; spins < this.limit; spins++) {
      const now = Atomics.load(ctrl, index);
      if (now !== value) {
        if (this.limit < SpinBudget.MAX) this.limit *= 2;
        return now;
      }
    }
    if (this.limit > SpinBudget.MIN) this.limit >>= 1;
    for (;;) {
      const now = Atomics.load(ctrl, index);
      if (now !== value) return now;
      Atomics.wait(ctrl, index, value, sliceMs);
    }
  }
}

export function seqOf(state: number): number {
  return state >>> CHUNK_BITS;
}

/** The STATE value publishing command number `seq` with `chunks` chunks to claim. */
export function initialState(seq: number, chunks: number): number {
  return ((seq & SEQ_MASK) << CHUNK_BITS) | chunks;
}

/** Items per chunk so that `total` items make about `parts` chunks, a multiple of `align`, at least `min`. */
export function chunkSize(total: number, parts: number, align: number, min: number): number {
  let size = Math.max(min, Math.ceil(total / parts / align) * align);
  while (Math.ceil(total / size) > MAX_CHUNKS) size += align;
  return size;
}

/** First item of chunk c of `size` items, and the end of that chunk out of `total` items. */
function chunkStart(c: number, size: number): number {
  return c * size;
}
function chunkEnd(c: number, size: number, total: number): number {
  return Math.min(total, (c + 1) * size);
}

/**
 * Runs chunk c of the command in the control block, on participant `self`. (Called for every
 * chunk of every kernel of every token: it reads the arguments straight from the control block
 * and allocates nothing.)
 */
export function runChunk(k: KernelExports, ctrl: Int32Array, c: number, self: number): void {
  const A = ARGS;
  const size = ctrl[CHUNK]!;
  switch (ctrl[OP]) {
    case Op.matmul:
      k.matmulRows(ctrl[A]!, ctrl[A + 1]!, ctrl[A + 2]!, ctrl[A + 3]!, chunkStart(c, size), chunkEnd(c, size, ctrl[A + 4]!));
      break;
    case Op.attention:
      k.attentionHeads(ctrl[A]!, ctrl[A + 1]!, ctrl[A + 2]!, ctrl[A + 3]!, ctrl[A + 4]!, ctrl[A + 5]!, ctrl[A + 6]!, ctrl[A + 7]!,
        ctrl[A + 8]!, ctrl[A + 9]!, ctrl[A + 10]!, c, c + 1);
      break;
    case Op.gemmQ8: {
      const split = ctrl[SPLIT]!, size2 = ctrl[CHUNK2]!;
      const rc = Math.floor(c / split), cc = c - rc * split;
      k.gemmQ8(ctrl[A]!, ctrl[A + 1]!, ctrl[A + 2]!, ctrl[A + 3]!, ctrl[A + 4]!, ctrl[A + 5]!, ctrl[A + 6]!, ctrl[A + 7]!,
        chunkStart(rc, size), chunkEnd(rc, size, ctrl[A + 8]!), chunkStart(cc, size2), chunkEnd(cc, size2, ctrl[A + 9]!),
        ctrl[A + 10]! + self * ctrl[A + 11]!, ctrl[A + 11]!);
      break;
    }
    case Op.attentionRows:
      k.attentionRowsHeads(ctrl[A]!, ctrl[A + 1]!, ctrl[A + 2]!, ctrl[A + 3]!, ctrl[A + 4]!, ctrl[A + 5]!, ctrl[A + 6]!, ctrl[A + 7]!,
        ctrl[A + 8]!, ctrl[A + 9]!, ctrl[A + 10]!, ctrl[A + 11]!, c, c + 1);
      break;
    case Op.expSum: {
      const start = chunkStart(c, size);
      k.expSum(ctrl[A]! + start * 4, chunkEnd(c, size, ctrl[A + 1]!) - start, ctrl[A + 2]! + c * 16);
      break;
    }
    case Op.swiglu: {
      const start = chunkStart(c, size);
      k.swiglu(ctrl[A]! + start * 4, ctrl[A + 1]! + start * 4, chunkEnd(c, size, ctrl[A + 2]!) - start);
      break;
    }
    case Op.attentionBlock:
      k.attentionBlockHeads(ctrl[A]!, ctrl[A + 1]!, ctrl[A + 2]!, ctrl[A + 3]!, ctrl[A + 4]! + self * ctrl[A + 11]!, ctrl[A + 5]!, ctrl[A + 6]!,
        ctrl[A + 7]!, ctrl[A + 8]!, ctrl[A + 9]!, ctrl[A + 10]!, c, c + 1, ctrl[A + 12]! + self * ctrl[A + 13]!);
      break;
    case Op.matmulQ8:
      k.matmulQ8Rows(ctrl[A]!, ctrl[A + 1]!, ctrl[A + 2]!, ctrl[A + 3]!, ctrl[A + 4]!, ctrl[A + 5]!, ctrl[A + 8]!, ctrl[A + 7]!,
        chunkStart(c, size), chunkEnd(c, size, ctrl[A + 6]!));
      break;
    case Op.gemm: {
      const split = ctrl[SPLIT]!, size2 = ctrl[CHUNK2]!;
      const rc = Math.floor(c / split), cc = c - rc * split;
      k.gemm(ctrl[A]!, ctrl[A + 1]!, ctrl[A + 2]!, ctrl[A + 3]!, ctrl[A + 4]!, ctrl[A + 5]!, ctrl[A + 6]!, ctrl[A + 7]!,
        ctrl[A + 8]!, ctrl[A + 9]!, chunkStart(rc, size), chunkEnd(rc, size, ctrl[A + 10]!),
        chunkStart(cc, size2), chunkEnd(cc, size2, ctrl[A + 11]!), ctrl[A + 12]! + self * ctrl[A + 13]!);
      break;
    }
    case Op.gemmMany: {
      // the products' columns one after another, cut into chunks; a chunk may span two products
      const split = ctrl[SPLIT]!, size2 = ctrl[CHUNK2]!;
      const rc = Math.floor(c / split), cc = c - rc * split;
      const K = ctrl[A + 1]!, M = ctrl[A + 2]!, scratch = ctrl[A + 3]! + self * ctrl[A + 4]!;
      const m0 = chunkStart(rc, size), m1 = chunkEnd(rc, size, M);
      let x0 = chunkStart(cc, size2), x1 = x0 + size2;
      for (let i = 0, end = ctrl[A + 5]!; i < end && x0 < x1; i++) {
        const p = A + 6 + i * 3;
        const N = ctrl[p + 2]!;
        if (x0 < N) {
          const hi = Math.min(x1, N);
          k.gemm(ctrl[p]!, N * 4, ctrl[A]!, K * 4, 4, ctrl[p + 1]!, K * 4, 0, K, 0, m0, m1, x0, hi, scratch);
          x0 = hi;
        }
        x0 -= N; // on to the next product's columns, counted from 0
        x1 -= N;
      }
      break;
    }
    case Op.attentionMany: {
      // chunk c: every head of session c (its caches read in order first: assembly/kernels.ts attentionSession)
      const t = TABLE + c * 6;
      k.attentionSession(ctrl[t]!, ctrl[t + 1]!, ctrl[t + 2]!, ctrl[t + 3]!, ctrl[t + 4]!, ctrl[t + 5]!, ctrl[A + 1]!, ctrl[A + 2]!,
        ctrl[A + 3]!, ctrl[A + 4]!, ctrl[A + 5]!);
      break;
    }
    case Op.matmulGroup:
    case Op.matmulManyGroup:
    case Op.matmulQ8Group: {
      // the rows of the products, one after another, cut into chunks; a chunk may span two products
      // (matmulManyGroup: matmulGroup's arguments, for `count` vectors, x interleaved at xI)
      const q8 = ctrl[OP] === Op.matmulQ8Group, many = ctrl[OP] === Op.matmulManyGroup;
      const first = q8 ? A + 6 : A + 3, stride = q8 ? 4 : 3;
      const n = ctrl[q8 ? A + 2 : A + 1]!;
      let r0 = chunkStart(c, size), r1 = r0 + size;
      for (let i = 0, end = ctrl[q8 ? A + 5 : A + 2]!; i < end && r0 < r1; i++) {
        const p = first + i * stride;
        const d = ctrl[p + stride - 1]!;
        if (r0 < d) {
          const hi = Math.min(r1, d);
          if (q8) k.matmulQ8Rows(ctrl[p]!, ctrl[A]!, ctrl[A + 1]!, ctrl[p + 1]!, ctrl[p + 2]!, n, ctrl[A + 4]!, ctrl[A + 3]!, r0, hi);
          else if (many) k.matmulRowsMulti(ctrl[p]!, ctrl[A]!, ctrl[MANY_XI]!, ctrl[p + 1]!, n, d, ctrl[MANY_COUNT]!, r0, hi);
          else k.matmulRows(ctrl[p]!, ctrl[A]!, ctrl[p + 1]!, n, r0, hi);
          r0 = hi;
        }
        // on to the next product: its rows count from 0 (r0 ends ≥ 0, or = r1 when the chunk is done)
        r0 -= d;
        r1 -= d;
      }
      break;
    }
    default:
      throw new Error(`unknown kernel command ${ctrl[OP]}`);
  }
}

/** First chunk of participant p's home range: the chunks are split evenly, in order. */
function homeStart(p: number, chunks: number, threads: number): number {
  return Math.floor((p * chunks) / threads);
}

/**
 * Resets every participant's cursor for command `seq` (the caller, before publishing STATE).
 */
export function resetCursors(ctrl: Int32Array, seq: number, threads: number): void {
  const fresh = initialState(seq, 0);
  for (let p = 0; p < threads; p++) Atomics.store(ctrl, CURSORS + p * CURSOR_STRIDE, fresh);
}

/**
 * Participant `self` runs chunks of command `seq` (of `chunks` chunks): its own home range first,
 * then whatever is left of the others', until none is left or the command is over. Returns false
 * if a chunk threw (the chunk still counts as finished, so nobody waits forever).
 */
export function claimChunks(kernels: readonly KernelExports[], ctrl: Int32Array, seq: number, chunks: number, self: number, threads: number): boolean {
  let ok = true;
  // the instance of the memory the command's arguments live in (the caller wrote MEM before STATE)
  const k = kernels[ctrl[MEM]!]!;
  let ran = 0;
  for (let i = 0; i < threads; i++) {
    const p = (self + i) % threads;
    const first = homeStart(p, chunks, threads);
    const size = homeStart(p + 1, chunks, threads) - first;
    const cursor = CURSORS + p * CURSOR_STRIDE;
    for (;;) {
      const state = Atomics.load(ctrl, cursor);
      if (seqOf(state) !== seq) break; // the command is over (we woke late)
      const claimed = state & MAX_CHUNKS;
      if (claimed >= size) break; // p's range is all claimed
      if (Atomics.compareExchange(ctrl, cursor, state, state + 1) !== state) continue;
      try {
        runChunk(k, ctrl, first + claimed, self);
      } catch {
        ok = false;
      }
      ran++;
    }
  }
  // the chunks this participant ran count as finished together (one shared-cache-line update per
  // command and participant rather than per chunk)
  if (ran > 0) Atomics.add(ctrl, FINISHED, ran);
  return ok;
}

/**
 * A worker's life: wait for a command, help with its chunks, until Op.exit. The first command the
 * worker waits for is the one after command number 0 (the zeroed control block): the pool publishes
 * nothing before every worker is ready, but a worker may reach this loop only after the first
 * commands (even Op.exit) were published — reading its starting point from STATE would then miss
 * them, and a missed exit hangs close().
 */
export function commandLoop(kernels: readonly KernelExports[], ctrl: Int32Array, index: number, threads: number): void {
  const spin = new SpinBudget();
  let state = Atomics.load(ctrl, STATE);
  let seen = 0;
  for (;;) {
    while (seqOf(state) === seen) state = spin.waitWhileEqual(ctrl, STATE, state);
    seen = seqOf(state);
    if (ctrl[OP] === Op.exit) return;
    if (!claimChunks(kernels, ctrl, seen, state & MAX_CHUNKS, index, threads)) Atomics.store(ctrl, FAILED, index);
    Atomics.notify(ctrl, FINISHED);
  }
}
