// Worker threads for the parts of a training step that are not matrix products: attention (split
// by batch row and kv head), the cross-entropy forward and backward (by rows) and the SwiGLU gate
// (by elements). The matrix products themselves are already split by the shared kernels
// (src/kernels/threads.ts); this pool covers the rest, which would otherwise run on one core.
//
// How: every buffer of the model lives in the kernels' shared WebAssembly memory. Each worker
// builds a TrainModel over the SAME memory by replaying the model's allocations (byte offset and
// size, in order), so worker and main thread see identical views; a command is then just
// (operation, layer), and each thread runs TrainModel.runPart for its own part. Commands go
// through a small control block with Atomics; the main thread takes part 0 and returns when every
// worker is done. Inside a part, matrix products use the WebAssembly kernels single-threaded
// (the parts are the threads). Worker threads are unref'd: an idle pool never keeps Node alive.

import { Worker } from 'node:worker_threads';
import { LlamaError } from '../errors.js';
import { type KernelExports, type KernelMemory, instantiateKernels } from '../kernels/wasm.js';
import type { KernelSet } from '../kernels/kernel-set.js';
import type { ModelConfig } from '../model/config.js';
import { type MatmulKernels, RMS_EPS, type TrainRowKernels, gemm } from './layers.js';
import type { ParallelOp, ParallelRunner, TrainModel } from './model.js';

/** What the pool needs from the kernel set: its compiled module and shared memory. */
export interface SharedWasm {
  readonly module: WebAssembly.Module;
  readonly memory: WebAssembly.Memory;
  /** The matrix products' packing buffers, one per thread (gemmScratchBytes each), from this address. */
  readonly scratch: number;
  readonly scratchSlots: number;
}

/**
 * The shared module and memory of a WebAssembly kernel set, if `set` is one (reserving in its
 * memory a packing buffer for each of its threads).
 */
export function sharedWasmOf(set: object): SharedWasm | undefined {
  const s = set as { module?: unknown; heap?: { memory?: unknown; reserve?: unknown; exports?: unknown }; threads?: unknown };
  if (!(s.module instanceof WebAssembly.Module && s.heap?.memory instanceof WebAssembly.Memory)) return undefined;
  const heap = s.heap as KernelMemory;
  const slots = typeof s.threads === 'number' ? s.threads : 1;
  const scratch = heap.reserve(slots * heap.exports!.gemmScratchBytes());
  return { module: s.module, memory: heap.memory, scratch, scratchSlots: slots };
}

/** The kernels a training run uses. */
export interface TrainEngine {
  readonly matmul: MatmulKernels;
  /** Where the model's buffers come from (the kernels' memory); default ordinary Float32Arrays. */
  readonly allocate?: (floats: number) => Float32Array;
  /** Shared WebAssembly memory: with threads > 1 a worker pool also shares the non-matmul work. */
  readonly shared?: SharedWasm;
  readonly threads: number;
}

/** A training engine over a kernel set (src/kernels/kernel-set.ts). */
export function engineFromKernelSet(set: KernelSet): TrainEngine {
  const matmul: { -readonly [K in keyof MatmulKernels]: MatmulKernels[K] } = {
    name: set.threads > 1 ? `${set.name} (+ ${set.threads} training threads)` : set.name,
    matmulForward: set.matmulForward.bind(set),
    matmulBackward: set.matmulBackward.bind(set),
    gemm, // (the TypeScript one: a kernel set without shared WebAssembly memory holds plain arrays)
  };
  const shared = sharedWasmOf(set);
  if (shared) {
    // the SIMD row kernels (by address: no view per row), and the strided product on this thread
    const k = instantiateKernels(shared.module, shared.memory);
    matmul.rows = trainRowKernels(k);
    matmul.gemm = serialGemm(k, shared.scratch);
  }
  return { matmul, allocate: set.allocate.bind(set), threads: set.threads, ...(shared ? { shared } : {}) };
}

/**
 * The batched matmuls of the kernels, on the calling thread only (raw exports, by byte address),
 * packing into the `slot`th buffer of shared.scratch.
 */
