// One kernel thread in the browser: the Web Worker counterpart of src/kernels/thread-worker.ts.
// Its first message is the WorkerInit (the compiled kernels and the shared memories); it then obeys
// the control block (src/kernels/thread-protocol.ts) until told to exit.
// Built as thread-worker.js, beside the engine bundle (see shims/worker-threads.ts).

import type { WorkerInit } from '../src/kernels/thread-worker.js';
import { commandLoop, controlInts } from '../src/kernels/thread-protocol.js';
import { instantiateKernels } from '../src/kernels/wasm.js';
import type { ShimMessage } from './shims/worker-threads.js';

interface WorkerScope {
  onmessage: ((e: { readonly data: WorkerInit }) => void) | null;
  postMessage(message: ShimMessage): void;
  close(): void;
}
const scope = self as unknown as WorkerScope;

scope.onmessage = (e) => {
  scope.onmessage = null;
  const init = e.data;
  const kernels = init.memories.map((memory) => instantiateKernels(init.module, memory));
  const ctrl = new Int32Array(init.memories[0]!.buffer, init.control, controlInts(init.threads));
  commandLoop(kernels, ctrl, init.index, init.threads);
  scope.postMessage({ kind: 'exit', code: 0 });
  scope.close();
};
