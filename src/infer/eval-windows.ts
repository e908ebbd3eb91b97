// Evaluation on several threads, a whole window per thread at a time (Node.js worker_threads).
//
// The windows of an evaluation are independent — each starts from an empty KV cache — so instead
// of splitting every product of every window between the threads (the kernel threads of
// threads.ts: a hand-off and a wait per product, and the norms, SwiGLU and cross-entropy left to
// the calling thread), each thread runs whole windows on an engine of its own, single-threaded:
// nothing to wait for but the last window. The calling thread and threads − 1 workers claim the
// windows one at a time from a shared counter (a thread the OS slows down simply takes fewer) and
// write each window's summed loss into a shared array, added up in window order at the end — the
// same bits as evaluateLoss on one thread (eval.ts), whoever ran which window.
//
// The price: every worker loads the model again (its own weights, activations and KV cache), so
// this is for models whose weights are small beside the machine's memory (the CLI chooses it up to
// WINDOW_THREADS_MAX_BYTES). Measured on a 2-core machine, as two processes on half the windows
// each against one process with two kernel threads: stories260K over 386,816 tokens 5.2–5.7 s
// against 5.9–6.4 s, the 15M shape over 20,480 tokens 8.0–8.7 s against 9.4–10.2 s; built, the 15M
// shape's 19 windows 2.13 s against 2.20 s (`--parallel windows` / `kernels`, medians of 5).
//
// Layout of the shared control block (Int32Array): [0] the next window to claim, [1] windows
// finished, [2] set to 1 by a worker that failed (the others stop claiming).

import { Worker } from 'node:worker_threads';
import { LlamaError } from '../errors.js';
import type { InferenceEngine } from './engine.js';
import { type EvalResult, type EvalWindow, checkSeqLen, evalResult, evalWindows, lossFunction, windowLoss } from './eval.js';
import type { LoadModelOptions } from './load.js';

const NEXT = 0, DONE = 1, FAILED = 2;

/** What a worker needs to load the same model the same way. */
export interface WindowThreadsModel {
  /** The model's path (any format loadTransformer reads). */
  readonly path: string;
  /** Its load options (as the calling thread's engine was loaded: quantization, context window). */
  readonly load: LoadModelOptions;
  /** The compiled kernels the calling thread's engine runs (the same build: the same bits). */
  readonly module: WebAssembly.Module;
}

/** workerData of eval-worker.ts. */
export interface EvalWorkerData {
  readonly model: WindowThreadsModel;
  readonly tokens: Uint16Array;
  readonly seqLen: number;
  readonly stride: number;
  readonly control: Int32Array;
  readonly sums: Float64Array;
}

/**
 * Claims windows until none is left (or a thread failed), summing each one's losses into sums[w].
 * `after` runs after each window this thread finished, with the number finished by all threads.
 */
export function runWindows(
  engine: InferenceEngine, tokens: Uint16Array, seqLen: number, windows: readonly EvalWindow[],
  control: Int32Array, sums: Float64Array, after?: (done: number) => void,
): void {
  const lossOf = lossFunction(engine);
  for (;;) {
    if (Atomics.load(control, FAILED) !== 0) return;
    const w = Atomics.add(control, NEXT, 1);
    if (w >= windows.length) return;
    sums[w] = windowLoss(engine, tokens, seqLen, windows[w]!, lossOf);
    const done = Atomics.add(control, DONE, 1) + 1;
    after?.(done);
  }
}

/** Marks the evaluation failed (a worker that threw): the other threads stop claiming windows. */
export function failWindows(control: Int32Array): void {
  Atomics.store(control, FAILED, 1);
}

/**
 * evaluateLoss (eval.ts) on `threads` threads: this one, with `engine` (single-threaded kernels,
 * loaded from `model`), and threads − 1 workers, each with the model loaded again. Same result, bit
 * for bit. onWindow(done, total) is called on this thread after each window it finishes.
 */
export async function evaluateLossOnThreads(
  engine: InferenceEngine, model: WindowThreadsModel, threads: number, tokens: Uint16Array, seqLen: number,
  onWindow?: (done: number, total: number) => void, stride = seqLen,
): Promise<EvalResult> {
  checkSeqLen(seqLen, engine.config.seqLen);
  const windows = evalWindows(tokens.length, seqLen, stride);
  const shared = new Uint16Array(new SharedArrayBuffer(tokens.byteLength));
  shared.set(tokens);
  const control = new Int32Array(new SharedArrayBuffer(3 * 4));
  const sums = new Float64Array(new SharedArrayBuffer(windows.length * 8));
  const data: EvalWorkerData = { model, tokens: shared, seqLen, stride, control, sums };
  const workers = Math.min(threads, windows.length) - 1;
  const failures: string[] = [];
  const exits: Array<Promise<void>> = [];
  for (let i = 0; i < workers; i++) {
    // execArgv []: the workers need no Node.js flags, and some (--input-type, …) would make them fail
    const worker = new Worker(new URL('./eval-worker.js', import.meta.url), { workerData: data, execArgv: [] });
    exits.push(new Promise<void>((done) => {
      worker.once('error', (err) => { failWindows(control); failures.push(err.message); });
      worker.once('exit', () => done());
    }));
  }
  try {
    runWindows(engine, shared, seqLen, windows, control, sums, (done) => onWindow?.(done, windows.length));
  } catch (err) {
    failWindows(control);
    await Promise.all(exits);
    throw err;
  }
  await Promise.all(exits);
  if (failures.length > 0) throw new LlamaError(`an evaluation thread failed: ${failures[0]}`);
  const done = Atomics.load(control, DONE);
  if (done !== windows.length) throw new LlamaError(`an evaluation thread stopped early: ${done} of ${windows.length} windows finished`);
  onWindow?.(done, windows.length);
  return evalResult(windows, sums, seqLen);
}
