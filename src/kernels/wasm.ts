// The WebAssembly SIMD kernels (compiled from assembly/kernels.ts into kernels.wasm next to this
// file) behind the KernelSet interface, single-threaded. threads.ts adds worker threads on top.
//
// Memory. Tensors live in shared WebAssembly.Memory objects, each handed out by a bump allocator
// (`KernelMemory`): allocate(n) returns a Float32Array view of n floats at a 64-byte aligned byte
// offset, and kernels receive `view.byteOffset` as the address. Nothing is ever freed: allocate
// everything (weights, activations, caches) once, up front. A memory grows, when needed, at
// allocation time only. Because it is shared, growing never detaches earlier views (a
// SharedArrayBuffer cannot be detached): views made before a grow stay valid and keep pointing at
// the same bytes; `memory.buffer` just returns a new, longer SharedArrayBuffer afterwards. So a view
// is made once and reused for every token.
//
// Several memories. A wasm32 memory holds at most 4 GiB, and Node.js 20 has neither memory64 nor
// multi-memory, so a model larger than that (Llama-2-7B as int8: 7 GB) is spread over several
// memories, each with its own instance of the module. A kernel call runs in the instance of the
// memory its arguments live in (all the arguments of one call must share a memory: the first one
// decides, the others are checked); allocate(n, memory) names the memory. Which tensors go where
// is the loader's business (src/infer/placement.ts), and the Transformer keeps activation buffers
// in each memory it uses and copies the residual stream across (a few KB per token). `memoryBytes`
// sets how large each memory may grow (4 GiB; tests make it small to force several).
//   When memory64 (or multi-memory) arrives, one memory can hold everything: memoryBytes becomes
// the model's size, the placement puts every layer in memory 0, and nothing above changes —
// this routing is the only place that knows there were several.
//
// This module is platform-neutral (Node.js and browsers): createWasmKernelsFromModule takes a
// compiled WebAssembly.Module; createWasmKernels also accepts the .wasm bytes, and loads them from
// next to this file (fs in Node.js, fetch elsewhere) when given nothing.

import { LlamaError, OutOfMemoryError } from '../errors.js';
import type { KernelSet } from './kernel-set.js';
import type { AttentionShape, ForwardModel, GroupedProduct, KernelMemories, WeightMatrix } from './types.js';

/** The functions assembly/kernels.ts exports; every address is a byte offset into the memory. */
export interface KernelExports {
  matmul(xout: number, x: number, w: number, n: number, d: number): void;
  matmulRows(xout: number, x: number, w: number, n: number, r0: number, r1: number): void;
  matmulRowsMulti(xout: number, x: number, xI: number, w: number, n: number, d: number, count: number, r0: number, r1: number): void;
  interleaveSessions(xI: number, x: number, n: number, count: number): void;
  interleavedBytes(n: number, count: number): number;
  rmsnorm(o: number, x: number, weight: number, size: number, eps: number): void;
  softmax(x: number, size: number): void;
  rope(q: number, k: number, pos: number, dim: number, kvDim: number, headSize: number, theta: number): void;
  ropeTable(q: number, k: number, table: number, dim: number, kvDim: number, headSize: number): void;
  rmsnormRows(o: number, x: number, weight: number, rows: number, size: number, eps: number): void;
  causalSoftmaxRows(p: number, T: number, scale: number): void;
  softmaxBackwardRows(P: number, s: number, T: number, scale: number): void;
  swigluForwardTrain(out: number, a: number, b: number, n: number): void;
  swigluBackwardTrain(da: number, db: number, dout: number, a: number, b: number, n: number): void;
  crossEntropyBackwardRow(p: number, n: number, y: number, s: number): void;
  rmsnormForwardTrain(out: number, rstd: number, x: number, weight: number, rows: number, C: number, eps: number): void;
  rmsnormBackwardTrain(dx: number, dweight: number, dout: number, x: number, weight: number, rstd: number, rows: number, C: number): void;
  adamwTrain(
    p: number, g: number, m: number, v: number, n: number, decay: number, beta1: number, oneMinusBeta1: number,
    beta2: number, oneMinusBeta2: number, stepSize: number, bc2Sqrt: number, eps: number, gradScale: number,
  ): void;
  ropeTableRows(q: number, k: number, table: number, rows: number, dim: number, kvDim: number, headSize: number): void;
  attentionSession(
    out: number, q: number, keyCache: number, valueCache: number, att: number, pos: number,
    nHeads: number, nKvHeads: number, headSize: number, kvDim: number, seqLen: number,
  ): void;
  attentionHeads(
    out: number, q: number, keyCache: number, valueCache: number, att: number, pos: number,
    nHeads: number, nKvHeads: number, headSize: number, kvDim: number, seqLen: number, h0: number, h1: number,
  ): void;
  attentionBlockHeads(
    out: number, q: number, keyCache: number, valueCache: number, scores: number, pos: number, count: number,
    nHeads: number, nKvHeads: number, headSize: number, kvDim: number, h0: number, h1: number, scratch: number,
  ): void;
  attentionScoresBytes(seqLen: number): number;
  attentionRowsHeads(
    out: number, q: number, keyCache: number, valueCache: number, att: number, pos: number, count: number,
    nHeads: number, nKvHeads: number, headSize: number, kvDim: number, seqLen: number, h0: number, h1: number,
  ): void;
  crossEntropy(x: number, n: number, target: number): number;
  expSum(x: number, n: number, out: number): void;
  swiglu(hb: number, hb2: number, size: number): void;
  add(x: number, y: number, size: number): void;
  quantize(xq: number, xs: number, x: number, n: number, groupSize: number): void;
  matmulQ8Rows(xout: number, xq: number, xs: number, wq: number, ws: number, n: number, streamed: number, groupSize: number, r0: number, r1: number): void;
  gemm(
    c: number, ldc: number, a: number, sam: number, sak: number, b: number, sb: number, bRows: number,
    K: number, accumulate: number, m0: number, m1: number, n0: number, n1: number, scratch: number,
  ): void;
  gemmScratchBytes(): number;
  gemmQ8(
    c: number, ldc: number, xq: number, xs: number, wq: number, ws: number, n: number, gs: number,
    m0: number, m1: number, r0: number, r1: number, scratch: number, scratchBytes: number,
  ): void;
  heapBase(): number;
  forward(plan: number, token: number, pos: number, logits: number): void;
  sample(x: number, n: number, temperature: number, topp: number, coin: number, scratch: number): number;
  sampleScratchBytes(n: number): number;
  greedy(x: number, n: number): number;
}

