// The WebAssembly kernels split over worker threads (Node.js worker_threads) that share one
// WebAssembly.Memory. The big kernels — matmul (by rows), attention (by heads), the int8 matmul,
// and the batched training products — are cut into chunks that `threads` participants (the
// calling thread and threads-1 workers) claim one by one, commanded through a control block with
// Atomics (thread-protocol.ts). The small kernels (rmsnorm, rope, softmax, swiglu, add, and
// quantize) run on the calling thread alone: they are too short to be worth a hand-off.
//
// The workers start with the first command that is split between threads (a small model, run fused
// on the calling thread, never starts them) and are unref'd: an idle pool never keeps the process
// alive. close() ends them.

import { Worker } from 'node:worker_threads';
import { LlamaError } from '../errors.js';
import type { KernelSet } from './kernel-set.js';
import {
  ARGS, CHUNK, CHUNK2, FAILED, FINISHED, MAX_CHUNKS, MAX_GROUP, OP, Op, SPLIT, STATE, SpinBudget,
  chunkSize, claimChunks, controlInts, initialState, resetCursors, seqOf,
} from './thread-protocol.js';
import type { WorkerInit } from './thread-worker.js';
import type { ForwardModel, GroupedInput, GroupedProduct } from './types.js';
import {
  type WasmKernelOptions, checkAttention, checkAttentionBlock, checkMatmul, checkMatmulMany, checkMatmulQ8Forward, gemmQ8Fits, checkMatmulBackward, checkMatmulForward, checkMatmulQ8, createWasmKernels,
} from './wasm.js';

export interface ThreadOptions extends WasmKernelOptions {
  /** Participants including the calling thread (default 1: no workers). */
  threads?: number;
}

/**
 * Below this many multiply-adds a matmul runs on the calling thread alone: handing off costs a
 * few microseconds, which a small product (stories260K's 64×64 projections) does not repay.
 */
export const PARALLEL_MIN_WORK = 1 << 15; // = SMALL_MATRIX in assembly/kernels.ts (keep them equal)

/**
 * Models doing fewer multiply-adds per token than this run fused (assembly/forward.ts: one call per
 * token, on the calling thread): their kernels are so short that hand-offs to the threads and the
 * JavaScript → WebAssembly calls cost more than the threads save. stories260K does 0.26M.
 */
export const FUSED_MAX_WORK = 1 << 21;

/** Multiply-adds of one token's matrix-vector products. */
export function matmulWork(m: ForwardModel): number {
  const { dim, hiddenDim: hidden, vocabSize, shape } = m;
  return m.layers.length * (2 * dim * dim + 2 * dim * shape.kvDim + 3 * dim * hidden) + dim * vocabSize;
}

