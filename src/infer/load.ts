// Loading a model into the kernels' memory: a ModelSource (any format, src/model/source.ts) is read
// tensor by tensor, in chunks of rows, straight into the buffers the kernels run from.
//
//   float32            every tensor is allocated in the kernels' memory and the source writes
//                      its rows there directly (converting F16/BF16 on the way); the default for
//                      a source that does not store Q8_0, and with --dequantize for one that does
//   Q8_0               the default for a source that stores Q8_0 (llama2.c v2), and --quantize q8
//                      for any other: a source that stores Q8_0 hands over its int8 values and
//                      scales as they are; any other is read a chunk of rows at a time into one
//                      small reusable float32 buffer and quantized from it (export.py's
//                      quantize_q80: scale = max|w|/127 per group, q = round-half-even(w/scale);
//                      groups over the flattened per-layer matrix, group size 64 halved until it
//                      divides dim). Chunks hold whole groups, so the result is bit for bit the
//                      quantization of the whole matrix.
//
// Peak memory is the engine's weights plus one chunk (CHUNK_FLOATS) and the source's own scratch
// of the same order — never the file twice. Every value is checked to be finite as it arrives.

import { FormatError, LlamaError, OutOfMemoryError } from '../errors.js';
import type { Q8Weights, QuantizedTensor } from '../model/checkpoint.js';
import { q8GroupSizeFor } from '../model/checkpoint.js';
import { openModelSource } from '../model/open.js';
import { MATRIX_TENSORS, type ModelSource, NORM_TENSORS, tensorShape } from '../model/source.js';
import { type ModelConfig, kvDim } from '../model/config.js';
import { type TensorName, type TransformerWeights, parameterCount, parameterTable, weightsView } from '../model/weights.js';
import { quantize } from '../kernels/q8-js.js';
import { tokenMatmulWork } from '../kernels/types.js';
import { type EngineWeights, type LayerWeights, type ModelKernels, Transformer, contextLengthFor, referenceKernels } from './forward.js';
import { placeModel } from './placement.js';

