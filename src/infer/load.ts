// Loading a model into the kernels' memory: a ModelSource (any format, src/model/source.ts) is read
// tensor by tensor, in chunks of rows, straight into the buffers the kernels run from.
//
//   float32 (default)  every tensor is allocated in the kernels' memory and the source writes
//                      its rows there directly (converting F16/BF16/Q8_0 on the way)
//   Q8_0 (--quantize q8)
//                      a source that stores Q8_0 (llama2.c v2) hands over its int8 values and
//                      scales as they are; any other is read a chunk of rows at a time into one
//                      small reusable float32 buffer and quantized from it (export.py's
//                      quantize_q80: scale = max|w|/127 per group, q = round-half-even(w/scale);
//                      groups over the flattened per-layer matrix, group size 64 halved until it
//                      divides dim). Chunks hold whole groups, so the result is bit for bit the
//                      quantization of the whole matrix.
//
// Peak memory is the engine's weights plus one chunk (CHUNK_FLOATS) and the source's own scratch
// of the same order — never the file twice. Every value is checked to be finite as it arrives.

import { FormatError, LlamaError } from '../errors.js';
import type { Q8Weights, QuantizedTensor } from '../model/checkpoint.js';
import { q8GroupSizeFor } from '../model/checkpoint.js';
import { openModelSource } from '../model/open.js';
import { MATRIX_TENSORS, type ModelSource, NORM_TENSORS, tensorShape } from '../model/source.js';
import { type TensorName, type TransformerWeights, parameterCount, parameterTable, weightsView } from '../model/weights.js';
import { quantize } from '../kernels/q8-js.js';
import { jsKernels } from '../kernels/js.js';
import { type ModelKernels, Transformer } from './forward.js';

export interface LoadModelOptions {
  /**
   * 'q8': run with Q8_0 int8 weights — a file that stores Q8_0 as it is, any other quantized at
   * load time. 'none' (default): float32 — Q8_0 files are dequantized.
   */
  quantize?: 'none' | 'q8';
  /** Group size when quantizing (default 64, halved until it divides dim). */
  groupSize?: number;
  /** Values per read (default CHUNK_FLOATS; tests make it small to cross chunk boundaries). */
  chunkFloats?: number;
}

/** Where loaded tensors go (the kernels' memory). */
export interface WeightAllocator {
  allocate(floats: number): Float32Array;
  allocateInt8(count: number): Int8Array;
}

/** Ordinary JavaScript memory (for tools that convert rather than run: export). */
export const plainMemory: WeightAllocator = { allocate: (n) => new Float32Array(n), allocateInt8: (n) => new Int8Array(n) };

/** Values per read: 1 Mi floats (4 MiB), or one row when a row is longer. */
export const CHUNK_FLOATS = 1 << 20;

/** Rows per chunk for rows of `cols` values: as many as fit `chunk` values, a multiple of `align` rows. */
function chunkRows(chunk: number, cols: number, totalRows: number, align = 1): number {
  const rows = Math.max(align, Math.floor(chunk / cols / align) * align);
  return Math.min(rows, totalRows);
}

/** Checks that every value of a chunk just read is finite. */
function checkFinite(source: ModelSource, name: TensorName, layer: number, row: number, cols: number, values: Float32Array): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]!)) {
      const r = row + Math.floor(i / cols);
      throw new FormatError(source.path, `tensor ${name}${tensorShape(source.config, name).layers > 1 ? ` layer ${layer}` : ''} row ${r}: value ${i % cols} is not a finite number (${values[i]})`);
    }
  }
}

/** Reads `name` layer `layer` rows [0, rows) into dst (rows · cols floats), chunk by chunk. */
function readTensor(source: ModelSource, name: TensorName, layer: number, dst: Float32Array, chunk: number): void {
  const { rows, cols } = tensorShape(source.config, name);
  const step = chunkRows(chunk, cols, rows);
  for (let r = 0; r < rows; r += step) {
    const n = Math.min(step, rows - r);
    const view = dst.subarray(r * cols, (r + n) * cols);
    source.read(name, layer, r, n, view);
    checkFinite(source, name, layer, r, cols, view);
  }
}

/** The weights of `source` as float32, in memory from `alloc` (one buffer, v1 order). */
export function loadFloat32Weights(source: ModelSource, alloc: WeightAllocator, chunk = CHUNK_FLOATS): TransformerWeights {
  const c = source.config;
  const w = weightsView(c, alloc.allocate(parameterCount(c)));
  for (const t of parameterTable(c)) {
    const { layers, rows, cols } = tensorShape(c, t.name);
    const per = rows * cols;
    for (let l = 0; l < layers; l++) readTensor(source, t.name, l, w[t.name].subarray(l * per, (l + 1) * per), chunk);
  }
  return w;
}