export async function createThreadedKernels(options: ThreadOptions = {}): Promise<KernelSet> {
  const threads = options.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1 || threads > 256) throw new LlamaError(`threads must be an integer from 1 to 256, not ${threads}`);
  const base = await createWasmKernels(options);
  if (threads === 1) return base;

  const { heap, exports: k, module } = base;
  const controlAddress = heap.reserve(controlInts(threads) * 4);
  const ctrl = new Int32Array(heap.memory.buffer, controlAddress, controlInts(threads));
  const workers: Worker[] = [];
  const exits: Promise<void>[] = [];
  const workerUrl = new URL('./thread-worker.js', import.meta.url);
  /** Why a worker failed, once one has (reported by the next command). */
  let workerFailure: string | undefined;

  /**
   * Starts the workers, at the first command split between threads: a model small enough to run
   * fused (one call per token on the calling thread) never pays for them (~10 MiB of memory each).
   * Until a worker is running (tens of milliseconds) the calling thread takes its chunks too.
   */
  function startWorkers(): void {
    for (let i = 1; i < threads; i++) {
      const init: WorkerInit = { module, memory: heap.memory, control: controlAddress, index: i, threads };
      // execArgv []: the workers need no Node.js flags, and some (--input-type, …) would make them fail
      const worker = new Worker(workerUrl, { workerData: init, execArgv: [] });
      worker.unref();
      workers.push(worker);
      exits.push(new Promise<void>((done) => worker.once('exit', () => done())));
      worker.once('error', (err) => { workerFailure ??= err.message; });
    }
  }

  let closed = false;
  let seq = 0;
  const spin = new SpinBudget();
  /** Chunks per command: a few per thread, so a descheduled thread is covered by the others. */
  const parts = Math.min(threads * 4, 256);

  /**
   * Publishes the command already written to OP / ARGS / CHUNK…, works on its chunks here too,
   * and returns once every chunk is finished.
   */
  function dispatch(chunks: number): void {
    if (closed) throw new LlamaError('the kernel threads were closed');
    if (workerFailure !== undefined) throw new LlamaError(`a kernel worker thread failed: ${workerFailure}`);
    if (workers.length === 0) startWorkers();
    Atomics.store(ctrl, FINISHED, 0);
    Atomics.store(ctrl, FAILED, 0);
    seq = seqOf(initialState(seq + 1, 0));
    resetCursors(ctrl, seq, threads);
    Atomics.store(ctrl, STATE, initialState(seq, chunks));
    Atomics.notify(ctrl, STATE);
    const ok = claimChunks(k, ctrl, seq, chunks, 0, threads);
    // the workers use the same buffers: never return (or throw) before they are finished
    for (let done = Atomics.load(ctrl, FINISHED); done < chunks;) done = spin.waitWhileEqual(ctrl, FINISHED, done, 10);
    if (!ok || Atomics.load(ctrl, FAILED) !== 0) throw new LlamaError('a kernel failed on a worker thread (out-of-bounds address?)');
  }

  /** Splits `total` rows into chunks of CHUNK rows (a multiple of `align`); returns the chunk count. */
  function rows(total: number, align: number, min: number): number {
    const size = chunkSize(total, parts, align, min);
    ctrl[CHUNK] = size;
    return Math.ceil(total / size);
  }

  const at = (view: ArrayBufferView): number => heap.address(view);

  // the matrix × matrix product's packing buffers, one per participant
  const scratchBytes = k.gemmScratchBytes();
  const scratch = heap.reserve(threads * scratchBytes);
  // the block attention's score buffers, one per participant, made for the longest context seen
  let scores = 0, scoresBytes = 0;

  /**
   * C (M, N) [+]= A · B over the threads (arguments of assembly/gemm.ts). The chunks are blocks of
   * rows when C has more rows than columns, else blocks of columns: a participant then packs only
   * the columns of B it uses (weights, for a product with a weight matrix), or reads only its rows
   * of A.
   */
  function gemm(c: number, ldc: number, a: number, sam: number, sak: number, b: number, sb: number, bRows: number,
    K: number, accumulate: number, M: number, N: number): void {
    if (M * N * K < PARALLEL_MIN_WORK * 4) {
      k.gemm(c, ldc, a, sam, sak, b, sb, bRows, K, accumulate, 0, M, 0, N, scratch);
      return;
    }
    ctrl[OP] = Op.gemm;
    ctrl[ARGS] = c; ctrl[ARGS + 1] = ldc; ctrl[ARGS + 2] = a; ctrl[ARGS + 3] = sam; ctrl[ARGS + 4] = sak;
    ctrl[ARGS + 5] = b; ctrl[ARGS + 6] = sb; ctrl[ARGS + 7] = bRows; ctrl[ARGS + 8] = K; ctrl[ARGS + 9] = accumulate;
    ctrl[ARGS + 10] = M; ctrl[ARGS + 11] = N; ctrl[ARGS + 12] = scratch; ctrl[ARGS + 13] = scratchBytes;
    const byRows = M > N;
    const rowSize = byRows ? chunkSize(M, parts, 4, 4) : M;
    const colSize = byRows ? N : chunkSize(N, parts, 8, 8);
    ctrl[CHUNK] = rowSize;
    ctrl[CHUNK2] = colSize;
    const split = Math.ceil(N / colSize);
    ctrl[SPLIT] = split;
    dispatch(split * Math.ceil(M / rowSize));
  }

  const threaded: KernelSet = {
    ...base,
    name: `wasm×${threads}`,
    threads,
    async close() {
      if (closed) return;
      closed = true;
      ctrl[OP] = Op.exit;
      seq = seqOf(initialState(seq + 1, 0));
      Atomics.store(ctrl, STATE, initialState(seq, 0));
      Atomics.notify(ctrl, STATE);
      for (const w of workers) w.ref(); // so that awaiting close() really waits for the exits
      await Promise.all(exits);
    },

    groupMatmuls(input: GroupedInput, n: number, products: readonly GroupedProduct[]) {
      // only groups whose every product would be split anyway (smaller ones run on the calling
      // thread with a different kernel, matmulSmall: grouping them would change their bits)
      if (products.length < 2 || products.length > MAX_GROUP || products.some((p) => n * p.d < PARALLEL_MIN_WORK)) return undefined;
      const q8 = 'xq' in input;
      const args: number[] = [];
      if (q8) {
        args.push(at(input.xq), at(input.xs), n, input.groupSize, input.streamWeights === true ? 1 : 0, products.length);
        for (const p of products) {
          if (p.w instanceof Float32Array) return undefined;
          checkMatmulQ8(p.xout, input.xq, input.xs, p.w.q, p.w.s, n, p.d, input.groupSize);
          args.push(at(p.xout), at(p.w.q), at(p.w.s), p.d);
        }
      } else {
        args.push(at(input.x), n, products.length);
        for (const p of products) {
          if (!(p.w instanceof Float32Array)) return undefined;
          checkMatmul(p.xout, input.x, p.w, n, p.d);
          args.push(at(p.xout), at(p.w), p.d);
        }
      }
      const op = q8 ? Op.matmulQ8Group : Op.matmulGroup;
      const packed = Int32Array.from(args);
      const rowsInAll = products.reduce((sum, p) => sum + p.d, 0);
      const size = chunkSize(rowsInAll, parts, 4, 16);
      const chunks = Math.ceil(rowsInAll / size);
      return () => {
        ctrl[OP] = op;
        ctrl.set(packed, ARGS);
        ctrl[CHUNK] = size;
        dispatch(chunks);
      };
    },
    fuseForward(model) {
      return matmulWork(model) < FUSED_MAX_WORK ? base.fuseForward!(model) : undefined;
    },
    matmul(xout, x, w, n, d) {
      if (n * d < PARALLEL_MIN_WORK) return base.matmul(xout, x, w, n, d);
      checkMatmul(xout, x, w, n, d);
      // arguments written out one by one: the per-token path creates no arrays
      ctrl[OP] = Op.matmul;
      ctrl[ARGS] = at(xout); ctrl[ARGS + 1] = at(x); ctrl[ARGS + 2] = at(w); ctrl[ARGS + 3] = n; ctrl[ARGS + 4] = d;
      dispatch(rows(d, 4, 16));
    },
    matmulMany(xout, x, w, n, d, count) {
      if (n * d < PARALLEL_MIN_WORK) return base.matmulMany(xout, x, w, n, d, count);
      checkMatmulMany(xout, x, w, n, d, count);
      ctrl[OP] = Op.matmulMany;
      ctrl[ARGS] = at(xout); ctrl[ARGS + 1] = at(x); ctrl[ARGS + 2] = at(w); ctrl[ARGS + 3] = n; ctrl[ARGS + 4] = d; ctrl[ARGS + 5] = count;
      dispatch(rows(d, 4, 16));
    },
    attention(out, q, keyCache, valueCache, att, pos, s) {
      if (s.nHeads > MAX_CHUNKS || (pos + 1) * s.nHeads * s.headSize < PARALLEL_MIN_WORK / 4) return base.attention(out, q, keyCache, valueCache, att, pos, s);
      checkAttention(out, q, keyCache, valueCache, att, pos, s);
      ctrl[OP] = Op.attention;
      ctrl[ARGS] = at(out); ctrl[ARGS + 1] = at(q); ctrl[ARGS + 2] = at(keyCache); ctrl[ARGS + 3] = at(valueCache);
      ctrl[ARGS + 4] = at(att); ctrl[ARGS + 5] = pos; ctrl[ARGS + 6] = s.nHeads; ctrl[ARGS + 7] = s.nKvHeads;
      ctrl[ARGS + 8] = s.headSize; ctrl[ARGS + 9] = s.kvDim; ctrl[ARGS + 10] = s.seqLen;
      dispatch(s.nHeads); // one head per chunk
    },
    matmulQ8Forward(out, xq, xs, wq, ws, M, n, d, groupSize) {
      if (M * n * d < PARALLEL_MIN_WORK * 4 || !gemmQ8Fits(n, groupSize)) {
        if (gemmQ8Fits(n, groupSize)) return base.matmulQ8Forward(out, xq, xs, wq, ws, M, n, d, groupSize);
        // rows of partial groups: matmulQ8 row by row (threaded), on views of the rows
        checkMatmulQ8Forward(out, xq, xs, wq, ws, M, n, d, groupSize);
        const xsRow = Math.ceil(n / groupSize);
        for (let m = 0; m < M; m++) {
          threaded.matmulQ8(out.subarray(m * d, (m + 1) * d), xq.subarray(m * n, (m + 1) * n), xs.subarray(m * xsRow, (m + 1) * xsRow), wq, ws, n, d, groupSize);
        }
        return;
      }
      checkMatmulQ8Forward(out, xq, xs, wq, ws, M, n, d, groupSize);
      ctrl[OP] = Op.gemmQ8;
      ctrl[ARGS] = at(out); ctrl[ARGS + 1] = d * 4; ctrl[ARGS + 2] = at(xq); ctrl[ARGS + 3] = at(xs); ctrl[ARGS + 4] = at(wq);
      ctrl[ARGS + 5] = at(ws); ctrl[ARGS + 6] = n; ctrl[ARGS + 7] = groupSize; ctrl[ARGS + 8] = M; ctrl[ARGS + 9] = d;
      // blocks of rows when there are more rows than channels, else of channels (as gemm)
      const byRows = M > d;
      const rowSize = byRows ? chunkSize(M, parts, 4, 4) : M;
      const colSize = byRows ? d : chunkSize(d, parts, 4, 4);
      ctrl[CHUNK] = rowSize;
      ctrl[CHUNK2] = colSize;
      const split = Math.ceil(d / colSize);
      ctrl[SPLIT] = split;
      dispatch(split * Math.ceil(M / rowSize));
    },
    attentionBlock(out, q, keyCache, valueCache, att, pos, count, s, exact = false) {
      if (s.nHeads > MAX_CHUNKS || count * (pos + count) * s.nHeads * s.headSize < PARALLEL_MIN_WORK / 4) {
        return base.attentionBlock(out, q, keyCache, valueCache, att, pos, count, s, exact);
      }
      checkAttentionBlock(out, q, keyCache, valueCache, att, pos, count, s);
      if (exact) {
        ctrl[OP] = Op.attentionRows;
        ctrl[ARGS] = at(out); ctrl[ARGS + 1] = at(q); ctrl[ARGS + 2] = at(keyCache); ctrl[ARGS + 3] = at(valueCache);
        ctrl[ARGS + 4] = at(att); ctrl[ARGS + 5] = pos; ctrl[ARGS + 6] = count; ctrl[ARGS + 7] = s.nHeads;
        ctrl[ARGS + 8] = s.nKvHeads; ctrl[ARGS + 9] = s.headSize; ctrl[ARGS + 10] = s.kvDim; ctrl[ARGS + 11] = s.seqLen;
        dispatch(s.nHeads); // one head per chunk
        return;
      }
      const bytes = k.attentionScoresBytes(s.seqLen);
      if (bytes > scoresBytes) { // score buffers for the longest context seen, one per participant
        scores = heap.reserve(threads * bytes);
        scoresBytes = bytes;
      }
      ctrl[OP] = Op.attentionBlock;
      ctrl[ARGS] = at(out); ctrl[ARGS + 1] = at(q); ctrl[ARGS + 2] = at(keyCache); ctrl[ARGS + 3] = at(valueCache);
      ctrl[ARGS + 4] = scores; ctrl[ARGS + 5] = pos; ctrl[ARGS + 6] = count; ctrl[ARGS + 7] = s.nHeads;
      ctrl[ARGS + 8] = s.nKvHeads; ctrl[ARGS + 9] = s.headSize; ctrl[ARGS + 10] = s.kvDim; ctrl[ARGS + 11] = scoresBytes;
      ctrl[ARGS + 12] = scratch; ctrl[ARGS + 13] = scratchBytes;
      dispatch(s.nHeads); // one head per chunk
    },
    matmulQ8(xout, xq, xs, wq, ws, n, d, groupSize, streamed = false) {
      if (n * d < PARALLEL_MIN_WORK) return base.matmulQ8(xout, xq, xs, wq, ws, n, d, groupSize, streamed);
      checkMatmulQ8(xout, xq, xs, wq, ws, n, d, groupSize);
      ctrl[OP] = Op.matmulQ8;
      ctrl[ARGS] = at(xout); ctrl[ARGS + 1] = at(xq); ctrl[ARGS + 2] = at(xs); ctrl[ARGS + 3] = at(wq);
      ctrl[ARGS + 4] = at(ws); ctrl[ARGS + 5] = n; ctrl[ARGS + 6] = d; ctrl[ARGS + 7] = groupSize;
      ctrl[ARGS + 8] = streamed ? 1 : 0;
      dispatch(rows(d, 4, 16));
    },
    matmulForward(out, inp, w, BT, C, OC) {
      checkMatmulForward(out, inp, w, BT, C, OC);
      // out (BT, OC) = inp (BT, C) · B, B (C, OC) given by its transpose w (OC, C)
      gemm(at(out), OC * 4, at(inp), C * 4, 4, at(w), C * 4, 0, C, 0, BT, OC);
    },
    matmulBackward(dinp, dw, dout, inp, w, BT, C, OC) {
      checkMatmulBackward(dinp, dw, dout, inp, w, BT, C, OC);
      // dinp (BT, C) += dout (BT, OC) · w (OC, C);  dw (OC, C) += doutᵀ (OC, BT) · inp (BT, C)
      gemm(at(dinp), C * 4, at(dout), OC * 4, 4, at(w), C * 4, 1, OC, 1, BT, C);
      gemm(at(dw), C * 4, at(dout), 4, OC * 4, at(inp), C * 4, 1, BT, 1, OC, C);
    },
  };
  return threaded;
}
