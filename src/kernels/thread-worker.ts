// Entry point of one kernel worker thread (Node.js worker_threads). It instantiates the kernels on
// the shared memory it is given, then obeys the control block until told to exit
// (thread-protocol.ts); it may join while commands are already running. The browser's counterpart
// is web/kernel-worker.ts.

import { workerData } from 'node:worker_threads';
import { commandLoop, controlInts } from './thread-protocol.js';
import { instantiateKernels } from './wasm.js';

export interface WorkerInit {
  readonly module: WebAssembly.Module;
  readonly memory: WebAssembly.Memory;
  /** Byte address of the control block in the memory. */
  readonly control: number;
  /** This worker's participant number (1 .. threads-1; the calling thread is 0). */
  readonly index: number;
  /** Participants in all (the calling thread and the workers). */
  readonly threads: number;
}

const init = workerData as WorkerInit;
const kernels = instantiateKernels(init.module, init.memory);
const ctrl = new Int32Array(init.memory.buffer, init.control, controlInts(init.threads));
commandLoop(kernels, ctrl, init.index, init.threads);
