// The WebAssembly SIMD kernels (compiled from assembly/kernels.ts into kernels.wasm next to this
// file) behind the KernelSet interface, single-threaded. threads.ts adds worker threads on top.
//
// Memory. All tensors live in ONE shared WebAssembly.Memory, handed out by a bump allocator
// (`KernelMemory`): allocate(n) returns a Float32Array view of n floats at a 64-byte aligned byte
// offset, and kernels receive `view.byteOffset` as the address. Nothing is ever freed: allocate
// everything (weights, activations, caches) once, up front. The memory grows, when needed, at
// allocation time only. Because it is shared, growing never detaches earlier views (a
// SharedArrayBuffer cannot be detached): views made before a grow stay valid and keep pointing at
// the same bytes; `memory.buffer` just returns a new, longer SharedArrayBuffer afterwards. So a view
// is made once and reused for every token.
//
// This module is platform-neutral (Node.js and browsers): createWasmKernelsFromModule takes a
// compiled WebAssembly.Module; createWasmKernels also accepts the .wasm bytes, and loads them from
// next to this file (fs in Node.js, fetch elsewhere) when given nothing.

import { LlamaError, OutOfMemoryError } from '../errors.js';
import type { KernelSet } from './kernel-set.js';
import type { AttentionShape, ForwardModel, WeightMatrix } from './types.js';

/** The functions assembly/kernels.ts exports; every address is a byte offset into the memory. */
export interface KernelExports {
  matmul(xout: number, x: number, w: number, n: number, d: number): void;
  matmulRows(xout: number, x: number, w: number, n: number, r0: number, r1: number): void;
  matmulRowsMulti(xout: number, x: number, w: number, n: number, d: number, count: number, r0: number, r1: number): void;
  rmsnorm(o: number, x: number, weight: number, size: number, eps: number): void;
  softmax(x: number, size: number): void;
  rope(q: number, k: number, pos: number, dim: number, kvDim: number, headSize: number, theta: number): void;
  ropeTable(q: number, k: number, table: number, dim: number, kvDim: number, headSize: number): void;
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
    m0: number, m1: number, r0: number, r1: number,
  ): void;
  heapBase(): number;
  forward(plan: number, token: number, pos: number, logits: number): void;
  sample(x: number, n: number, temperature: number, topp: number, coin: number, scratch: number): number;
  sampleScratchBytes(n: number): number;
}

const PAGE_BYTES = 65536;
/** The module declares a shared memory of at most 65536 pages (4 GiB, all of wasm32). */
export const MAX_PAGES = 65536;
const ALIGN = 64;
/** Largest head size whose RoPE rotations are cached per position (cos and sin per pair). */
const ROPE_TABLE_FLOATS = 1024;

/** Instantiates the kernels on a shared memory (each worker thread does this with the same memory). */
export function instantiateKernels(module: WebAssembly.Module, memory: WebAssembly.Memory): KernelExports {
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  return instance.exports as unknown as KernelExports;
}

