// Entry point of one kernel worker thread (Node.js worker_threads). It instantiates the kernels on
// each of the shared memories it is given (a model larger than 4 GiB spans several), then obeys the
// control block (in memory 0) until told to exit (thread-protocol.ts); it may join while commands
// are already running. The browser's counterpart is web/kernel-worker.ts.

import { workerData } from 'node:worker_threads';
import { commandLoop, controlInts } from './thread-protocol.js';
import { instantiateKernels } from './wasm.js';

export interface WorkerInit {
  readonly module: WebAssembly.Module;
  /** The kernel set's memories, in order; the control block is in the first. */
  readonly memories: readonly WebAssembly.Memory[];
  /** Byte address of the control block in memory 0. */
  readonly control: number;
  /** This worker's participant number (1 .. threads-1; the calling thread is 0). */
  readonly index: number;
  /** Participants in all (the calling thread and the workers). */
  readonly threads: number;
}

const init = workerData as WorkerInit;
const kernels = init.memories.map((memory) => instantiateKernels(init.module, memory));
const ctrl = new Int32Array(init.memories[0]!.buffer, init.control, controlInts(init.threads));
commandLoop(kernels, ctrl, init.index, init.threads);