export interface LoadModelOptions {
  /**
   * 'q8': a model stored in float32 (or F16/BF16) is quantized to Q8_0 int8 while it loads.
   * 'none' (default): it runs as float32. A model stored as Q8_0 (a v2 file) runs as the int8 it
   * holds either way, unless `dequantize`.
   */
  quantize?: 'none' | 'q8';
  /** A model stored as Q8_0 expanded to float32 (4× the memory of its int8 weights) instead. */
  dequantize?: boolean;
  /** Group size when quantizing (default 64, halved until it divides dim). */
  groupSize?: number;
  /** The context window (see TransformerOptions.contextLength). */
  contextLength?: number;
  /** Values per read (default CHUNK_FLOATS; tests make it small to cross chunk boundaries). */
  chunkFloats?: number;
  /**
   * Sessions the model will serve (default 1): each has its own KV caches, which live beside their
   * layers, so a model spread over several memories leaves room for them (see placement.ts).
   */
  sessions?: number;
  /**
   * Bytes of memory the model may take (the CLI: the machine's available memory). A model that
   * needs more (runningBytes) is refused before anything is read, saying what would fit.
   */
  memoryBudget?: number;
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
  // x · 0 is ±0 for every finite x and NaN for ±∞ and NaN, so four running sums of them stay 0
  // unless a value is not finite (4× fewer branches and no call per value: 40 → 9 ms for the 15M
  // shape's 60 MB); only then the values are searched for the first one, to name it
  const n = values.length;
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    s0 += values[j]! * 0; s1 += values[j + 1]! * 0; s2 += values[j + 2]! * 0; s3 += values[j + 3]! * 0;
  }
  for (; j < n; j++) s0 += values[j]! * 0;
  if (s0 + s1 + s2 + s3 === 0) return;
  for (let i = 0; i < n; i++) {
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

/**
 * Reads Q8_0 matrices of `source` into (q, s) buffers: the values it stores when it stores Q8_0
 * (readQ8), else quantized from its float32 rows, a chunk of whole groups at a time through one
 * reusable buffer. `groupSize` is the source's own when it stores Q8_0.
 */
export interface Q8MatrixReader {
  readonly groupSize: number;
  read(name: TensorName, layer: number, q: Int8Array, s: Float32Array): void;
}

export function q8MatrixReader(source: ModelSource, requestedGroupSize = 64, chunk = CHUNK_FLOATS): Q8MatrixReader {
  const c = source.config;
  const native = source.q8GroupSize !== undefined && source.readQ8 !== undefined;
  const gs = native ? source.q8GroupSize! : q8GroupSizeFor(c, requestedGroupSize);
  // the one reusable float32 buffer that matrices are quantized from
  let buffer = new Float32Array(0);
  return {
    groupSize: gs,
    read(name, layer, q, s) {
      const { rows, cols } = tensorShape(c, name);
      const numel = rows * cols;
      if (native) {
        const step = Math.max(gs, Math.floor(chunk / gs) * gs);
        for (let i = 0; i < numel; i += step) {
          const n = Math.min(step, numel - i);
          source.readQ8!(name, layer, i, n, q.subarray(i, i + n), s.subarray(i / gs, (i + n) / gs));
        }
        for (let g = 0; g < s.length; g++) {
          if (!Number.isFinite(s[g]!)) throw new FormatError(source.path, `tensor ${name}: scale ${g} is not a finite number`);
        }
        return;
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
    },
  };
}

/** Checks that a matrix is whole groups of `gs`, before any memory is taken for it. */
function checkGroups(source: ModelSource, name: TensorName, gs: number): number {
  const { rows, cols } = tensorShape(source.config, name);
  const numel = rows * cols;
  if (numel % gs !== 0) throw new FormatError(source.path, `tensor ${name} (${numel} values) is not a whole number of groups of ${gs}`);
  return numel;
}

/** The weights of `source` as Q8_0 (norms float32), in memory from `alloc`. */
export function loadQ8Weights(source: ModelSource, alloc: WeightAllocator, requestedGroupSize = 64, chunk = CHUNK_FLOATS): Q8Weights {
  const c = source.config;
  const reader = q8MatrixReader(source, requestedGroupSize, chunk);
  const gs = reader.groupSize;
  const norm = (name: TensorName): Float32Array => {
    const { layers, rows, cols } = tensorShape(c, name);
    const out = alloc.allocate(layers * rows * cols);
    for (let l = 0; l < layers; l++) readTensor(source, name, l, out.subarray(l * rows * cols, (l + 1) * rows * cols), chunk);
    return out;
  };
  const matrix = (name: TensorName, layer: number): QuantizedTensor => {
    const numel = checkGroups(source, name, gs);
    const q = alloc.allocateInt8(numel);
    const s = alloc.allocate(numel / gs);
    reader.read(name, layer, q, s);
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

/** True when a source loads as Q8_0 with these options (see LoadModelOptions). */
export function loadsAsQ8(source: Pick<ModelSource, 'q8GroupSize'>, options: LoadModelOptions): boolean {
  if (options.dequantize === true && options.quantize === 'q8') throw new LlamaError('quantize q8 and dequantize contradict each other');
  return source.q8GroupSize !== undefined ? options.dequantize !== true : options.quantize === 'q8';
}

/**
 * Loads a source's weights for `kernels` — float32 or Q8_0 (see LoadModelOptions) — layer by layer,
 * each tensor read in chunks straight into the memory placeModel gives its layer (a model larger
 * than one of the kernels' memories spans several; placement.ts).
 */
export function loadWeights(source: ModelSource, kernels: ModelKernels, options: LoadModelOptions = {}): EngineWeights {
  const c = source.config;
  const chunk = options.chunkFloats ?? CHUNK_FLOATS;
  const q8 = loadsAsQ8(source, options) ? q8MatrixReader(source, options.groupSize ?? 64, chunk) : undefined;
  if (q8 !== undefined && (kernels.allocateInt8 === undefined || kernels.quantize === undefined || kernels.matmulQ8 === undefined)) {
    throw new LlamaError(`the ${kernels.name} kernels have no int8 support${source.q8GroupSize !== undefined ? ` (${source.path} runs as the int8 it stores unless dequantized)` : ''}`);
  }
  const gs = q8?.groupSize ?? 0;
  if (q8 !== undefined) for (const name of MATRIX_TENSORS) if (name !== 'wcls' || !c.sharedClassifier) checkGroups(source, name, gs);
  const ctx = contextLengthFor(c, options.contextLength);
  const place = placeModel({ ...c, seqLen: ctx }, gs, kernels, options.sessions ?? 1);
  // (a model in one memory: more memories would restart the workers, see threads.ts)
  if (place.memories === 1) kernels.warmUp?.(tokenMatmulWork(c.nLayers, c.dim, kvDim(c), c.hiddenDim, c.vocabSize));
  const float32 = (name: TensorName, layer: number, memory: number): Float32Array => {
    const { rows, cols } = tensorShape(c, name);
    const dst = kernels.allocate(rows * cols, memory);
    readTensor(source, name, layer, dst, chunk);
    return dst;
  };
  const matrix = (name: TensorName, layer: number, memory: number): Float32Array | QuantizedTensor => {
    if (q8 === undefined) return float32(name, layer, memory);
    const { rows, cols } = tensorShape(c, name);
    const q = kernels.allocateInt8!(rows * cols, memory);
    const s = kernels.allocate((rows * cols) / gs, memory);
    q8.read(name, layer, q, s);
    return { q, s };
  };
  const tokenEmbedding = matrix('tokenEmbedding', 0, place.embedding);
  const layers = place.layers.map((m, l): LayerWeights => ({
    rmsAtt: float32('rmsAtt', l, m), wq: matrix('wq', l, m), wk: matrix('wk', l, m), wv: matrix('wv', l, m), wo: matrix('wo', l, m),
    rmsFfn: float32('rmsFfn', l, m), w1: matrix('w1', l, m), w2: matrix('w2', l, m), w3: matrix('w3', l, m),
  }));
  const rmsFinal = float32('rmsFinal', 0, place.head);
  const wcls = c.sharedClassifier ? tokenEmbedding : matrix('wcls', 0, place.head);
  return { config: c, groupSize: gs, tokenEmbedding, layers, rmsFinal, wcls };
}

/**
 * Loads a model — a path in any format openModelSource knows (a llama2.c .bin, a Hugging Face or
 * Meta folder), or an open source — straight into the kernels' memory. A model that does not fit
 * fails with an OutOfMemoryError saying what would.
 */
export function loadTransformer(model: string | ModelSource, kernels: ModelKernels = referenceKernels, options: LoadModelOptions = {}): Transformer {
  if (typeof model === 'string') {
    const source = openModelSource(model);
    try {
      return loadTransformer(source, kernels, options);
    } finally {
      source.close();
    }
  }
  const contextLength = contextLengthFor(model.config, options.contextLength);
  const q8 = loadsAsQ8(model, options);
  const groupSize = model.q8GroupSize ?? options.groupSize ?? 64;
  const need = runningBytes(model.config, q8, contextLength, groupSize).total;
  if (options.memoryBudget !== undefined && need > options.memoryBudget) {
    throw new OutOfMemoryError(`${model.path}: not enough memory (${sizeText(options.memoryBudget)} available); ${fitAdvice(model, q8, contextLength, groupSize)}`);
  }
  try {
    return new Transformer(loadWeights(model, kernels, options), kernels, { contextLength });
  } catch (err) {
    if (err instanceof OutOfMemoryError) {
      throw new OutOfMemoryError(`${model.path}: ${err.message}; ${fitAdvice(model, q8, contextLength, groupSize)}`);
    }
    throw err;
  }
}

/** Bytes of memory a model takes to run: its weights as loaded, its KV cache, and the activations. */
export function runningBytes(c: ModelConfig, q8: boolean, contextLength: number, groupSize = 64): { weights: number; kvCache: number; total: number } {
  const params = parameterCount(c);
  const norms = (2 * c.nLayers + 1) * c.dim;
  const weights = q8 ? 4 * norms + (params - norms) * (1 + 4 / groupSize) : 4 * params;
  const kvCache = 2 * 4 * c.nLayers * contextLength * kvDim(c);
  const activations = 4 * (6 * c.dim + 2 * c.hiddenDim + 2 * kvDim(c) + c.nHeads * contextLength + c.vocabSize) + 2 * Math.max(c.dim, c.hiddenDim);
  return { weights, kvCache, total: weights + kvCache + activations };
}

/** Bytes for people: GiB, else MiB. */
function sizeText(b: number): string {
  return b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`;
}

/** What would make a model that did not fit fit: int8 weights, a shorter context. */
function fitAdvice(source: ModelSource, q8: boolean, contextLength: number, groupSize: number): string {
  const size = sizeText;
  const c = source.config;
  const now = runningBytes(c, q8, contextLength, groupSize);
  const ideas: string[] = [];
  if (!q8) {
    const asInt8 = runningBytes(c, true, contextLength, groupSize);
    ideas.push(`${source.q8GroupSize !== undefined ? 'drop --dequantize' : 'run it as int8 with --quantize q8'} (${size(asInt8.total)})`);
  }
  const shorter = Math.min(contextLength, 512);
  if (shorter < contextLength) ideas.push(`a shorter context, e.g. --ctx ${shorter} (KV cache ${size(runningBytes(c, q8, shorter, groupSize).kvCache)})`);
  const what = `it needs ${size(now.total)} (weights ${size(now.weights)} as ${q8 ? 'int8' : 'float32'}, KV cache ${size(now.kvCache)} for a context of ${contextLength})`;
  return ideas.length > 0 ? `${what}; try ${ideas.join(', or ')}` : `${what}, more than this engine can hold`;
}
