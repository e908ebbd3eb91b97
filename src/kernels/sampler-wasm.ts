// The WebAssembly sampler (assembly/sampler.ts) for src/infer/sampler.ts: temperature, float32
// softmax and top-p / multinomial selection in one call, bit for bit what the TypeScript sampler
// computes (test/kernels-sampler.test.ts compares them).
//
// Where it works:
//   - logits in a kernel memory (the forward pass's own logits, with the wasm kernels): in place,
//     with the kernels' instance and scratch taken once from that memory's heap — no copy, no
//     second instance. Sampling runs between kernel calls, on the thread that makes them, so the
//     worker threads never touch the memory meanwhile.
//   - any other Float32Array (the js kernels, tests): in a small kernel memory of its own, one per
//     process; each call copies the logits in and the probabilities back out (run.c's sampler
//     leaves the probabilities in the logits buffer, and so does ours).
// Memory is taken when a new vocabulary size comes along, never per token.

import { type KernelExports, KernelMemory, createKernelMemory, instantiateKernels, kernelModuleIfLoaded } from './wasm.js';

export interface WasmSamplerEngine {
  /**
   * Samples from logits[0..n) (temperature > 0) with the given uniform draw; leaves the
   * probabilities in logits. topp ≤ 0 or ≥ 1: multinomial; otherwise nucleus.
   */
  sample(logits: Float32Array, n: number, temperature: number, topp: number, coin: number): number;
  /** The index of the first largest of logits[0..n) (greedy decoding), where it pays to ask (in place). */
  argmax?(logits: Float32Array, n: number): number;
}

/** Samples in place, in a kernel memory. */
class InPlaceEngine implements WasmSamplerEngine {
  private scratchAt = 0;
  private capacity = 0;

  constructor(private readonly heap: KernelMemory, private readonly k: KernelExports) {}

  sample(logits: Float32Array, n: number, temperature: number, topp: number, coin: number): number {
    if (n > this.capacity) {
      this.scratchAt = this.heap.reserve(this.k.sampleScratchBytes(n));
      this.capacity = n;
    }
    return this.k.sample(this.heap.address(logits), n, temperature, topp, coin, this.scratchAt);
  }

  argmax(logits: Float32Array, n: number): number {
    return this.k.greedy(this.heap.address(logits), n);
  }
}

/**
 * Samples in a kernel memory of its own: copies the logits into an area there, samples that in
 * place, and copies the probabilities back out.
 */
class CopyingEngine implements WasmSamplerEngine {
  private readonly inPlace: InPlaceEngine;
  private readonly heap: KernelMemory;
  /** The logits area, exactly n floats for the n of the last call (made again when n changes). */
  private view: Float32Array = new Float32Array(0);

  constructor(module: WebAssembly.Module) {
    const memory = createKernelMemory(1 << 16);
    const k = instantiateKernels(module, memory);
    this.heap = new KernelMemory(memory, k.heapBase());
    this.inPlace = new InPlaceEngine(this.heap, k);
  }

  sample(logits: Float32Array, n: number, temperature: number, topp: number, coin: number): number {
    if (this.view.length !== n) this.view = this.heap.floats(n);
    const view = this.view;
    if (logits.length === n) view.set(logits);
    else for (let i = 0; i < n; i++) view[i] = logits[i]!;
    const token = this.inPlace.sample(view, n, temperature, topp, coin);
    if (logits.length === n) logits.set(view);
    else for (let i = 0; i < n; i++) logits[i] = view[i]!;
    return token;
  }
}

const inPlace = new WeakMap<KernelMemory, InPlaceEngine>();
let copying: CopyingEngine | undefined;

/** True when the WebAssembly sampler can run (the kernels module is compiled: wasm kernels exist). */
export function wasmSamplerAvailable(): boolean {
  return kernelModuleIfLoaded() !== undefined;
}

/** The engine for these logits: in place in their kernel memory, else the copying one. */
export function wasmSamplerEngineFor(logits: Float32Array): WasmSamplerEngine | undefined {
  const heap = KernelMemory.of(logits);
  if (heap?.exports !== undefined) {
    let engine = inPlace.get(heap);
    if (engine === undefined) inPlace.set(heap, engine = new InPlaceEngine(heap, heap.exports));
    return engine;
  }
  if (copying !== undefined) return copying;
  const module = kernelModuleIfLoaded();
  return module === undefined ? undefined : (copying = new CopyingEngine(module));
}
