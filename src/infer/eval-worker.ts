// Entry point of one evaluation worker thread (eval-windows.ts): loads the model on single-threaded
// WebAssembly kernels (the calling thread's compiled module: the same build, the same bits), then
// claims windows until none is left. A failure marks the evaluation failed before the error
// reaches the calling thread (the 'error' event), so the other threads stop claiming.

import { workerData } from 'node:worker_threads';
import { createWasmKernels } from '../kernels/wasm.js';
import { evalWindows } from './eval.js';
import { type EvalWorkerData, failWindows, runWindows } from './eval-windows.js';
import { loadTransformer } from './load.js';

const d = workerData as EvalWorkerData;
try {
  const kernels = await createWasmKernels({ module: d.model.module });
  const engine = loadTransformer(d.model.path, kernels, d.model.load);
  runWindows(engine, d.tokens, d.seqLen, evalWindows(d.tokens.length, d.seqLen, d.stride), d.control, d.sums);
} catch (err) {
  failWindows(d.control);
  throw err;
}