const PAGE_BYTES = 65536;
/** The module declares a shared memory of at most 65536 pages (4 GiB, all of wasm32). */
export const MAX_PAGES = 65536;
/** The most one memory can hold: 4 GiB. */
export const MAX_MEMORY_BYTES = MAX_PAGES * PAGE_BYTES;
const ALIGN = 64;
/** Largest head size whose RoPE rotations are cached per position (cos and sin per pair). */
const ROPE_TABLE_FLOATS = 1024;

/** Instantiates the kernels on a shared memory (each worker thread does this with the same memory). */
export function instantiateKernels(module: WebAssembly.Module, memory: WebAssembly.Memory): KernelExports {
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  return instance.exports as unknown as KernelExports;
}

/** Creates a shared memory the kernels import, of at most `maximumBytes` (a multiple of 64 KiB). */
export function createKernelMemory(initialBytes: number, maximumBytes = MAX_MEMORY_BYTES): WebAssembly.Memory {
  const maximum = Math.floor(maximumBytes / PAGE_BYTES);
  const initial = Math.min(maximum, Math.max(1, Math.ceil(initialBytes / PAGE_BYTES)));
  if (initial * PAGE_BYTES < initialBytes) throw new OutOfMemoryError(`cannot reserve ${initialBytes} bytes: a WebAssembly memory is limited to ${sizeText(maximumBytes)}`);
  try {
    return new WebAssembly.Memory({ initial, maximum, shared: true });
  } catch (err) {
    // the engine could not reserve the address space (a browser tab's limit, a 32-bit system)
    throw new OutOfMemoryError(`cannot create a WebAssembly memory of up to ${sizeText(maximumBytes)}: ${(err as Error).message}`);
  }
}

