// The WebAssembly sampler (assembly/sampler.ts) for src/infer/sampler.ts: temperature, float32
// softmax and top-p / multinomial selection in one call, bit for bit what the TypeScript sampler
// computes (test/sampler.test.ts compares them).
//
// One instance per process, on a small memory of its own (not the kernels' memory, which may be
// busy with worker threads and whose logits may be an ordinary array under --kernels js): each call
// copies the logits in and the probabilities back out (run.c's sampler leaves the probabilities in
// the logits buffer, and so does ours). Sampling runs on one thread at a time (it is synchronous),
// so one scratch area serves every Sampler. Memory grows when a larger vocabulary comes along,
// never per token.

import { type KernelExports, createKernelMemory, instantiateKernels, kernelModuleIfLoaded } from './wasm.js';

const ALIGN = 64;

export class WasmSamplerEngine {
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

  /**
   * Samples from logits[0..n) (temperature > 0) with the given uniform draw; leaves the
   * probabilities in logits. topp ≤ 0 or ≥ 1: multinomial; otherwise nucleus.
   */
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

let engine: WasmSamplerEngine | undefined;

/** The process's WebAssembly sampler, if the kernels module is already compiled (else undefined). */
export function wasmSamplerEngine(): WasmSamplerEngine | undefined {
  if (engine !== undefined) return engine;
  const module = kernelModuleIfLoaded();
  if (module === undefined) return undefined;
  engine = new WasmSamplerEngine(module);
  return engine;
}