export function serialWasmMatmul(k: KernelExports, shared: SharedWasm, slot: number): MatmulKernels {
  if (!(slot >= 0 && slot < shared.scratchSlots)) throw new LlamaError(`no packing buffer for training thread ${slot}`);
  const scratch = shared.scratch + slot * k.gemmScratchBytes();
  return {
    name: 'wasm (one thread)',
    matmulForward(out, inp, w, BT, C, OC) {
      // out (BT, OC) = inp (BT, C) · wᵀ (w given as (OC, C))
      k.gemm(out.byteOffset, OC * 4, inp.byteOffset, C * 4, 4, w.byteOffset, C * 4, 0, C, 0, 0, BT, 0, OC, scratch);
    },
    matmulBackward(dinp, dw, dout, inp, w, BT, C, OC) {
      // dinp (BT, C) += dout (BT, OC) · w (OC, C);  dw (OC, C) += doutᵀ (OC, BT) · inp (BT, C)
      k.gemm(dinp.byteOffset, C * 4, dout.byteOffset, OC * 4, 4, w.byteOffset, C * 4, 1, OC, 1, 0, BT, 0, C, scratch);
      k.gemm(dw.byteOffset, C * 4, dout.byteOffset, 4, OC * 4, inp.byteOffset, C * 4, 1, BT, 1, 0, OC, 0, C, scratch);
    },
    gemm: serialGemm(k, scratch),
    rows: trainRowKernels(k),
  };
}

/** MatmulKernels.gemm on the calling thread (raw exports, by byte address), packing into `scratch`. */
function serialGemm(k: KernelExports, scratch: number): MatmulKernels['gemm'] {
  return (c, cOff, ldc, a, aOff, sam, sak, b, bOff, sb, bRows, K, accumulate, M, N) => {
    k.gemm(c.byteOffset + 4 * cOff, ldc * 4, a.byteOffset + 4 * aOff, sam * 4, sak * 4, b.byteOffset + 4 * bOff, sb * 4, bRows ? 1 : 0,
      K, accumulate ? 1 : 0, 0, M, 0, N, scratch);
  };
}

/**
 * The training row kernels of assembly/train.ts (by address: every array given lives in the
 * kernels' shared memory, as every buffer of a TrainModel built with its allocate does).
 */
export function trainRowKernels(k: KernelExports): TrainRowKernels {
  return {
    softmax: (x, offset, n) => k.softmax(x.byteOffset + 4 * offset, n),
    argmax: (x, offset, n) => k.greedy(x.byteOffset + 4 * offset, n),
    causalSoftmax: (P, T, scale) => k.causalSoftmaxRows(P.byteOffset, T, scale),
    softmaxBackward: (P, s, T, scale) => k.softmaxBackwardRows(P.byteOffset, s.byteOffset, T, scale),
    swigluForward: (out, a, b, from, to) => k.swigluForwardTrain(out.byteOffset + 4 * from, a.byteOffset + 4 * from, b.byteOffset + 4 * from, to - from),
    swigluBackward: (da, db, dout, a, b, from, to) => k.swigluBackwardTrain(
      da.byteOffset + 4 * from, db.byteOffset + 4 * from, dout.byteOffset + 4 * from, a.byteOffset + 4 * from, b.byteOffset + 4 * from, to - from),
    crossEntropyBackwardRow: (p, offset, n, y, s) => k.crossEntropyBackwardRow(p.byteOffset + 4 * offset, n, y, s),
    rmsnormForward: (out, rstd, inp, weight, BT, C) => k.rmsnormForwardTrain(out.byteOffset, rstd.byteOffset, inp.byteOffset, weight.byteOffset, BT, C, RMS_EPS),
    rmsnormBackward: (dinp, dweight, dout, inp, weight, rstd, BT, C) =>
      k.rmsnormBackwardTrain(dinp.byteOffset, dweight.byteOffset, dout.byteOffset, inp.byteOffset, weight.byteOffset, rstd.byteOffset, BT, C),
    adamw(p, g, m, v, lr, weightDecay, hyper, step, from, to, gradScale) {
      // adamwStep's numbers of this step (in float64, then float32 as the kernel's arguments)
      const stepSize = lr / (1 - Math.pow(hyper.beta1, step)), bc2Sqrt = Math.sqrt(1 - Math.pow(hyper.beta2, step));
      const at = 4 * from;
      k.adamwTrain(p.byteOffset + at, g.byteOffset + at, m.byteOffset + at, v.byteOffset + at, to - from,
        1 - lr * weightDecay, hyper.beta1, 1 - hyper.beta1, hyper.beta2, 1 - hyper.beta2, stepSize, bc2Sqrt, hyper.eps, gradScale);
    },
  };
}

