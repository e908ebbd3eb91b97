// The WebAssembly kernels split over worker threads (Node.js worker_threads) that share the kernel
// set's WebAssembly memories (one, or several for a model over 4 GiB: every worker instantiates the
// kernels on each, and a command names the memory its arguments live in). The big kernels — matmul
// (by rows), attention (by heads), the int8 matmul, and the batched training products — are cut
// into chunks that `threads` participants (the calling thread and threads-1 workers) claim one by
// one, commanded through a control block with Atomics (thread-protocol.ts). The small kernels
// (rmsnorm, rope, softmax, add, quantize, and a token's swiglu) run on the calling thread alone:
// they are too short to be worth a hand-off; a block's swiglu and a row of 32,000 logits'
// cross-entropy are split by values.
//
// The workers start with the first command that is split between threads (a small model, run fused
// on the calling thread, never starts them) and are unref'd: an idle pool never keeps the process
// alive. close() ends them. A memory added after they started (another model loaded) restarts them.

import { Worker } from 'node:worker_threads';
import { LlamaError } from '../errors.js';
import type { KernelSet } from './kernel-set.js';
import {
  ARGS, CHUNK, CHUNK2, FAILED, FINISHED, MAX_ATTENTION_MANY, MAX_CHUNKS, MAX_GEMM_MANY, MAX_GROUP, MANY_COUNT, MANY_XI, MEM, OP, Op, SPLIT, STATE, SpinBudget, TABLE,
  chunkSize, claimChunks, controlInts, initialState, resetCursors, seqOf,
} from './thread-protocol.js';
import type { WorkerInit } from './thread-worker.js';
import { type ForwardModel, type GroupedInput, type GroupedProduct, tokenMatmulWork } from './types.js';
import {
  type KernelExports, type KernelMemory, type WasmKernelOptions, checkAttention, checkAttentionBlock, checkMatmul, checkMatmulBackward,
  checkMatmulForward, checkMatmulMany, checkMatmulQ8, checkMatmulQ8Forward, createWasmKernels, gemmQ8Fits, need,
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
 * Element-wise work over at least this many values (a block of tokens' SwiGLU, a row of 32,000
 * logits' cross-entropy) is split between the threads; a token's is not worth a hand-off.
 */
const SPLIT_REDUCTION = 1 << 14;

/**
 * Models doing fewer multiply-adds per token than this run fused (assembly/forward.ts: one call per
 * token, on the calling thread): their kernels are so short that hand-offs to the threads and the
 * JavaScript → WebAssembly calls cost more than the threads save. stories260K does 0.26M.
 */
export const FUSED_MAX_WORK = 1 << 21;

/** Multiply-adds of one token's matrix-vector products. */
export function matmulWork(m: ForwardModel): number {
  return tokenMatmulWork(m.layers.length, m.dim, m.shape.kvDim, m.hiddenDim, m.vocabSize);
}

export async function createThreadedKernels(options: ThreadOptions = {}): Promise<KernelSet> {
  const threads = options.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1 || threads > 256) throw new LlamaError(`threads must be an integer from 1 to 256, not ${threads}`);
  const base = await createWasmKernels(options);
  if (threads === 1) return base;

  const { heap, module } = base;
  /** The control block, in memory 0 (a fresh one each time the workers restart). */
  let controlAddress = 0;
  let ctrl: Int32Array<ArrayBufferLike> = new Int32Array(0);
  function newControlBlock(): void {
    controlAddress = heap.reserve(controlInts(threads) * 4);
    ctrl = new Int32Array(heap.memory.buffer, controlAddress, controlInts(threads));
  }
  newControlBlock();
  /** The calling thread's instance of the kernels on each memory (by KernelMemory.index). */
  const kernels: KernelExports[] = base.memories.map((m) => m.exports!);
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
    const memories = base.memories.map((m) => m.memory);
    for (let i = 1; i < threads; i++) {
      const init: WorkerInit = { module, memories, control: controlAddress, index: i, threads };
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

  /** Tells the running workers to exit (they finish no command: none is running between calls). */
  function stopWorkers(): void {
    ctrl[OP] = Op.exit;
    seq = seqOf(initialState(seq + 1, 0));
    Atomics.store(ctrl, STATE, initialState(seq, 0));
    Atomics.notify(ctrl, STATE);
  }

  // A memory made after the workers started (a model loaded into more memories): the workers have
  // no instance on it, and a worker blocked in Atomics.wait cannot take a message. So they are
  // stopped, and new ones — with every memory — start at the next command, on a new control block.
  base.onMemoryAdded((m) => {
    kernels.push(m.exports!);
    if (workers.length === 0) return;
    stopWorkers();
    workers.length = 0;
    newControlBlock();
    seq = 0;
  });

  const spin = new SpinBudget();
  /** Chunks per command: a few per thread, so a descheduled thread is covered by the others. */
  const parts = Math.min(threads * 4, 256);

  /**
   * Publishes the command already written to OP / ARGS / CHUNK… (its arguments addresses in
   * memory `m`), works on its chunks here too, and returns once every chunk is finished.
   */
  function dispatch(m: KernelMemory, chunks: number): void {
    if (closed) throw new LlamaError('the kernel threads were closed');
    if (workerFailure !== undefined) throw new LlamaError(`a kernel worker thread failed: ${workerFailure}`);
    if (workers.length === 0) startWorkers();
    ctrl[MEM] = m.index;
    Atomics.store(ctrl, FINISHED, 0);
    Atomics.store(ctrl, FAILED, 0);
    seq = seqOf(initialState(seq + 1, 0));
    resetCursors(ctrl, seq, threads);
    Atomics.store(ctrl, STATE, initialState(seq, chunks));
    Atomics.notify(ctrl, STATE);
    const ok = claimChunks(kernels, ctrl, seq, chunks, 0, threads);
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

  const route = base.route;

  // the matrix × matrix product's packing buffers, one per participant, in each memory that needs them
  const scratchBytes = base.exports.gemmScratchBytes();
  const scratches: number[] = [];
  const scratchIn = (m: KernelMemory): number => (scratches[m.index] ??= m.reserve(threads * scratchBytes));
  // crossEntropy's partial results, (max, sum) as two float64 per chunk, in each memory that needs them
  // (a view made once: a shared memory's old buffer stays valid when it grows)
  const partials: Float64Array[] = [];
  const partialsIn = (m: KernelMemory): Float64Array =>
    (partials[m.index] ??= new Float64Array(m.memory.buffer, m.reserve(16 * (parts + 1)), 2 * (parts + 1)));
  // the block attention's score buffers, one per participant, in each memory, made for the longest context seen
  const scores: Array<{ at: number; bytes: number }> = [];
  function scoresIn(m: KernelMemory, seqLen: number): { at: number; bytes: number } {
    const bytes = m.exports!.attentionScoresBytes(seqLen);
    const sc = (scores[m.index] ??= { at: 0, bytes: 0 });
    if (bytes > sc.bytes) {
      sc.at = m.reserve(threads * bytes);
      sc.bytes = bytes;
    }
    return sc;
  }

  /**
   * C (M, N) [+]= A · B over the threads (arguments of assembly/gemm.ts). The chunks are blocks of
   * rows when C has more rows than columns, else blocks of columns: a participant then packs only
   * the columns of B it uses (weights, for a product with a weight matrix), or reads only its rows
   * of A.
   */
  function gemm(m: KernelMemory, c: number, ldc: number, a: number, sam: number, sak: number, b: number, sb: number, bRows: number,
    K: number, accumulate: number, M: number, N: number): void {
    const scratch = scratchIn(m);
    if (M * N * K < PARALLEL_MIN_WORK * 4) {
      m.exports!.gemm(c, ldc, a, sam, sak, b, sb, bRows, K, accumulate, 0, M, 0, N, scratch);
      return;
    }
    ctrl[OP] = Op.gemm;
    ctrl[ARGS] = c; ctrl[ARGS + 1] = ldc; ctrl[ARGS + 2] = a; ctrl[ARGS + 3] = sam; ctrl[ARGS + 4] = sak;
    ctrl[ARGS + 5] = b; ctrl[ARGS + 6] = sb; ctrl[ARGS + 7] = bRows; ctrl[ARGS + 8] = K; ctrl[ARGS + 9] = accumulate;
    ctrl[ARGS + 10] = M; ctrl[ARGS + 11] = N; ctrl[ARGS + 12] = scratch; ctrl[ARGS + 13] = scratchBytes;
    dispatchTiles(m, M, N, 8);
  }

  /**
   * Dispatches a product of M rows × N columns of output in tiles: blocks of rows when there are
   * more rows than columns, else blocks of columns (multiples of colStep, the micro-kernel's width).
   */
  function dispatchTiles(m: KernelMemory, M: number, N: number, colStep: number): void {
    const byRows = M > N;
    const rowSize = byRows ? chunkSize(M, parts, 4, 4) : M;
    const colSize = byRows ? N : chunkSize(N, parts, colStep, colStep);
    ctrl[CHUNK] = rowSize;
    ctrl[CHUNK2] = colSize;
    const split = Math.ceil(N / colSize);
    ctrl[SPLIT] = split;
    dispatch(m, split * Math.ceil(M / rowSize));
  }

  /** Kernels.matmulManyGroup over the threads (matmulMany: a group of one, in `oneProduct`). */
  const one: { xout: Float32Array; w: Float32Array; d: number } = { xout: new Float32Array(0), w: new Float32Array(0), d: 0 };
  const oneProduct: readonly GroupedProduct[] = [one];
  function manyGroup(x: Float32Array, n: number, count: number, products: readonly GroupedProduct[]): void {
    // products the threads would not split run on the calling thread (matmulSmall's bits)
    let split = products.length <= MAX_GROUP;
    for (let i = 0; i < products.length; i++) if (n * products[i]!.d < PARALLEL_MIN_WORK) split = false;
    if (!split) { // one product at a time
      for (let i = 0; i < products.length; i++) {
        const p = products[i]!;
        if (!(p.w instanceof Float32Array)) throw new LlamaError('matmulManyGroup takes float32 weights');
        one.xout = p.xout; one.w = p.w; one.d = p.d;
        if (n * p.d < PARALLEL_MIN_WORK) base.matmulManyGroup!(x, n, count, oneProduct);
        else manyGroup(x, n, count, oneProduct);
      }
      return;
    }
    const m = route(x);
    let rowsInAll = 0;
    for (let i = 0; i < products.length; i++) {
      const p = products[i]!;
      if (!(p.w instanceof Float32Array)) throw new LlamaError('matmulManyGroup takes float32 weights');
      checkMatmulMany(p.xout, x, p.w, n, p.d, count);
      m.address(p.xout); m.address(p.w); // (checks they share x's memory)
      rowsInAll += p.d;
    }
    const xAt = m.address(x);
    ctrl[OP] = Op.matmulManyGroup;
    ctrl[ARGS] = xAt; ctrl[ARGS + 1] = n; ctrl[ARGS + 2] = products.length;
    for (let i = 0; i < products.length; i++) {
      const p = products[i]!;
      ctrl[ARGS + 3 + i * 3] = m.address(p.xout); ctrl[ARGS + 4 + i * 3] = m.address(p.w as Float32Array); ctrl[ARGS + 5 + i * 3] = p.d;
    }
    ctrl[MANY_XI] = base.interleaveSessions(m, xAt, n, count); ctrl[MANY_COUNT] = count;
    dispatch(m, rows(rowsInAll, 4, 16));
  }

  const threaded: KernelSet = {
    ...base,
    name: `wasm×${threads}`,
    threads,
    async close() {
      if (closed) return;
      closed = true;
      stopWorkers();
      for (const w of workers) w.ref(); // so that awaiting close() really waits for the exits
      await Promise.all(exits);
    },

    groupMatmuls(input: GroupedInput, n: number, products: readonly GroupedProduct[]) {
      // only groups whose every product would be split anyway (smaller ones run on the calling
      // thread with a different kernel, matmulSmall: grouping them would change their bits)
      if (products.length < 2 || products.length > MAX_GROUP || products.some((p) => n * p.d < PARALLEL_MIN_WORK)) return undefined;
      const q8 = 'xq' in input;
      const m = route(q8 ? input.xq : input.x);
      const at = (view: ArrayBufferView): number => m.address(view);
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
        dispatch(m, chunks);
      };
    },
    fuseForward(model) {
      return matmulWork(model) < FUSED_MAX_WORK ? base.fuseForward!(model) : undefined;
    },
    warmUp(tokenWork) {
      // a model that runs fused (one call per token on this thread) never uses the workers
      if (tokenWork >= FUSED_MAX_WORK && !closed && workers.length === 0) startWorkers();
    },
    // each call runs in the memory of its first argument (m); the others are checked to live there
    matmul(xout, x, w, n, d) {
      if (n * d < PARALLEL_MIN_WORK) return base.matmul(xout, x, w, n, d);
      checkMatmul(xout, x, w, n, d);
      const m = route(xout);
      // arguments written out one by one: the per-token path creates no arrays
      ctrl[OP] = Op.matmul;
      ctrl[ARGS] = m.address(xout); ctrl[ARGS + 1] = m.address(x); ctrl[ARGS + 2] = m.address(w); ctrl[ARGS + 3] = n; ctrl[ARGS + 4] = d;
      dispatch(m, rows(d, 4, 16));
    },
    crossEntropy(logits, n, target) {
      if (n < SPLIT_REDUCTION) return base.crossEntropy(logits, n, target);
      need(logits, n, 'crossEntropy logits');
      if (!(Number.isInteger(target) && target >= 0 && target < n)) throw new RangeError(`crossEntropy: target ${target} outside 0..${n - 1}`);
      // each chunk's max and Σ e^(x − its max), then log Σ_c sum_c · e^(max_c − max) + max − x[target]
      const m = route(logits);
      const partials = partialsIn(m);
      ctrl[OP] = Op.expSum;
      ctrl[ARGS] = m.address(logits); ctrl[ARGS + 1] = n; ctrl[ARGS + 2] = partials.byteOffset;
      const chunks = rows(n, 16, 1024);
      dispatch(m, chunks);
      let max = -Infinity;
      for (let c = 0; c < chunks; c++) max = Math.max(max, partials[2 * c]!);
      let sum = 0;
      for (let c = 0; c < chunks; c++) sum += partials[2 * c + 1]! * Math.exp(partials[2 * c]! - max);
      return Math.log(sum) + max - logits[target]!;
    },
    swiglu(hb, hb2, size) {
      if (size < SPLIT_REDUCTION) return base.swiglu(hb, hb2, size);
      need(hb, size, 'swiglu hb'); need(hb2, size, 'swiglu hb2');
      const m = route(hb);
      ctrl[OP] = Op.swiglu;
      ctrl[ARGS] = m.address(hb); ctrl[ARGS + 1] = m.address(hb2); ctrl[ARGS + 2] = size;
      dispatch(m, rows(size, 16, 1024));
    },
    matmulMany(xout, x, w, n, d, count) {
      one.xout = xout; one.w = w; one.d = d;
      manyGroup(x, n, count, oneProduct);
    },
    matmulManyGroup: (x, n, count, products) => manyGroup(x, n, count, products),
    attention(out, q, keyCache, valueCache, att, pos, s) {
      if (s.nHeads > MAX_CHUNKS || (pos + 1) * s.nHeads * s.headSize < PARALLEL_MIN_WORK / 4) return base.attention(out, q, keyCache, valueCache, att, pos, s);
      checkAttention(out, q, keyCache, valueCache, att, pos, s);
      const m = route(out);
      ctrl[OP] = Op.attention;
      ctrl[ARGS] = m.address(out); ctrl[ARGS + 1] = m.address(q); ctrl[ARGS + 2] = m.address(keyCache); ctrl[ARGS + 3] = m.address(valueCache);
      ctrl[ARGS + 4] = m.address(att); ctrl[ARGS + 5] = pos; ctrl[ARGS + 6] = s.nHeads; ctrl[ARGS + 7] = s.nKvHeads;
      ctrl[ARGS + 8] = s.headSize; ctrl[ARGS + 9] = s.kvDim; ctrl[ARGS + 10] = s.seqLen;
      dispatch(m, s.nHeads); // one head per chunk
    },
    attentionMany(calls, count, s) {
      let work = 0, oneMemory = true;
      const m = route(calls[0]!.out);
      for (let i = 0; i < count; i++) {
        const c = calls[i]!;
        checkAttention(c.out, c.q, c.keyCache, c.valueCache, c.att, c.pos, s);
        work += (c.pos + 1) * s.nHeads * s.headSize;
        if (route(c.out) !== m) oneMemory = false;
      }
      if (!oneMemory || count > MAX_ATTENTION_MANY || work < PARALLEL_MIN_WORK / 4) {
        for (let i = 0; i < count; i++) {
          const c = calls[i]!;
          threaded.attention(c.out, c.q, c.keyCache, c.valueCache, c.att, c.pos, s);
        }
        return;
      }
      for (let i = 0; i < count; i++) {
        const c = calls[i]!, t = TABLE + i * 6;
        ctrl[t] = m.address(c.out); ctrl[t + 1] = m.address(c.q); ctrl[t + 2] = m.address(c.keyCache); ctrl[t + 3] = m.address(c.valueCache);
        ctrl[t + 4] = m.address(c.att); ctrl[t + 5] = c.pos;
      }
      ctrl[OP] = Op.attentionMany;
      ctrl[ARGS] = count; ctrl[ARGS + 1] = s.nHeads; ctrl[ARGS + 2] = s.nKvHeads; ctrl[ARGS + 3] = s.headSize; ctrl[ARGS + 4] = s.kvDim;
      ctrl[ARGS + 5] = s.seqLen;
      dispatch(m, count); // one session per chunk
    },
    matmulQ8Forward(out, xq, xs, wq, ws, M, n, d, groupSize) {
      if (M * n * d < PARALLEL_MIN_WORK * 4 || !gemmQ8Fits(n, groupSize)) {
        if (gemmQ8Fits(n, groupSize)) return base.matmulQ8Forward(out, xq, xs, wq, ws, M, n, d, groupSize);
        // rows of partial groups: matmulQ8 row by row (threaded), on views of the rows
        checkMatmulQ8Forward(out, xq, xs, wq, ws, M, n, d, groupSize);
        const xsRow = Math.ceil(n / groupSize);
        for (let r = 0; r < M; r++) {
          threaded.matmulQ8(out.subarray(r * d, (r + 1) * d), xq.subarray(r * n, (r + 1) * n), xs.subarray(r * xsRow, (r + 1) * xsRow), wq, ws, n, d, groupSize);
        }
        return;
      }
      checkMatmulQ8Forward(out, xq, xs, wq, ws, M, n, d, groupSize);
      const m = route(out);
      ctrl[OP] = Op.gemmQ8;
      ctrl[ARGS] = m.address(out); ctrl[ARGS + 1] = d * 4; ctrl[ARGS + 2] = m.address(xq); ctrl[ARGS + 3] = m.address(xs); ctrl[ARGS + 4] = m.address(wq);
      ctrl[ARGS + 5] = m.address(ws); ctrl[ARGS + 6] = n; ctrl[ARGS + 7] = groupSize; ctrl[ARGS + 8] = M; ctrl[ARGS + 9] = d;
      ctrl[ARGS + 10] = scratchIn(m); ctrl[ARGS + 11] = scratchBytes;
      dispatchTiles(m, M, d, 8); // the channels in eights, the packed micro-kernel's width
    },
    attentionBlock(out, q, keyCache, valueCache, att, pos, count, s, exact = false) {
      if (s.nHeads > MAX_CHUNKS || count * (pos + count) * s.nHeads * s.headSize < PARALLEL_MIN_WORK / 4) {
        return base.attentionBlock(out, q, keyCache, valueCache, att, pos, count, s, exact);
      }
      checkAttentionBlock(out, q, keyCache, valueCache, att, pos, count, s);
      const m = route(out);
      const at = (v: ArrayBufferView): number => m.address(v);
      if (exact) {
        ctrl[OP] = Op.attentionRows;
        ctrl[ARGS] = at(out); ctrl[ARGS + 1] = at(q); ctrl[ARGS + 2] = at(keyCache); ctrl[ARGS + 3] = at(valueCache);
        ctrl[ARGS + 4] = at(att); ctrl[ARGS + 5] = pos; ctrl[ARGS + 6] = count; ctrl[ARGS + 7] = s.nHeads;
        ctrl[ARGS + 8] = s.nKvHeads; ctrl[ARGS + 9] = s.headSize; ctrl[ARGS + 10] = s.kvDim; ctrl[ARGS + 11] = s.seqLen;
        dispatch(m, s.nHeads); // one head per chunk
        return;
      }
      const sc = scoresIn(m, s.seqLen);
      ctrl[OP] = Op.attentionBlock;
      ctrl[ARGS] = at(out); ctrl[ARGS + 1] = at(q); ctrl[ARGS + 2] = at(keyCache); ctrl[ARGS + 3] = at(valueCache);
      ctrl[ARGS + 4] = sc.at; ctrl[ARGS + 5] = pos; ctrl[ARGS + 6] = count; ctrl[ARGS + 7] = s.nHeads;
      ctrl[ARGS + 8] = s.nKvHeads; ctrl[ARGS + 9] = s.headSize; ctrl[ARGS + 10] = s.kvDim; ctrl[ARGS + 11] = sc.bytes;
      ctrl[ARGS + 12] = scratchIn(m); ctrl[ARGS + 13] = scratchBytes;
      dispatch(m, s.nHeads); // one head per chunk
    },
    matmulQ8(xout, xq, xs, wq, ws, n, d, groupSize, streamed = false) {
      if (n * d < PARALLEL_MIN_WORK) return base.matmulQ8(xout, xq, xs, wq, ws, n, d, groupSize, streamed);
      checkMatmulQ8(xout, xq, xs, wq, ws, n, d, groupSize);
      const m = route(xout);
      ctrl[OP] = Op.matmulQ8;
      ctrl[ARGS] = m.address(xout); ctrl[ARGS + 1] = m.address(xq); ctrl[ARGS + 2] = m.address(xs); ctrl[ARGS + 3] = m.address(wq);
      ctrl[ARGS + 4] = m.address(ws); ctrl[ARGS + 5] = n; ctrl[ARGS + 6] = d; ctrl[ARGS + 7] = groupSize;
      ctrl[ARGS + 8] = streamed ? 1 : 0;
      dispatch(m, rows(d, 4, 16));
    },
    matmulForward(out, inp, w, BT, C, OC) {
      checkMatmulForward(out, inp, w, BT, C, OC);
      const m = route(out);
      // out (BT, OC) = inp (BT, C) · B, B (C, OC) given by its transpose w (OC, C)
      gemm(m, m.address(out), OC * 4, m.address(inp), C * 4, 4, m.address(w), C * 4, 0, C, 0, BT, OC);
    },
    matmulForwardMany(inp, BT, C, products) {
      let columns = 0;
      for (const p of products) {
        checkMatmulForward(p.out, inp, p.w, BT, C, p.OC);
        columns += p.OC;
      }
      if (products.length > MAX_GEMM_MANY || BT * columns * C < PARALLEL_MIN_WORK * 4) {
        for (const p of products) threaded.matmulForward(p.out, inp, p.w, BT, C, p.OC);
        return;
      }
      const m = route(inp);
      ctrl[OP] = Op.gemmMany;
      ctrl[ARGS] = m.address(inp); ctrl[ARGS + 1] = C; ctrl[ARGS + 2] = BT; ctrl[ARGS + 3] = scratchIn(m); ctrl[ARGS + 4] = scratchBytes;
      ctrl[ARGS + 5] = products.length;
      for (let i = 0; i < products.length; i++) {
        const p = products[i]!, at = ARGS + 6 + 3 * i;
        ctrl[at] = m.address(p.out); ctrl[at + 1] = m.address(p.w); ctrl[at + 2] = p.OC;
      }
      dispatchTiles(m, BT, columns, 8);
    },
    matmulBackward(dinp, dw, dout, inp, w, BT, C, OC) {
      checkMatmulBackward(dinp, dw, dout, inp, w, BT, C, OC);
      const m = route(dinp);
      const at = (view: ArrayBufferView): number => m.address(view);
      // dinp (BT, C) += dout (BT, OC) · w (OC, C);  dw (OC, C) += doutᵀ (OC, BT) · inp (BT, C)
      gemm(m, at(dinp), C * 4, at(dout), OC * 4, 4, at(w), C * 4, 1, OC, 1, BT, C);
      gemm(m, at(dw), C * 4, at(dout), 4, OC * 4, at(inp), C * 4, 1, BT, 1, OC, C);
    },
  };
  return threaded;
}