/** The weights of `source` as Q8_0 (norms float32), in memory from `alloc`. */
export function loadQ8Weights(source: ModelSource, alloc: WeightAllocator, requestedGroupSize = 64, chunk = CHUNK_FLOATS): Q8Weights {
  const c = source.config;
  const native = source.q8GroupSize !== undefined && source.readQ8 !== undefined;
  const gs = native ? source.q8GroupSize! : q8GroupSizeFor(c, requestedGroupSize);
  const norm = (name: TensorName): Float32Array => {
    const { layers, rows, cols } = tensorShape(c, name);
    const out = alloc.allocate(layers * rows * cols);
    for (let l = 0; l < layers; l++) readTensor(source, name, l, out.subarray(l * rows * cols, (l + 1) * rows * cols), chunk);
    return out;
  };
  // the one reusable float32 buffer that matrices are quantized from
  let buffer = new Float32Array(0);
  const matrix = (name: TensorName, layer: number): QuantizedTensor => {
    const { rows, cols } = tensorShape(c, name);
    const numel = rows * cols;
    if (numel % gs !== 0) throw new FormatError(source.path, `tensor ${name} (${numel} values) is not a whole number of groups of ${gs}`);
    const q = alloc.allocateInt8(numel);
    const s = alloc.allocate(numel / gs);
    if (native) {
      const step = Math.max(gs, Math.floor(chunk / gs) * gs);
      for (let i = 0; i < numel; i += step) {
        const n = Math.min(step, numel - i);
        source.readQ8!(name, layer, i, n, q.subarray(i, i + n), s.subarray(i / gs, (i + n) / gs));
      }
      for (let g = 0; g < s.length; g++) {
        if (!Number.isFinite(s[g]!)) throw new FormatError(source.path, `tensor ${name}: scale ${g} is not a finite number`);
      }
      return { q, s };
    }
    // chunks of whole rows holding whole groups: a multiple of gs / gcd(cols, gs) rows
    const step = chunkRows(chunk, cols, rows, gs / gcd(cols, gs));
    if (buffer.length < step * cols) buffer = new Float32Array(step * cols);
    for (let r = 0; r < rows; r += step) {
      const n = Math.min(step, rows - r);
      const view = buffer.subarray(0, n * cols);
      source.read(name, layer, r, n, view);
      checkFinite(source, name, layer, r, cols, view);
      const first = r * cols;
      quantize(q.subarray(first, first + view.length), s.subarray(first / gs, (first + view.length) / gs), view, view.length, gs);
    }
    return { q, s };
  };
  const perLayer = (name: TensorName): QuantizedTensor[] => Array.from({ length: c.nLayers }, (_, l) => matrix(name, l));
  const rmsAtt = norm('rmsAtt'), rmsFfn = norm('rmsFfn'), rmsFinal = norm('rmsFinal');
  const tokenEmbedding = matrix('tokenEmbedding', 0);
  return {
    config: c, groupSize: gs, rmsAtt, rmsFfn, rmsFinal, tokenEmbedding,
    wq: perLayer('wq'), wk: perLayer('wk'), wv: perLayer('wv'), wo: perLayer('wo'),
    w1: perLayer('w1'), w2: perLayer('w2'), w3: perLayer('w3'),
    wcls: c.sharedClassifier ? tokenEmbedding : matrix('wcls', 0),
  };
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Loads a source's weights for `kernels`: float32, or Q8_0 with `quantize: 'q8'`. */
export function loadWeights(source: ModelSource, kernels: ModelKernels, options: LoadModelOptions = {}): TransformerWeights | Q8Weights {
  if (options.quantize === 'q8') {
    if (kernels.allocateInt8 === undefined) throw new LlamaError(`the ${kernels.name} kernels have no int8 support`);
    const alloc = { allocate: (n: number) => kernels.allocate(n), allocateInt8: (n: number) => kernels.allocateInt8!(n) };
    return loadQ8Weights(source, alloc, options.groupSize ?? 64, options.chunkFloats);
  }
  const alloc = { allocate: (n: number) => kernels.allocate(n), allocateInt8: (): Int8Array => { throw new Error('float32 weights need no int8 memory'); } };
  return loadFloat32Weights(source, alloc, options.chunkFloats);
}

/**
 * Loads a model — a path in any format openModelSource knows (a llama2.c .bin, a Hugging Face or
 * Meta folder), or an open source — straight into the kernels' memory.
 */
export function loadTransformer(model: string | ModelSource, kernels: ModelKernels = jsKernels, options: LoadModelOptions = {}): Transformer {
  if (typeof model !== 'string') return new Transformer(loadWeights(model, kernels, options), kernels);
  const source = openModelSource(model);
  try {
    return new Transformer(loadWeights(source, kernels, options), kernels);
  } finally {
    source.close();
  }
}