// Control block (Int32Array over a SharedArrayBuffer)
export const GEN = 0; //    command number: bumped by the main thread to start a command
export const OP = 1; //     ParallelOp (0 = exit)
export const LAYER = 2;
export const ARG = 3;
export const DONE = 4; //   workers finished with the current command
export const FAILED = 5; // set by a worker whose part threw
export const CONTROL_INTS = 8;

/** What a worker needs to rebuild the model's views. */
export interface PoolWorkerInit {
  readonly shared: SharedWasm;
  readonly control: SharedArrayBuffer;
  readonly index: number;
  readonly parts: number;
  readonly config: ModelConfig;
  readonly B: number;
  readonly T: number;
  readonly allocations: ReadonlyArray<readonly [number, number]>;
}

export interface TrainPool extends ParallelRunner {
  close(): Promise<void>;
}

/** Starts model.parts − 1 workers for `model`, whose buffers must all live in `shared.memory`. */
export async function createTrainPool(shared: SharedWasm, model: TrainModel): Promise<TrainPool> {
  const parts = model.parts;
  if (parts > shared.scratchSlots) throw new LlamaError(`the model has ${parts} parts, the kernels ${shared.scratchSlots} threads`);
  const serialKernels = serialWasmMatmul(instantiateKernels(shared.module, shared.memory), shared, 0);
  const controlBuffer = new SharedArrayBuffer(CONTROL_INTS * 4);
  const ctrl = new Int32Array(controlBuffer);
  const workers: Worker[] = [];
  const url = new URL('./pool-worker.js', import.meta.url);
  try {
    await Promise.all(Array.from({ length: parts - 1 }, (_, i) => new Promise<void>((resolve, reject) => {
      const init: PoolWorkerInit = {
        shared, control: controlBuffer, index: i + 1, parts,
        config: model.config, B: model.B, T: model.T, allocations: model.allocations,
      };
      const worker = new Worker(url, { workerData: init });
      workers.push(worker);
      worker.once('message', () => {
        worker.unref();
        resolve();
      });
      worker.once('error', (err) => reject(new LlamaError(`training worker thread failed to start: ${err.message}`)));
      worker.once('exit', (code) => reject(new LlamaError(`training worker thread exited during start-up (code ${code})`)));
    })));
  } catch (err) {
    await Promise.all(workers.map((w) => w.terminate()));
    throw err;
  }
  let closed = false;
  return {
    parts,
    serialKernels,
    run(op: ParallelOp, layer: number, arg: number): void {
      if (closed) throw new LlamaError('the training worker threads were closed');
      ctrl[OP] = op;
      ctrl[LAYER] = layer;
      ctrl[ARG] = arg;
      Atomics.store(ctrl, DONE, 0);
      Atomics.store(ctrl, FAILED, 0);
      Atomics.add(ctrl, GEN, 1);
      Atomics.notify(ctrl, GEN);
      try {
        model.runPart(op, layer, arg, 0, parts, serialKernels);
      } finally {
        // the workers use the same buffers: never return (or throw) before they are done
        let spins = 0;
        for (let done = Atomics.load(ctrl, DONE); done < parts - 1; done = Atomics.load(ctrl, DONE)) {
          if (++spins > 2000) Atomics.wait(ctrl, DONE, done, 5);
        }
      }
      if (Atomics.load(ctrl, FAILED) !== 0) throw new LlamaError('a training worker thread failed');
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      ctrl[OP] = 0;
      Atomics.add(ctrl, GEN, 1);
      Atomics.notify(ctrl, GEN);
      await Promise.all(workers.map((w) => new Promise<void>((resolve) => {
        w.once('exit', () => resolve());
        w.ref();
      })));
    },
  };
}