/** Creates the shared memory the kernels import. */
export function createKernelMemory(initialBytes: number): WebAssembly.Memory {
  const initial = Math.max(1, Math.ceil(initialBytes / PAGE_BYTES));
  if (initial > MAX_PAGES) throw new OutOfMemoryError(`cannot reserve ${initialBytes} bytes: WebAssembly memory is limited to 4 GiB`);
  return new WebAssembly.Memory({ initial, maximum: MAX_PAGES, shared: true });
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

  constructor(readonly memory: WebAssembly.Memory, heapBase: number) {
    this.next = alignUp(heapBase, ALIGN);
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
      try {
        this.memory.grow(pages);
      } catch {
        throw new OutOfMemoryError(`out of WebAssembly memory: cannot grow to ${end} bytes (the limit is 4 GiB)`);
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
    if (owners.get(view.buffer) !== this) {
      throw new LlamaError('kernel argument is not in the kernels\' memory (allocate it with kernels.allocate)');
    }
    return view.byteOffset;
  }
}

function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** Throws unless `view` holds at least `count` elements (the WebAssembly side cannot check). */
function need(view: ArrayBufferView & { length: number }, count: number, what: string): void {
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

/** The compiled kernels.wasm, read once from next to this file. */
let cachedModule: Promise<WebAssembly.Module> | undefined;
/** The same module once compiled (or the first one given to createWasmKernelsFromModule). */
let compiledModule: WebAssembly.Module | undefined;

/**
 * The kernels module if this process has already compiled it (wasm kernels were created), else
 * undefined: for code that must decide synchronously, like the sampler.
 */
export function kernelModuleIfLoaded(): WebAssembly.Module | undefined {
  return compiledModule;
}

export function loadKernelModule(): Promise<WebAssembly.Module> {
  cachedModule ??= (async () => {
    const url = new URL('./kernels.wasm', import.meta.url);
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
    return module;
  })();
  return cachedModule;
}

export interface WasmKernelOptions {
  /** kernels.wasm as bytes or compiled; default: loaded from next to this module. */
  module?: WebAssembly.Module | ArrayBufferView | ArrayBuffer;
  /** Bytes of memory to reserve up front (default 16 MiB); it grows on demand at allocation time. */
  initialBytes?: number;
}

/** The single-threaded WebAssembly kernels, plus what threads.ts needs to share them. */
export interface WasmKernelSet extends KernelSet {
  readonly module: WebAssembly.Module;
  readonly heap: KernelMemory;
  readonly exports: KernelExports;
}

export async function createWasmKernels(options: WasmKernelOptions = {}): Promise<WasmKernelSet> {
  if (!wasmSupported()) throw new LlamaError('this JavaScript engine lacks WebAssembly SIMD or shared memory: use --kernels js');
  const given = options.module;
  const module = given === undefined ? await loadKernelModule()
    : given instanceof WebAssembly.Module ? given : await WebAssembly.compile(given);
  return createWasmKernelsFromModule(module, options.initialBytes);
}

export function createWasmKernelsFromModule(module: WebAssembly.Module, initialBytes = 16 << 20): WasmKernelSet {
  compiledModule ??= module;
  const memory = createKernelMemory(initialBytes);
  const k = instantiateKernels(module, memory);
  const heap = new KernelMemory(memory, k.heapBase());
  heap.exports = k;
  const at = (view: ArrayBufferView): number => heap.address(view);

  // the matrix × matrix product's packing buffer (assembly/gemm.ts)
  const gemmScratch = heap.reserve(k.gemmScratchBytes());

  // the block attention's scores (assembly/kernels.ts attentionBlockHeads), made for the longest
  // context seen
  let scores = 0, scoresBytes = 0;
  function scoresFor(seqLen: number): number {
    const bytes = k.attentionScoresBytes(seqLen);
    if (bytes > scoresBytes) {
      scores = heap.reserve(bytes);
      scoresBytes = bytes;
    }
    return scores;
  }

  // RoPE's cos/sin depend only on (pos, offset in the head, θ): computed once per position (in
  // float64, as the reference does) into a table of the positions seen so far, reused by every
  // layer and every later token (a prompt's block visits each position once per layer). The table
  // grows by doubling; a change of head size or θ starts a new one.
  let ropeCosSin: Float32Array = new Float32Array(0);
  let ropeRows = 0, ropeHeadSize = -1, ropeBase = -1;
  function ropeTableFor(pos: number, headSize: number, theta: number): number {
    if (headSize !== ropeHeadSize || theta !== ropeBase) {
      ropeRows = 0;
      ropeHeadSize = headSize;
      ropeBase = theta;
    }
    if (pos >= ropeRows) {
      const rows = Math.max(pos + 1, 2 * ropeRows, 64);
      if (rows * headSize > ropeCosSin.length) {
        const grown = heap.floats(rows * headSize);
        grown.set(ropeCosSin.subarray(0, ropeRows * headSize));
        ropeCosSin = grown;
      }
      for (let p = ropeRows; p < rows; p++) {
        for (let i = 0; i < headSize; i += 2) {
          const angle = p * (1 / Math.pow(theta, i / headSize));
          ropeCosSin[p * headSize + i] = Math.cos(angle);
          ropeCosSin[p * headSize + i + 1] = Math.sin(angle);
        }
      }
      ropeRows = rows;
    }
    return ropeCosSin.byteOffset + pos * headSize * 4;
  }

  return {
    name: 'wasm',
    threads: 1,
    module, heap, exports: k,
    close: async () => {},
    allocate: (floats) => heap.floats(floats),
    allocateInt8: (count) => heap.int8(count),

    matmul(xout, x, w, n, d) {
      checkMatmul(xout, x, w, n, d);
      k.matmul(at(xout), at(x), at(w), n, d);
    },
    matmulMany(xout, x, w, n, d, count) {
      checkMatmulMany(xout, x, w, n, d, count);
      if (n * d < SMALL_MATRIX) { // matmul's small-matrix kernel, one vector at a time (its bits)
        for (let v = 0; v < count; v++) k.matmul(at(xout) + v * d * 4, at(x) + v * n * 4, at(w), n, d);
      } else {
        k.matmulRowsMulti(at(xout), at(x), at(w), n, d, count, 0, d);
      }
    },
    rmsnorm(o, x, weight, size, eps = 1e-5) {
      need(o, size, 'rmsnorm o'); need(x, size, 'rmsnorm x'); need(weight, size, 'rmsnorm weight');
      k.rmsnorm(at(o), at(x), at(weight), size, eps);
    },
    softmax(x, size) {
      need(x, size, 'softmax x');
      if (size > 0) k.softmax(at(x), size);
    },
    rope(q, kk, pos, dim, kvDim, headSize, theta = 10000) {
      need(q, dim, 'rope q'); need(kk, kvDim, 'rope k');
      if (headSize > ROPE_TABLE_FLOATS || headSize % 2 !== 0) k.rope(at(q), at(kk), pos, dim, kvDim, headSize, theta);
      else k.ropeTable(at(q), at(kk), ropeTableFor(pos, headSize, theta), dim, kvDim, headSize);
    },
    attention(out, q, keyCache, valueCache, att, pos, s: AttentionShape) {
      checkAttention(out, q, keyCache, valueCache, att, pos, s);
      k.attentionHeads(at(out), at(q), at(keyCache), at(valueCache), at(att), pos,
        s.nHeads, s.nKvHeads, s.headSize, s.kvDim, s.seqLen, 0, s.nHeads);
    },
    attentionBlock(out, q, keyCache, valueCache, att, pos, count, s: AttentionShape, exact = false) {
      checkAttentionBlock(out, q, keyCache, valueCache, att, pos, count, s);
      if (exact) {
        k.attentionRowsHeads(at(out), at(q), at(keyCache), at(valueCache), at(att), pos, count, s.nHeads, s.nKvHeads, s.headSize, s.kvDim, s.seqLen, 0, s.nHeads);
        return;
      }
      k.attentionBlockHeads(at(out), at(q), at(keyCache), at(valueCache), scoresFor(s.seqLen), pos, count,
        s.nHeads, s.nKvHeads, s.headSize, s.kvDim, 0, s.nHeads, gemmScratch);
    },
    crossEntropy(logits, n, target) {
      need(logits, n, 'crossEntropy logits');
      if (!(Number.isInteger(target) && target >= 0 && target < n)) throw new RangeError(`crossEntropy: target ${target} outside 0..${n - 1}`);
      return k.crossEntropy(at(logits), n, target);
    },
    swiglu(hb, hb2, size) {
      need(hb, size, 'swiglu hb'); need(hb2, size, 'swiglu hb2');
      k.swiglu(at(hb), at(hb2), size);
    },
    add(x, y, size) {
      need(x, size, 'add x'); need(y, size, 'add y');
      k.add(at(x), at(y), size);
    },

    quantize(xq, xs, x, n, groupSize) {
      checkQuantize(xq, xs, x, n, groupSize);
      k.quantize(at(xq), at(xs), at(x), n, groupSize);
    },
    matmulQ8(xout, xq, xs, wq, ws, n, d, groupSize, streamed = false) {
      checkMatmulQ8(xout, xq, xs, wq, ws, n, d, groupSize);
      k.matmulQ8Rows(at(xout), at(xq), at(xs), at(wq), at(ws), n, streamed ? 1 : 0, groupSize, 0, d);
    },
    matmulQ8Forward(out, xq, xs, wq, ws, M, n, d, groupSize) {
      checkMatmulQ8Forward(out, xq, xs, wq, ws, M, n, d, groupSize);
      if (gemmQ8Fits(n, groupSize)) {
        k.gemmQ8(at(out), d * 4, at(xq), at(xs), at(wq), at(ws), n, groupSize, 0, M, 0, d);
      } else {
        const xsRow = Math.ceil(n / groupSize);
        for (let m = 0; m < M; m++) k.matmulQ8Rows(at(out) + m * d * 4, at(xq) + m * n, at(xs) + m * xsRow * 4, at(wq), at(ws), n, 0, groupSize, 0, d);
      }
    },

    fuseForward(model) {
      const plan = forwardPlan(heap, model);
      return plan === undefined ? undefined : (token, pos, logits) => k.forward(plan, token, pos, logits ? 1 : 0);
    },

    matmulForward(out, inp, w, BT, C, OC) {
      checkMatmulForward(out, inp, w, BT, C, OC);
      // out (BT, OC) = inp (BT, C) · B, B (C, OC) given by its transpose w (OC, C)
      k.gemm(at(out), OC * 4, at(inp), C * 4, 4, at(w), C * 4, 0, C, 0, 0, BT, 0, OC, gemmScratch);
    },
    matmulBackward(dinp, dw, dout, inp, w, BT, C, OC) {
      checkMatmulBackward(dinp, dw, dout, inp, w, BT, C, OC);
      // dinp (BT, C) += dout (BT, OC) · w (OC, C);  dw (OC, C) += doutᵀ (OC, BT) · inp (BT, C)
      k.gemm(at(dinp), C * 4, at(dout), OC * 4, 4, at(w), C * 4, 1, OC, 1, 0, BT, 0, C, gemmScratch);
      k.gemm(at(dw), C * 4, at(dout), 4, OC * 4, at(inp), C * 4, 1, BT, 1, 0, OC, 0, C, gemmScratch);
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
 * when this model can't run fused (a head size the rope kernel does not tabulate, or buffers outside the kernels' memory: then
 * the kernel-by-kernel path reports the problem).
 */
export function forwardPlan(heap: KernelMemory, m: ForwardModel): number | undefined {
  const { shape, dim, hiddenDim: hidden, vocabSize: vocab, groupSize: gs, state: s } = m;
  const { headSize, kvDim, seqLen, nHeads, nKvHeads } = shape;
  const nLayers = m.layers.length;
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
    const header: Array<[number, number | [number, number]]> = [
      [PLAN.DIM, dim], [PLAN.HIDDEN, hidden], [PLAN.LAYERS, nLayers], [PLAN.HEADS, nHeads], [PLAN.KV_HEADS, nKvHeads],
      [PLAN.HEAD_SIZE, headSize], [PLAN.KV_DIM, kvDim], [PLAN.SEQ_LEN, seqLen], [PLAN.VOCAB, vocab], [PLAN.GROUP, gs],
      [PLAN.X, at(s.x, dim)], [PLAN.XB, at(s.xb, dim)], [PLAN.XB2, at(s.xb2, dim)], [PLAN.HB, at(s.hb, hidden)],
      [PLAN.HB2, at(s.hb2, hidden)], [PLAN.Q, at(s.q, dim)], [PLAN.ATT, at(s.att, nHeads * seqLen)],
      [PLAN.LOGITS, at(s.logits, vocab)],
      [PLAN.XQ, gs === 0 ? 0 : at(s.xq!, Math.max(dim, hidden))], [PLAN.XS, gs === 0 ? 0 : at(s.xs!, Math.ceil(Math.max(dim, hidden) / gs))],
      [PLAN.EMB, matrix(m.tokenEmbedding, dim, vocab)], [PLAN.RMS_FINAL, at(m.rmsFinal, dim)], [PLAN.WCLS, matrix(m.wcls, dim, vocab)],
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
