// The WebAssembly sampler (assembly/sampler.ts) for src/infer/sampler.ts: temperature, float32
// softmax and top-p / multinomial selection in one call, bit for bit what the TypeScript sampler
// computes (test/kernels-sampler.test.ts compares them).
//
// Where it works:
//   - logits in a kernel memory (the forward pass's own logits, with the wasm kernels): in place,
//     with the kernels' instance and scratch taken once from that memory's heap — no copy, no
//     second instance. Sampling runs between kernel calls, on the thread that makes them, so the
//     worker threads never touch the memory meanwhile.
//   - any other Float32Array (the js kernels, tests): in a small memory of its own, one per
//     process; each call copies the logits in and the probabilities back out (run.c's sampler
//     leaves the probabilities in the logits buffer, and so does ours).
// Memory grows when a larger vocabulary comes along, never per token.

import { type KernelExports, KernelMemory, createKernelMemory, instantiateKernels, kernelModuleIfLoaded } from './wasm.js';

const ALIGN = 64;

export interface WasmSamplerEngine {
  /**
   * Samples from logits[0..n) (temperature > 0) with the given uniform draw; leaves the
   * probabilities in logits. topp ≤ 0 or ≥ 1: multinomial; otherwise nucleus.
   */
  sample(logits: Float32Array, n: number, temperature: number, topp: number, coin: number): number;
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
}

/** Samples in a memory of its own, copying the logits in and the probabilities out. */
class CopyingEngine implements WasmSamplerEngine {
  private readonly k: KernelExports;
  private readonly memory: WebAssembly.Memory;
  /** Address and capacity (floats) of the logits area; the scratch follows it. */
  private readonly logitsAt: number;
  private capacity = 0;
  private scratchAt = 0;
  /** The logits area as n floats, for the n of the last call. */
  private view: Float32Array = new Float32Array(0);

  constructor(module: WebAssembly.Module) {
    this.memory = createKernelMemory(1 << 16);
    this.k = instantiateKernels(module, this.memory);
    this.logitsAt = alignUp(this.k.heapBase(), ALIGN);
  }

  /** Room for a vocabulary of n (grows the memory at most once per new largest n). */
  private reserve(n: number): void {
    if (n > this.capacity) {
      this.scratchAt = alignUp(this.logitsAt + n * 4, ALIGN);
      const end = this.scratchAt + this.k.sampleScratchBytes(n);
      const have = this.memory.buffer.byteLength;
      if (end > have) this.memory.grow(Math.ceil((end - have) / 65536));
      this.capacity = n;
    }
    // a view of exactly n floats (made again only when n changes)
    if (this.view.length !== n) this.view = new Float32Array(this.memory.buffer, this.logitsAt, n);
  }

  sample(logits: Float32Array, n: number, temperature: number, topp: number, coin: number): number {
    this.reserve(n);
    const view = this.view;
    if (logits.length === n) view.set(logits);
    else for (let i = 0; i < n; i++) view[i] = logits[i]!;
    const token = this.k.sample(this.logitsAt, n, temperature, topp, coin, this.scratchAt);
    if (logits.length === n) logits.set(view);
    else for (let i = 0; i < n; i++) logits[i] = view[i]!;
    return token;
  }
}

function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
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
