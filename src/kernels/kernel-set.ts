// One object with every kernel the engine and the trainer call, and the choice of implementation
// (`--kernels js|wasm`, `--threads N`).
//
//   js    the reference TypeScript kernels (js.ts, q8-js.ts, train-js.ts); ordinary memory
//   wasm  WebAssembly SIMD kernels (wasm.ts) on shared memory, split over `threads` worker
//         threads (threads.ts) when threads > 1
//
// The default is wasm on all cores, falling back to js where WebAssembly SIMD or shared memory is
// unavailable.

import { availableParallelism } from 'node:os';
import { jsKernels } from './js.js';
import { jsQ8Kernels } from './q8-js.js';
import type { Q8Kernels } from './q8-types.js';
import { jsTrainKernels } from './train-js.js';
import type { TrainKernels } from './train-types.js';
import type { FusedForward, GroupedMatmul, KernelMemories, KernelWarmUp, Kernels } from './types.js';

export interface KernelSet extends Kernels, Q8Kernels, TrainKernels, Partial<FusedForward>, Partial<GroupedMatmul>, Partial<KernelMemories>, Partial<KernelWarmUp> {
  /** Threads the parallel kernels use, counting the calling thread (1 = no workers). */
  readonly threads: number;
  /** Stops the worker threads (if any). Idle workers never keep the process alive; this is tidiness. */
  close(): Promise<void>;
}

export type KernelKind = 'js' | 'wasm';

export interface KernelChoice {
  /** Default 'wasm' (falls back to 'js' when unsupported unless asked for explicitly). */
  kind?: KernelKind;
  /** Default: the number of cores. Only the wasm kernels use threads. */
  threads?: number;
  /** Bytes of WebAssembly memory to reserve up front (it grows on demand at allocation time). */
  initialBytes?: number;
  /** wasm: the most one WebAssembly memory holds (default 4 GiB); larger models use several. */
  memoryBytes?: number;
}

/** The reference kernels as a KernelSet. */
export const jsKernelSet: KernelSet = {
  ...jsKernels, ...jsQ8Kernels, ...jsTrainKernels,
  name: 'js',
  threads: 1,
  close: async () => {},
};

/** Number of threads used when none is requested: one per core. */
export function defaultThreads(): number {
  return Math.max(1, availableParallelism());
}

/**
 * Creates the kernels asked for. kind 'wasm' given explicitly fails (LlamaError) where WebAssembly
 * SIMD is unsupported; left to the default it falls back to 'js'.
 */
export async function createKernels(choice: KernelChoice = {}): Promise<KernelSet> {
  const { wasmSupported } = await import('./wasm.js');
  const kind = choice.kind ?? (wasmSupported() ? 'wasm' : 'js');
  if (kind === 'js') return jsKernelSet;
  const { createThreadedKernels } = await import('./threads.js');
  return createThreadedKernels({ threads: choice.threads ?? defaultThreads(), initialBytes: choice.initialBytes, memoryBytes: choice.memoryBytes });
}
