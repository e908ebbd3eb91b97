// Entry point of a training worker thread (see pool.ts): rebuilds the model's views over the
// shared memory, says it is ready, then runs its part of each command until told to exit.

import { parentPort, workerData } from 'node:worker_threads';
import { instantiateKernels } from '../kernels/wasm.js';
import { TrainModel, type ParallelOp } from './model.js';
import { ARG, DONE, FAILED, GEN, LAYER, OP, type PoolWorkerInit, serialWasmMatmul } from './pool.js';

const init = workerData as PoolWorkerInit;
const memory = init.shared.memory;
const mm = serialWasmMatmul(instantiateKernels(init.shared.module, memory), init.shared, init.index);
let next = 0;
const replay = (floats: number): Float32Array => {
  const entry = init.allocations[next++];
  if (entry === undefined || entry[1] !== floats) throw new Error(`model layout mismatch at allocation ${next - 1}`);
  return new Float32Array(memory.buffer, entry[0], floats);
};
const [paramsAt, paramsFloats] = init.allocations[0]!;
const model = new TrainModel(init.config, new Float32Array(memory.buffer, paramsAt, paramsFloats), {
  B: init.B, T: init.T, parts: init.parts, kernels: mm, allocate: replay,
});
const ctrl = new Int32Array(init.control);
// Read the command number BEFORE saying ready: the first command may follow at once.
let gen = Atomics.load(ctrl, GEN);
parentPort!.postMessage('ready');

for (;;) {
  Atomics.wait(ctrl, GEN, gen);
  gen = Atomics.load(ctrl, GEN);
  const op = Atomics.load(ctrl, OP) as ParallelOp | 0;
  if (op === 0) break;
  try {
    model.runPart(op, ctrl[LAYER]!, ctrl[ARG]!, init.index, init.parts, mm);
  } catch {
    Atomics.store(ctrl, FAILED, 1);
  }
  Atomics.add(ctrl, DONE, 1);
  Atomics.notify(ctrl, DONE);
}