function sizeText(bytes: number): string {
  return bytes >= 2 ** 30 ? `${+(bytes / 2 ** 30).toFixed(2)} GiB` : `${+(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** The KernelMemory that made views of each SharedArrayBuffer object. */
const owners = new WeakMap<ArrayBufferLike, KernelMemory>();

/**
 * Bump allocator over the shared memory. Also remembers every SharedArrayBuffer object it made
 * views from, so a kernel can refuse an array that does not live in this memory, and the memory
 * of a view can be found from the view (KernelMemory.of).
 */
export class KernelMemory {
  private next: number;
  /** The kernels instantiated on this memory by this thread (set by createWasmKernelsFromModule). */
  exports: KernelExports | undefined;

  /** The kernel memory `view` lives in, if it lives in one. */
  static of(view: ArrayBufferView): KernelMemory | undefined {
    return owners.get(view.buffer);
  }

  /**
   * `index`: its place among its kernel set's memories (0 for the first or only one); `limit`: the
   * bytes it may grow to.
   */
  constructor(readonly memory: WebAssembly.Memory, heapBase: number, readonly index = 0, readonly limit = MAX_MEMORY_BYTES) {
    this.next = alignUp(heapBase, ALIGN);
  }

  /** Bytes that can still be reserved. */
  get available(): number {
    return this.limit - this.next;
  }

  /** Bytes handed out so far (including the module's own static data). */
  get used(): number {
    return this.next;
  }

  /** Reserves `bytes` (64-byte aligned), growing the memory if needed; returns the address. */
  reserve(bytes: number): number {
    const address = this.next;
    const end = address + alignUp(bytes, ALIGN);
    const size = this.memory.buffer.byteLength;
    if (end > size) {
      const pages = Math.ceil((end - size) / PAGE_BYTES);
      if (end > this.limit) {
        throw new OutOfMemoryError(`out of WebAssembly memory: cannot grow memory ${this.index} to ${end} bytes (the limit is ${sizeText(this.limit)})`);
      }
      try {
        this.memory.grow(pages);
      } catch {
        throw new OutOfMemoryError(`out of memory: cannot grow WebAssembly memory ${this.index} to ${end} bytes`);
      }
    }
    this.next = end;
    return address;
  }

  /** The current buffer (registered as one of ours). */
  private buffer(): ArrayBufferLike {
    const buffer = this.memory.buffer;
    owners.set(buffer, this);
    return buffer;
  }

  // (reserve first: it may grow the memory, and the view must come from the grown buffer)
  floats(count: number): Float32Array {
    const address = this.reserve(count * 4);
    return new Float32Array(this.buffer(), address, count);
  }

  int8(count: number): Int8Array {
    const address = this.reserve(count);
    return new Int8Array(this.buffer(), address, count);
  }

  int32(count: number): Int32Array {
    const address = this.reserve(count * 4);
    return new Int32Array(this.buffer(), address, count);
  }

  /** The address of a view, after checking it lives in this memory. */
  address(view: ArrayBufferView): number {
    const owner = owners.get(view.buffer);
    if (owner !== this) {
      throw new LlamaError(owner === undefined
        ? 'kernel argument is not in the kernels\' memory (allocate it with kernels.allocate)'
        : `kernel arguments in two memories (${this.index} and ${owner.index}): the arrays of one call must share a memory`);
    }
    return view.byteOffset;
  }
}

function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** Throws unless `view` holds at least `count` elements (the WebAssembly side cannot check). */
export function need(view: ArrayBufferView & { length: number }, count: number, what: string): void {
  if (view.length < count) throw new RangeError(`${what}: ${view.length} elements, ${count} needed`);
}

// A minimal module using one SIMD instruction: () → v128 { i8x16.popcnt(i8x16.splat(0)) }.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);

/** True where WebAssembly with 128-bit SIMD and shared memory (threads) is available. */
export function wasmSupported(): boolean {
  if (typeof WebAssembly !== 'object' || typeof SharedArrayBuffer !== 'function') return false;
  try {
    if (!WebAssembly.validate(SIMD_PROBE)) return false;
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    return true;
  } catch {
    return false;
  }
}

// A minimal module using one relaxed SIMD instruction: () → v128 { f32x4.relaxed_madd(0, 0, 0) }.
const RELAXED_SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 61, 1, 59, 0,
  ...[0, 1, 2].flatMap(() => [253, 12, ...new Array<number>(16).fill(0)]), 253, 133, 2, 11,
]);

/** Whether this is Node.js (else a browser). */
const inNode = typeof process === 'object' && typeof process.versions?.node === 'string';

/**
 * Whether this engine runs relaxed SIMD (kernels-fma.wasm's fused multiply-add). V8 ships it from
 * 11.4 (Node.js 22, Chrome 114); Node.js 20 has it behind --experimental-wasm-relaxed-simd, which
 * this turns on (it only adds the instructions).
 */
export async function relaxedSimdAvailable(): Promise<boolean> {
  if (typeof WebAssembly !== 'object') return false;
  if (WebAssembly.validate(RELAXED_SIMD_PROBE)) return true;
  if (!inNode) return false;
  const v8 = await import('node:v8');
  v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
  return WebAssembly.validate(RELAXED_SIMD_PROBE);
}

/** kernels-fma.wasm where the engine runs it, unless LLAMA2TS_FMA=0 in the environment asks for kernels.wasm. */
async function fmaWanted(): Promise<boolean> {
  if (inNode && process.env['LLAMA2TS_FMA'] === '0') return false;
  return relaxedSimdAvailable();
}

/** The compiled kernels (kernels-fma.wasm where it runs, else kernels.wasm), read once from next to this file. */
let cachedModule: Promise<WebAssembly.Module> | undefined;
/** The same module once compiled (or the first one given to createWasmKernelsFromModule). */
let compiledModule: WebAssembly.Module | undefined;
/** Which of the two loadKernelModule took. */
let loadedFile: 'kernels.wasm' | 'kernels-fma.wasm' | undefined;

/**
 * The kernels module if this process has already compiled it (wasm kernels were created), else
 * undefined: for code that must decide synchronously, like the sampler.
 */
export function kernelModuleIfLoaded(): WebAssembly.Module | undefined {
  return compiledModule;
}

/**
 * Whether the kernels loaded by default use fused multiply-adds in the matrix × matrix product
 * (kernels-fma.wasm); undefined before they are loaded.
 */
export function kernelsUseFma(): boolean | undefined {
  return loadedFile === undefined ? undefined : loadedFile === 'kernels-fma.wasm';
}

/**
 * The kernels' module. Two builds of assembly/ sit next to this file: kernels.wasm (128-bit SIMD)
 * and kernels-fma.wasm, the same with relaxed SIMD, whose only changes are that the matrix × matrix
 * product (assembly/gemm.ts: batched prefill, evaluation, training) multiplies and adds in one
 * rounding — ~30% faster there — and so do the exponentials of the softmaxes and cross-entropy
 * beside those products (assembly/exp.ts, `fused`); every one-token kernel is the same code, bit
 * for bit.
 */
export function loadKernelModule(): Promise<WebAssembly.Module> {
  cachedModule ??= (async () => {
    const file = (await fmaWanted()) ? 'kernels-fma.wasm' : 'kernels.wasm';
    const url = new URL(`./${file}`, import.meta.url);
    let bytes: Uint8Array;
    if (url.protocol === 'file:') {
      const { readFile } = await import('node:fs/promises');
      const { fileURLToPath } = await import('node:url');
      try {
        bytes = await readFile(fileURLToPath(url));
      } catch (err) {
        throw new LlamaError(`cannot read the WebAssembly kernels (${fileURLToPath(url)}): ${(err as Error).message}; run npm run build`);
      }
    } else {
      const response = await fetch(url);
      if (!response.ok) throw new LlamaError(`cannot fetch the WebAssembly kernels (${url.href}): HTTP ${response.status}`);
      bytes = new Uint8Array(await response.arrayBuffer());
    }
    const module = await WebAssembly.compile(bytes);
    compiledModule ??= module;
    loadedFile = file;
    return module;
  })();
  return cachedModule;
}

export interface WasmKernelOptions {
  /** The kernels' module as bytes or compiled; default: loadKernelModule(). */
  module?: WebAssembly.Module | ArrayBufferView | ArrayBuffer;
  /** Bytes of memory 0 to reserve up front (default 16 MiB); it grows on demand at allocation time. */
  initialBytes?: number;
  /**
   * The most each memory may hold (default and at most 4 GiB; rounded down to 64 KiB pages). A
   * model larger than that is spread over several memories; tests make it small to force that.
   */
  memoryBytes?: number;
}

/** The single-threaded WebAssembly kernels, plus what threads.ts needs to share them. */
export interface WasmKernelSet extends Omit<KernelSet, keyof KernelMemories>, KernelMemories {
  readonly module: WebAssembly.Module;
  /** Memory 0 (the only one of a model that fits in 4 GiB; the trainer's). */
  readonly heap: KernelMemory;
  /** Memory 0's instance. */
  readonly exports: KernelExports;
  /** Every memory so far, in order. */
  readonly memories: readonly KernelMemory[];
  /** The memory `view` lives in, checked to be one of this set's (else a LlamaError). */
  route(view: ArrayBufferView): KernelMemory;
  /** Calls `listener` with each memory created from now on (threads.ts attaches its workers). */
  onMemoryAdded(listener: (memory: KernelMemory) => void): void;
  /** The matrix × matrix product's packing buffer in `memory` (assembly/gemm.ts). */
  gemmScratch(memory: KernelMemory): number;
  /**
   * Copies `count` vectors of n at address x (in `memory`) into the layout matmulRowsMulti reads
   * (assembly/kernels.ts interleaveSessions), in a buffer of that memory; returns its address.
   */
  interleaveSessions(memory: KernelMemory, x: number, n: number, count: number): number;
}

export async function createWasmKernels(options: WasmKernelOptions = {}): Promise<WasmKernelSet> {
  if (!wasmSupported()) throw new LlamaError('this JavaScript engine lacks WebAssembly SIMD or shared memory: use --kernels js');
  const given = options.module;
  const module = given === undefined ? await loadKernelModule()
    : given instanceof WebAssembly.Module ? given : await WebAssembly.compile(given);
  return createWasmKernelsFromModule(module, options.initialBytes, options.memoryBytes);
}

/**
 * RoPE's cos/sin depend only on (pos, offset in the head, θ): computed once per position (in
 * float64, as the reference does) and reused by every layer, instead of once per layer. One table
 * per memory (the kernel reads it by address).
 */
class RopeTable {
  private cosSin: Float32Array = new Float32Array(0);
  private rows = 0;
  private headSize = -1;
  private theta = -1;

  constructor(private readonly heap: KernelMemory) {}

  /**
   * The address of the (cos, sin) row of position `pos` for (headSize, theta): a table of the
   * positions seen so far, reused by every layer and every later token (a prompt's block visits each
   * position once per layer). It grows by doubling; a change of head size or θ starts a new one.
   */
  at(pos: number, headSize: number, theta: number): number {
    if (headSize !== this.headSize || theta !== this.theta) {
      this.rows = 0;
      this.headSize = headSize;
      this.theta = theta;
    }
    if (pos >= this.rows) {
      const rows = Math.max(pos + 1, 2 * this.rows, 64);
      if (rows * headSize > this.cosSin.length) {
        const grown = this.heap.floats(rows * headSize);
        grown.set(this.cosSin.subarray(0, this.rows * headSize));
        this.cosSin = grown;
      }
      for (let p = this.rows; p < rows; p++) {
        for (let i = 0; i < headSize; i += 2) {
          const angle = p * (1 / Math.pow(theta, i / headSize));
          this.cosSin[p * headSize + i] = Math.cos(angle);
          this.cosSin[p * headSize + i + 1] = Math.sin(angle);
        }
      }
      this.rows = rows;
    }
    return this.cosSin.byteOffset + pos * headSize * 4;
  }
}

export function createWasmKernelsFromModule(module: WebAssembly.Module, initialBytes = 16 << 20, memoryBytes = MAX_MEMORY_BYTES): WasmKernelSet {
  compiledModule ??= module;
  const limit = Math.floor(Math.min(MAX_MEMORY_BYTES, memoryBytes) / PAGE_BYTES) * PAGE_BYTES;
  if (!(limit >= 4 * PAGE_BYTES)) throw new LlamaError(`a kernel memory must hold at least 256 KiB, not ${memoryBytes} bytes`);
  const memories: KernelMemory[] = [];
  const ropeTables: RopeTable[] = [];
  const gemmScratch: number[] = [];
  let gemmScratchBytes = 0; // the module's (gemmScratchBytes(), the same in every instance)
  // the block attention's scores (assembly/kernels.ts attentionBlockHeads), per memory, made for the
  // longest context seen
  const scores: Array<{ at: number; bytes: number }> = [];
  // matmulMany's vectors regrouped for matmulRowsMulti, per memory, made for the most seen
  const interleaved: Array<{ at: number; bytes: number }> = [];
  const listeners: Array<(memory: KernelMemory) => void> = [];

  function addMemory(): KernelMemory {
    const index = memories.length;
    const memory = createKernelMemory(index === 0 ? Math.min(initialBytes, limit) : PAGE_BYTES, limit);
    const k = instantiateKernels(module, memory);
    const heap = new KernelMemory(memory, k.heapBase(), index, limit);
    heap.exports = k;
    memories.push(heap);
    ropeTables.push(new RopeTable(heap));
    gemmScratchBytes = k.gemmScratchBytes();
    gemmScratch.push(heap.reserve(gemmScratchBytes));
    scores.push({ at: 0, bytes: 0 });
    interleaved.push({ at: 0, bytes: 0 });
    for (const listener of listeners) listener(heap);
    return heap;
  }
  const heap = addMemory();
  const k = heap.exports!;

  /** Memory `index`, created (with those before it) if it does not exist yet. */
  function memoryAt(index: number): KernelMemory {
    if (!(Number.isInteger(index) && index >= 0 && index < 1024)) throw new RangeError(`no kernel memory ${index}`);
    while (memories.length <= index) addMemory();
    return memories[index]!;
  }

  /** The address of memory m's buffer in `buffers`, made again (larger) when it holds fewer than `bytes`. */
  function grown(buffers: Array<{ at: number; bytes: number }>, m: KernelMemory, bytes: number): number {
    const buf = buffers[m.index]!;
    if (bytes > buf.bytes) {
      buf.at = m.reserve(bytes);
      buf.bytes = bytes;
    }
    return buf.at;
  }

  function scoresFor(m: KernelMemory, seqLen: number): number {
    return grown(scores, m, m.exports!.attentionScoresBytes(seqLen));
  }

  function interleaveSessions(m: KernelMemory, x: number, n: number, count: number): number {
    const at = grown(interleaved, m, m.exports!.interleavedBytes(n, count));
    m.exports!.interleaveSessions(at, x, n, count);
    return at;
  }

  /** Kernels.matmulManyGroup (and matmulMany: a group of one, in `oneProduct`). */
  const one: { xout: Float32Array; w: Float32Array; d: number } = { xout: new Float32Array(0), w: new Float32Array(0), d: 0 };
  const oneProduct: readonly GroupedProduct[] = [one];
  function matmulManyGroup(x: Float32Array, n: number, count: number, products: readonly GroupedProduct[]): void {
    const m = route(x);
    const e = m.exports!;
    const xAt = m.address(x);
    let xI = -1; // x regrouped for matmulRowsMulti, made once for all the products
    for (let i = 0; i < products.length; i++) {
      const { xout, w, d } = products[i]!;
      if (!(w instanceof Float32Array)) throw new LlamaError('matmulManyGroup takes float32 weights');
      checkMatmulMany(xout, x, w, n, d, count);
      const outAt = m.address(xout), wAt = m.address(w);
      if (n * d < SMALL_MATRIX) { // matmul's small-matrix kernel, one vector at a time (its bits)
        for (let v = 0; v < count; v++) e.matmul(outAt + v * d * 4, xAt + v * n * 4, wAt, n, d);
      } else {
        if (xI < 0) xI = interleaveSessions(m, xAt, n, count);
        e.matmulRowsMulti(outAt, xAt, xI, wAt, n, d, count, 0, d);
      }
    }
  }

  function route(view: ArrayBufferView): KernelMemory {
    const m = KernelMemory.of(view);
    if (m === undefined || memories[m.index] !== m) {
      throw new LlamaError('kernel argument is not in the kernels\' memory (allocate it with kernels.allocate)');
    }
    return m;
  }

  return {
    name: 'wasm',
    threads: 1,
    module, heap, exports: k, memories, route,
    memoryBytes: limit,
    onMemoryAdded: (listener) => { listeners.push(listener); },
    gemmScratch: (m) => gemmScratch[m.index]!,
    interleaveSessions,
    memoryOf: (view) => route(view).index,
    // a memory not made yet: what it will have once the module's data and its packing buffer are in
    memoryAvailable: (index) => (index < memories.length ? memories[index]!.available
      : limit - alignUp(k.heapBase(), ALIGN) - alignUp(gemmScratchBytes, ALIGN)),
    close: async () => {},
    allocate: (floats, memory = 0) => memoryAt(memory).floats(floats),
    allocateInt8: (count, memory = 0) => memoryAt(memory).int8(count),

    // every kernel runs in the instance of the memory its first argument lives in (m); the other
    // arguments are checked to live there too (m.address)
    matmul(xout, x, w, n, d) {
      checkMatmul(xout, x, w, n, d);
      const m = route(xout);
      m.exports!.matmul(m.address(xout), m.address(x), m.address(w), n, d);
    },
    matmulMany(xout, x, w, n, d, count) {
      one.xout = xout; one.w = w; one.d = d;
      matmulManyGroup(x, n, count, oneProduct);
    },
    matmulManyGroup,
    rmsnorm(o, x, weight, size, eps = 1e-5) {
      need(o, size, 'rmsnorm o'); need(x, size, 'rmsnorm x'); need(weight, size, 'rmsnorm weight');
      const m = route(o);
      m.exports!.rmsnorm(m.address(o), m.address(x), m.address(weight), size, eps);
    },
    rmsnormRows(o, x, weight, rows, size, eps = 1e-5) {
      need(o, rows * size, 'rmsnormRows o'); need(x, rows * size, 'rmsnormRows x'); need(weight, size, 'rmsnormRows weight');
      const m = route(o);
      m.exports!.rmsnormRows(m.address(o), m.address(x), m.address(weight), rows, size, eps);
    },
    ropeRows(q, kk, pos, rows, dim, kvDim, headSize, theta = 10000) {
      need(q, rows * dim, 'ropeRows q'); need(kk, rows * kvDim, 'ropeRows k');
      const m = route(q);
      if (rows < 1) return;
      if (headSize > ROPE_TABLE_FLOATS || headSize % 2 !== 0) {
        for (let r = 0; r < rows; r++) m.exports!.rope(m.address(q) + r * dim * 4, m.address(kk) + r * kvDim * 4, pos + r, dim, kvDim, headSize, theta);
        return;
      }
      const table = ropeTables[m.index]!;
      table.at(pos + rows - 1, headSize, theta); // the table grown to the last position first: its rows stay put after
      m.exports!.ropeTableRows(m.address(q), m.address(kk), table.at(pos, headSize, theta), rows, dim, kvDim, headSize);
    },
    softmax(x, size) {
      need(x, size, 'softmax x');
      const m = route(x);
      if (size > 0) m.exports!.softmax(m.address(x), size);
    },
    rope(q, kk, pos, dim, kvDim, headSize, theta = 10000) {
      need(q, dim, 'rope q'); need(kk, kvDim, 'rope k');
      const m = route(q);
      if (headSize > ROPE_TABLE_FLOATS || headSize % 2 !== 0) m.exports!.rope(m.address(q), m.address(kk), pos, dim, kvDim, headSize, theta);
      else m.exports!.ropeTable(m.address(q), m.address(kk), ropeTables[m.index]!.at(pos, headSize, theta), dim, kvDim, headSize);
    },
    attention(out, q, keyCache, valueCache, att, pos, s: AttentionShape) {
      checkAttention(out, q, keyCache, valueCache, att, pos, s);
      const m = route(out);
      m.exports!.attentionHeads(m.address(out), m.address(q), m.address(keyCache), m.address(valueCache), m.address(att), pos,
        s.nHeads, s.nKvHeads, s.headSize, s.kvDim, s.seqLen, 0, s.nHeads);
    },
    attentionBlock(out, q, keyCache, valueCache, att, pos, count, s: AttentionShape, exact = false) {
      checkAttentionBlock(out, q, keyCache, valueCache, att, pos, count, s);
      const m = route(out);
      const e = m.exports!, at = (v: ArrayBufferView): number => m.address(v);
      if (exact) {
        e.attentionRowsHeads(at(out), at(q), at(keyCache), at(valueCache), at(att), pos, count, s.nHeads, s.nKvHeads, s.headSize, s.kvDim, s.seqLen, 0, s.nHeads);
        return;
      }
      e.attentionBlockHeads(at(out), at(q), at(keyCache), at(valueCache), scoresFor(m, s.seqLen), pos, count,
        s.nHeads, s.nKvHeads, s.headSize, s.kvDim, 0, s.nHeads, gemmScratch[m.index]!);
    },
    crossEntropy(logits, n, target) {
      need(logits, n, 'crossEntropy logits');
      if (!(Number.isInteger(target) && target >= 0 && target < n)) throw new RangeError(`crossEntropy: target ${target} outside 0..${n - 1}`);
      const m = route(logits);
      return m.exports!.crossEntropy(m.address(logits), n, target);
    },
    swiglu(hb, hb2, size) {
      need(hb, size, 'swiglu hb'); need(hb2, size, 'swiglu hb2');
      const m = route(hb);
      m.exports!.swiglu(m.address(hb), m.address(hb2), size);
    },
    add(x, y, size) {
      need(x, size, 'add x'); need(y, size, 'add y');
      const m = route(x);
      m.exports!.add(m.address(x), m.address(y), size);
    },

    quantize(xq, xs, x, n, groupSize) {
      checkQuantize(xq, xs, x, n, groupSize);
      const m = route(xq);
      m.exports!.quantize(m.address(xq), m.address(xs), m.address(x), n, groupSize);
    },
    matmulQ8(xout, xq, xs, wq, ws, n, d, groupSize, streamed = false) {
      checkMatmulQ8(xout, xq, xs, wq, ws, n, d, groupSize);
      const m = route(xout);
      m.exports!.matmulQ8Rows(m.address(xout), m.address(xq), m.address(xs), m.address(wq), m.address(ws), n, streamed ? 1 : 0, groupSize, 0, d);
    },

    matmulQ8Forward(out, xq, xs, wq, ws, M, n, d, groupSize) {
      checkMatmulQ8Forward(out, xq, xs, wq, ws, M, n, d, groupSize);
      const m = route(out);
      const e = m.exports!, at = (v: ArrayBufferView): number => m.address(v);
      if (gemmQ8Fits(n, groupSize)) {
        e.gemmQ8(at(out), d * 4, at(xq), at(xs), at(wq), at(ws), n, groupSize, 0, M, 0, d, gemmScratch[m.index]!, gemmScratchBytes);
      } else {
        const xsRow = Math.ceil(n / groupSize);
        for (let r = 0; r < M; r++) e.matmulQ8Rows(at(out) + r * d * 4, at(xq) + r * n, at(xs) + r * xsRow * 4, at(wq), at(ws), n, 0, groupSize, 0, d);
      }
    },

    fuseForward(model) {
      let m: KernelMemory;
      try {
        m = route(model.state.x);
      } catch {
        return undefined;
      }
      const plan = forwardPlan(m, model);
      const e = m.exports!;
      return plan === undefined ? undefined : (token, pos, logits) => e.forward(plan, token, pos, logits ? 1 : 0);
    },

    matmulForward(out, inp, w, BT, C, OC) {
      checkMatmulForward(out, inp, w, BT, C, OC);
      const m = route(out);
      // out (BT, OC) = inp (BT, C) · B, B (C, OC) given by its transpose w (OC, C)
      m.exports!.gemm(m.address(out), OC * 4, m.address(inp), C * 4, 4, m.address(w), C * 4, 0, C, 0, 0, BT, 0, OC, gemmScratch[m.index]!);
    },
    matmulBackward(dinp, dw, dout, inp, w, BT, C, OC) {
      checkMatmulBackward(dinp, dw, dout, inp, w, BT, C, OC);
      const m = route(dinp);
      const e = m.exports!, at = (v: ArrayBufferView): number => m.address(v), scratch = gemmScratch[m.index]!;
      // dinp (BT, C) += dout (BT, OC) · w (OC, C);  dw (OC, C) += doutᵀ (OC, BT) · inp (BT, C)
      e.gemm(at(dinp), C * 4, at(dout), OC * 4, 4, at(w), C * 4, 1, OC, 1, 0, BT, 0, C, scratch);
      e.gemm(at(dw), C * 4, at(dout), 4, OC * 4, at(inp), C * 4, 1, BT, 1, 0, OC, 0, C, scratch);
    },
  };
}

// The plan of assembly/forward.ts: int32 fields (the layout there), made once per model.
const PLAN = {
  DIM: 0, HIDDEN: 1, LAYERS: 2, HEADS: 3, KV_HEADS: 4, HEAD_SIZE: 5, KV_DIM: 6, SEQ_LEN: 7, VOCAB: 8, GROUP: 9,
  X: 10, XB: 11, XB2: 12, HB: 13, HB2: 14, Q: 15, ATT: 16, LOGITS: 17, XQ: 18, XS: 19, ROPE: 20,
  EMB: 21, EMB_S: 22, RMS_FINAL: 23, WCLS: 24, WCLS_S: 25, STREAMED: 26, NORM_EPS: 28, // (a float64: fields 28, 29)
  LAYER0: 32, LAYER_FIELDS: 18,
  // within a layer
  RMS_ATT: 0, WQ: 1, WK: 3, WV: 5, WO: 7, RMS_FFN: 9, W1: 10, W2: 12, W3: 14, KEY_CACHE: 16, VALUE_CACHE: 17,
} as const;

/**
 * Lays out the plan for assembly/forward.ts in the kernels' memory, with a RoPE table of (cos, sin)
 * for every position (computed as the rope kernel computes it). Returns its address, or undefined
 * when this model can't run fused (a head size the rope kernel does not tabulate, or buffers outside
 * this memory: then the kernel-by-kernel path reports the problem). Without a token embedding the
 * plan starts from x as it is; without rmsFinal and wcls it ends after its last layer (a range of
 * layers of a model spread over several memories).
 */
export function forwardPlan(heap: KernelMemory, m: ForwardModel): number | undefined {
  const { shape, dim, hiddenDim: hidden, vocabSize: vocab, groupSize: gs, state: s } = m;
  const { headSize, kvDim, seqLen, nHeads, nKvHeads } = shape;
  const nLayers = m.layers.length;
  const head = m.rmsFinal !== undefined && m.wcls !== undefined && s.logits !== undefined;
  if (headSize % 2 !== 0 || headSize > ROPE_TABLE_FLOATS || nHeads % nKvHeads !== 0 || !(gs === 0 || (s.xq !== undefined && s.xs !== undefined))) return undefined;
  const fields = new Int32Array(PLAN.LAYER0 + nLayers * PLAN.LAYER_FIELDS);
  try {
    const at = (view: ArrayBufferView, count: number): number => {
      need(view as ArrayBufferView & { length: number }, count, 'forward');
      return heap.address(view);
    };
    const matrix = (w: WeightMatrix, n: number, d: number): [number, number] => {
      if (w instanceof Float32Array) return gs === 0 ? [at(w, n * d), 0] : [-1, -1];
      return gs === 0 ? [-1, -1] : [at(w.q, n * d), at(w.s, Math.ceil((n * d) / gs))];
    };
    const set = (base: number, field: number, value: number | [number, number]): void => {
      if (typeof value === 'number') {
        fields[base + field] = value;
      } else {
        if (value[0] < 0) throw new RangeError('forward: float32 and Q8_0 matrices mixed');
        fields[base + field] = value[0];
        fields[base + field + 1] = value[1];
      }
    };
    // (address 0 — never an allocation: the module's data comes first — means "not in this plan")
    const header: Array<[number, number | [number, number]]> = [
      [PLAN.DIM, dim], [PLAN.HIDDEN, hidden], [PLAN.LAYERS, nLayers], [PLAN.HEADS, nHeads], [PLAN.KV_HEADS, nKvHeads],
      [PLAN.HEAD_SIZE, headSize], [PLAN.KV_DIM, kvDim], [PLAN.SEQ_LEN, seqLen], [PLAN.VOCAB, vocab], [PLAN.GROUP, gs],
      [PLAN.X, at(s.x, dim)], [PLAN.XB, at(s.xb, dim)], [PLAN.XB2, at(s.xb2, dim)], [PLAN.HB, at(s.hb, hidden)],
      [PLAN.HB2, at(s.hb2, hidden)], [PLAN.Q, at(s.q, dim)], [PLAN.ATT, at(s.att, nHeads * seqLen)],
      [PLAN.LOGITS, head ? at(s.logits!, vocab) : 0],
      [PLAN.XQ, gs === 0 ? 0 : at(s.xq!, Math.max(dim, hidden))], [PLAN.XS, gs === 0 ? 0 : at(s.xs!, Math.ceil(Math.max(dim, hidden) / gs))],
      [PLAN.EMB, m.tokenEmbedding === undefined ? [0, 0] : matrix(m.tokenEmbedding, dim, vocab)],
      [PLAN.RMS_FINAL, head ? at(m.rmsFinal!, dim) : 0], [PLAN.WCLS, head ? matrix(m.wcls!, dim, vocab) : [0, 0]],
      [PLAN.STREAMED, m.streamWeights === true ? 1 : 0],
    ];
    for (const [field, value] of header) set(0, field, value);
    m.layers.forEach((L, l) => {
      const b = PLAN.LAYER0 + l * PLAN.LAYER_FIELDS;
      set(b, PLAN.RMS_ATT, at(L.rmsAtt, dim)); set(b, PLAN.RMS_FFN, at(L.rmsFfn, dim));
      set(b, PLAN.WQ, matrix(L.wq, dim, dim)); set(b, PLAN.WK, matrix(L.wk, dim, kvDim)); set(b, PLAN.WV, matrix(L.wv, dim, kvDim));
      set(b, PLAN.WO, matrix(L.wo, dim, dim)); set(b, PLAN.W1, matrix(L.w1, dim, hidden)); set(b, PLAN.W2, matrix(L.w2, hidden, dim));
      set(b, PLAN.W3, matrix(L.w3, dim, hidden));
      set(b, PLAN.KEY_CACHE, at(L.keyCache, seqLen * kvDim)); set(b, PLAN.VALUE_CACHE, at(L.valueCache, seqLen * kvDim));
    });
  } catch {
    return undefined;
  }
  new Float64Array(fields.buffer, PLAN.NORM_EPS * 4, 1)[0] = m.normEps;
  // RoPE: (cos, sin) of pos · θ^(−i/headSize) for each pair offset i, for every position
  const rope = heap.floats(seqLen * headSize);
  for (let pos = 0; pos < seqLen; pos++) {
    for (let i = 0; i < headSize; i += 2) {
      const angle = pos * (1 / Math.pow(m.ropeTheta, i / headSize));
      rope[pos * headSize + i] = Math.cos(angle);
      rope[pos * headSize + i + 1] = Math.sin(angle);
    }
  }
  fields[PLAN.ROPE] = rope.byteOffset;
  const plan = heap.int32(fields.length);
  plan.set(fields);
  return plan.byteOffset;
}

// Size checks shared with threads.ts: the WebAssembly side reads whatever the addresses point at.

export function checkAttention(
  out: Float32Array, q: Float32Array, keyCache: Float32Array, valueCache: Float32Array, att: Float32Array,
  pos: number, s: AttentionShape,
): void {
  if (!(pos >= 0 && pos < s.seqLen)) throw new RangeError(`attention: position ${pos} outside 0..${s.seqLen - 1}`);
  if (s.nHeads % s.nKvHeads !== 0) throw new RangeError('attention: nHeads must be a multiple of nKvHeads');
  need(out, s.nHeads * s.headSize, 'attention out'); need(q, s.nHeads * s.headSize, 'attention q');
  need(keyCache, s.seqLen * s.kvDim, 'attention keyCache'); need(valueCache, s.seqLen * s.kvDim, 'attention valueCache');
  need(att, s.nHeads * s.seqLen, 'attention att');
}

export function checkAttentionBlock(
  out: Float32Array, q: Float32Array, keyCache: Float32Array, valueCache: Float32Array, att: Float32Array,
  pos: number, count: number, s: AttentionShape,
): void {
  if (!(Number.isInteger(count) && count >= 1)) throw new RangeError(`attention: a block of ${count} positions`);
  checkAttention(out, q, keyCache, valueCache, att, pos, s);
  checkAttention(out, q, keyCache, valueCache, att, pos + count - 1, s);
  need(out, count * s.nHeads * s.headSize, 'attention out'); need(q, count * s.nHeads * s.headSize, 'attention q');
}

/** Below this many elements matmul uses its small-matrix kernel (SMALL_MATRIX in assembly/kernels.ts). */
export const SMALL_MATRIX = 1 << 15;

export function checkMatmulMany(xout: Float32Array, x: Float32Array, w: Float32Array, n: number, d: number, count: number): void {
  need(x, count * n, 'matmulMany x'); need(w, n * d, 'matmulMany w'); need(xout, count * d, 'matmulMany xout');
}

export function checkMatmul(xout: Float32Array, x: Float32Array, w: Float32Array, n: number, d: number): void {
  need(x, n, 'matmul x'); need(w, n * d, 'matmul w'); need(xout, d, 'matmul xout');
}

export function checkQuantize(xq: Int8Array, xs: Float32Array, x: Float32Array, n: number, groupSize: number): void {
  if (!(groupSize > 0)) throw new RangeError('quantize: group size must be positive');
  need(xq, n, 'quantize xq'); need(xs, Math.ceil(n / groupSize), 'quantize xs'); need(x, n, 'quantize x');
}

/** Whether assembly/gemm-q8.ts takes rows of n values in groups of gs (else one row at a time). */
export function gemmQ8Fits(n: number, gs: number): boolean {
  return n % gs === 0 && gs % 8 === 0;
}

export function checkMatmulQ8Forward(
  out: Float32Array, xq: Int8Array, xs: Float32Array, wq: Int8Array, ws: Float32Array, M: number, n: number, d: number, groupSize: number,
): void {
  if (!(groupSize > 0)) throw new RangeError('matmulQ8Forward: group size must be positive');
  need(out, M * d, 'matmulQ8Forward out'); need(xq, M * n, 'matmulQ8Forward xq'); need(xs, M * Math.ceil(n / groupSize), 'matmulQ8Forward xs');
  need(wq, n * d, 'matmulQ8Forward wq'); need(ws, Math.ceil((n * d) / groupSize), 'matmulQ8Forward ws');
}

export function checkMatmulQ8(
  xout: Float32Array, xq: Int8Array, xs: Float32Array, wq: Int8Array, ws: Float32Array, n: number, d: number, groupSize: number,
): void {
  if (!(groupSize > 0)) throw new RangeError('matmulQ8: group size must be positive');
  need(xout, d, 'matmulQ8 xout'); need(xq, n, 'matmulQ8 xq'); need(xs, Math.ceil(n / groupSize), 'matmulQ8 xs');
  need(wq, n * d, 'matmulQ8 wq'); need(ws, Math.ceil((n * d) / groupSize), 'matmulQ8 ws');
}

export function checkMatmulForward(out: Float32Array, inp: Float32Array, w: Float32Array, BT: number, C: number, OC: number): void {
  need(out, BT * OC, 'matmulForward out'); need(inp, BT * C, 'matmulForward inp'); need(w, OC * C, 'matmulForward w');
}

export function checkMatmulBackward(
  dinp: Float32Array, dw: Float32Array, dout: Float32Array, inp: Float32Array, w: Float32Array, BT: number, C: number, OC: number,
): void {
  need(dinp, BT * C, 'matmulBackward dinp'); need(dw, OC * C, 'matmulBackward dw'); need(dout, BT * OC, 'matmulBackward dout');
  need(inp, BT * C, 'matmulBackward inp'); need(w, OC * C, 'matmulBackward w');
}
