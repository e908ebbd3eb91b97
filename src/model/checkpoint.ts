// llama2.c checkpoint files: read and write. All integers and floats are little-endian.
//
// v0 (legacy, what run.c reads)
//   header  7 × int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
//           (vocab_size < 0 means the classifier is NOT shared and is stored at the end)
//   float32 token_embedding (vocab, dim)
//           rms_att (layer, dim)
//           wq (layer, dim, dim)   wk (layer, kv_dim, dim)   wv (layer, kv_dim, dim)   wo (layer, dim, dim)
//           rms_ffn (layer, dim)
//           w1 (layer, hidden, dim)   w2 (layer, dim, hidden)   w3 (layer, hidden, dim)
//           rms_final (dim)
//           freq_cis_real (seq_len, head_size/2)   freq_cis_imag (seq_len, head_size/2)   [unused by
//           inference: RoPE is recomputed, but the bytes are there]
//           wcls (vocab, dim)   only if unshared
//
// v1 (export.py version 1)
//   header  256 bytes: uint32 magic 0x616b3432 ("ak42" read as bytes 42 34 6b 61), int32 version = 1,
//           7 × int32 as above (vocab_size positive), uint8 shared_classifier, zero padding
//   float32 rms_att (layer, dim), rms_ffn (layer, dim), rms_final (dim), token_embedding (vocab, dim),
//           wq…, wk…, wv…, wo…, w1…, w2…, w3… (each stacked over layers), wcls (vocab, dim) if unshared
//   This is exactly the in-memory parameter order of weights.ts, so a v1 file loads with one read.
//
// v2 (export.py version 2, Q8_0)
//   header  256 bytes: as v1 with version = 2, then int32 group_size at byte 37, zero padding
//   float32 rms_att (layer, dim), rms_ffn (layer, dim), rms_final (dim)
//   then for each quantized tensor, in the order token_embedding, wq[0..L), wk[0..L), wv[0..L),
//   wo[0..L), w1[0..L), w2[0..L), w3[0..L), [wcls if unshared]:
//           int8 q (numel)   then   float32 scale (numel / group_size)
//   Groups run over the flattened tensor: value i is q[i] * scale[floor(i / group_size)], so a group
//   may span two rows when the row length is not a multiple of group_size.

import { FormatError, LlamaError } from '../errors.js';
import { TempFile, writeFileAtomic } from '../files.js';
import { bytesOf, FileReader } from './file-reader.js';
import { type ModelSource, tensorShape } from './source.js';
import { quantize } from '../kernels/q8-js.js';
import {
  DEFAULT_NORM_EPS, DEFAULT_ROPE_THETA, type ModelConfig, fitsLlama2c, headSize, kvDim, normEps, ropeTheta, validateConfig,
} from './config.js';
import { type TensorName, type TransformerWeights, parameterCount, parameterTable, weightsView } from './weights.js';

export const CHECKPOINT_MAGIC = 0x616b3432;
export const HEADER_BYTES_V1 = 256;
export type CheckpointFormat = 'v0' | 'v1' | 'v2';

/** One Q8_0 tensor: int8 values and one float32 scale per `groupSize` consecutive values. */
export interface QuantizedTensor {
  readonly q: Int8Array;
  readonly s: Float32Array;
}

/** The weights of a v2 checkpoint: norms stay float32, matrices are Q8_0 (per layer). */
export interface Q8Weights {
  readonly config: ModelConfig;
  readonly groupSize: number;
  readonly rmsAtt: Float32Array; //   (layer, dim)
  readonly rmsFfn: Float32Array; //   (layer, dim)
  readonly rmsFinal: Float32Array; // (dim)
  readonly tokenEmbedding: QuantizedTensor; // (vocab, dim)
  readonly wq: QuantizedTensor[]; // per layer (dim, dim)
  readonly wk: QuantizedTensor[]; // per layer (kv_dim, dim)
  readonly wv: QuantizedTensor[]; // per layer (kv_dim, dim)
  readonly wo: QuantizedTensor[]; // per layer (dim, dim)
  readonly w1: QuantizedTensor[]; // per layer (hidden, dim)
  readonly w2: QuantizedTensor[]; // per layer (dim, hidden)
  readonly w3: QuantizedTensor[]; // per layer (hidden, dim)
  /** The classifier; the token embedding itself when shared. */
  readonly wcls: QuantizedTensor;
}

export type Checkpoint =
  | { readonly format: 'v0' | 'v1'; readonly config: ModelConfig; readonly weights: TransformerWeights }
  | { readonly format: 'v2'; readonly config: ModelConfig; readonly q8: Q8Weights };

export interface ReadOptions {
  /**
   * Provides the Float32Array (of `floats` elements) that float32 weights are read into, so that
   * they land directly in their final (e.g. shared) memory. Default: a new Float32Array.
   */
  allocate?: (floats: number) => Float32Array;
  /** The same for int8 tensors (v2 files). Default: a new Int8Array. */
  allocateInt8?: (count: number) => Int8Array;
}

// ----------------------------------------------------------------------------------------------
// Reading

/** The header fields and where the tensors start, without reading the tensors. */
export interface CheckpointHeader {
  readonly format: CheckpointFormat;
  readonly config: ModelConfig;
  /** Q8_0 group size (v2 only). */
  readonly groupSize?: number;
  /** File size in bytes. */
  readonly fileBytes: number;
}

/** Reads and checks the header of the checkpoint open in `f` (and the file size against it). */
export function readHeaderFrom(f: FileReader): CheckpointHeader {
  if (f.size < 28) throw new FormatError(f.path, `file is too short for a checkpoint header (${f.size} bytes)`);
  const head = new Uint8Array(Math.min(f.size, HEADER_BYTES_V1));
  f.readInto(head, 0);
  const dv = new DataView(head.buffer);
  const magic = dv.getUint32(0, true);
  let format: CheckpointFormat;
  let config: ModelConfig;
  let groupSize: number | undefined;
  if (magic === CHECKPOINT_MAGIC) {
    if (f.size < HEADER_BYTES_V1) throw new FormatError(f.path, `file is too short for a v1/v2 header (${f.size} bytes)`);
    const version = dv.getInt32(4, true);
    if (version !== 1 && version !== 2) throw new FormatError(f.path, `unsupported checkpoint version ${version} (expected 1 or 2)`);
    const shared = dv.getUint8(36);
    if (shared > 1) throw new FormatError(f.path, `bad shared-classifier flag ${shared}`);
    config = {
      dim: dv.getInt32(8, true), hiddenDim: dv.getInt32(12, true), nLayers: dv.getInt32(16, true),
      nHeads: dv.getInt32(20, true), nKvHeads: dv.getInt32(24, true), vocabSize: dv.getInt32(28, true),
      seqLen: dv.getInt32(32, true), sharedClassifier: shared === 1,
    };
    format = version === 1 ? 'v1' : 'v2';
    if (version === 2) {
      groupSize = dv.getInt32(37, true);
      if (groupSize <= 0 || groupSize > 1 << 20) throw new FormatError(f.path, `impossible group size ${groupSize}`);
    }
  } else {
    const v = dv.getInt32(20, true);
    config = {
      dim: dv.getInt32(0, true), hiddenDim: dv.getInt32(4, true), nLayers: dv.getInt32(8, true),
      nHeads: dv.getInt32(12, true), nKvHeads: dv.getInt32(16, true), vocabSize: Math.abs(v),
      seqLen: dv.getInt32(24, true), sharedClassifier: v > 0,
    };
    format = 'v0';
  }
  validateConfig(config, f.path);
  if (groupSize !== undefined) {
    // every quantized tensor is a whole number of groups (export.py halves the group size until it is)
    for (const [name, numel] of q8Order(config)) {
      if (numel % groupSize !== 0) throw new FormatError(f.path, `group size ${groupSize} does not divide tensor ${name} (${numel} values): not a valid v2 file`);
    }
  }
  const header: CheckpointHeader = groupSize === undefined ? { format, config, fileBytes: f.size } : { format, config, groupSize, fileBytes: f.size };
  const expected = expectedFileBytes(header);
  if (expected !== f.size) {
    const what = format === 'v0' ? ' (or it is not a llama2.c checkpoint)' : '';
    throw new FormatError(f.path, `${format} header implies ${expected} bytes but the file has ${f.size}${f.size < expected ? ' (truncated)' : ' (trailing data)'}${what}`);
  }
  return header;
}

/** Exact size in bytes of a checkpoint with this header. */
export function expectedFileBytes(h: Pick<CheckpointHeader, 'format' | 'config' | 'groupSize'>): number {
  const c = h.config;
  const params = parameterCount(c);
  if (h.format === 'v1') return HEADER_BYTES_V1 + 4 * params;
  if (h.format === 'v0') return 28 + 4 * (params + c.seqLen * headSize(c)); // + freq_cis real and imag
  const norms = (2 * c.nLayers + 1) * c.dim;
  const quantized = params - norms;
  return HEADER_BYTES_V1 + 4 * norms + quantized + (4 * quantized) / h.groupSize!;
}

/** Reads only the header of a checkpoint (and checks the file size against it). */
export function readCheckpointHeader(path: string): CheckpointHeader {
  const f = new FileReader(path);
  try {
    return readHeaderFrom(f);
  } finally {
    f.close();
  }
}

/** Reads a v0, v1 or v2 checkpoint, detecting the format from its header. */
export function readCheckpoint(path: string, options: ReadOptions = {}): Checkpoint {
  const f = new FileReader(path);
  try {
    const header = readHeaderFrom(f);
    const c = header.config;
    if (header.format === 'v2') return { format: 'v2', config: c, q8: readQ8(f, header, options) };
    const n = parameterCount(c);
    const data = options.allocate ? options.allocate(n) : new Float32Array(n);
    if (data.length !== n) throw new RangeError(`allocate returned ${data.length} floats, expected ${n}`);
    const weights = weightsView(c, data);
    if (header.format === 'v1') {
      f.readFloats(data, HEADER_BYTES_V1);
    } else {
      let pos = 28;
      for (const name of V0_ORDER) {
        if (name === 'freqCis') {
          pos += 4 * c.seqLen * headSize(c);
          continue;
        }
        if (name === 'wcls' && c.sharedClassifier) continue;
        const t = weights[name];
        f.readFloats(t, pos);
        pos += t.byteLength;
      }
    }
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i]!)) throw new FormatError(path, `weight ${i} is not a finite number (${data[i]})`);
    }
    return { format: header.format, config: c, weights };
  } finally {
    f.close();
  }
}

/** Tensor order of a v0 file (freqCis: the two unused RoPE tables). */
export const V0_ORDER: ReadonlyArray<TensorName | 'freqCis'> = [
  'tokenEmbedding', 'rmsAtt', 'wq', 'wk', 'wv', 'wo', 'rmsFfn', 'w1', 'w2', 'w3', 'rmsFinal', 'freqCis', 'wcls',
];

/** Quantized tensors of a v2 file in order: [name, per-layer numel, count]. */
export function q8Order(c: ModelConfig): Array<[Exclude<TensorName, 'rmsAtt' | 'rmsFfn' | 'rmsFinal'>, number, number]> {
  const kv = kvDim(c);
  const order: Array<[Exclude<TensorName, 'rmsAtt' | 'rmsFfn' | 'rmsFinal'>, number, number]> = [
    ['tokenEmbedding', c.vocabSize * c.dim, 1],
    ['wq', c.dim * c.dim, c.nLayers],
    ['wk', kv * c.dim, c.nLayers],
    ['wv', kv * c.dim, c.nLayers],
    ['wo', c.dim * c.dim, c.nLayers],
    ['w1', c.hiddenDim * c.dim, c.nLayers],
    ['w2', c.dim * c.hiddenDim, c.nLayers],
    ['w3', c.hiddenDim * c.dim, c.nLayers],
  ];
  if (!c.sharedClassifier) order.push(['wcls', c.vocabSize * c.dim, 1]);
  return order;
}

function readQ8(f: FileReader, header: CheckpointHeader, options: ReadOptions): Q8Weights {
  const allocF32 = options.allocate ?? ((n: number) => new Float32Array(n));
  const allocI8 = options.allocateInt8 ?? ((n: number) => new Int8Array(n));
  const c = header.config;
  const gs = header.groupSize!;
  for (const [name, numel] of q8Order(c)) {
    if (numel % gs !== 0) throw new FormatError(f.path, `tensor ${name} (${numel} values) is not a whole number of groups of ${gs}`);
  }
  let pos = HEADER_BYTES_V1;
  const readF32 = (n: number): Float32Array => {
    const a = allocF32(n);
    f.readFloats(a, pos);
    pos += 4 * n;
    return a;
  };
  const rmsAtt = readF32(c.nLayers * c.dim);
  const rmsFfn = readF32(c.nLayers * c.dim);
  const rmsFinal = readF32(c.dim);
  const tensors: Partial<Record<TensorName, QuantizedTensor[]>> = {};
  for (const [name, numel, count] of q8Order(c)) {
    const list: QuantizedTensor[] = [];
    for (let l = 0; l < count; l++) {
      const q = allocI8(numel);
      f.readInto(bytesOf(q), pos);
      pos += numel;
      const s = readF32(numel / gs);
      for (let i = 0; i < s.length; i++) {
        if (!Number.isFinite(s[i]!)) throw new FormatError(f.path, `tensor ${name}: scale ${i} is not a finite number`);
      }
      list.push({ q, s });
    }
    tensors[name] = list;
  }
  const emb = tensors.tokenEmbedding![0]!;
  return {
    config: c, groupSize: gs, rmsAtt, rmsFfn, rmsFinal, tokenEmbedding: emb,
    wq: tensors.wq!, wk: tensors.wk!, wv: tensors.wv!, wo: tensors.wo!, w1: tensors.w1!, w2: tensors.w2!, w3: tensors.w3!,
    wcls: tensors.wcls?.[0] ?? emb,
  };
}

/** Byte offset in a v0 or v1 file of each float32 tensor. */
export function tensorOffsets(header: CheckpointHeader): Map<TensorName, number> {
  const c = header.config;
  const offsets = new Map<TensorName, number>();
  const table = parameterTable(c);
  if (header.format === 'v1') {
    for (const t of table) offsets.set(t.name, HEADER_BYTES_V1 + 4 * t.offset);
    return offsets;
  }
  const size = new Map(table.map((t) => [t.name, t.size]));
  let pos = 28;
  for (const name of V0_ORDER) {
    if (name === 'freqCis') {
      pos += 4 * c.seqLen * headSize(c);
    } else if (size.has(name)) {
      offsets.set(name, pos);
      pos += 4 * size.get(name)!;
    }
  }
  return offsets;
}

/**
 * Reads a checkpoint as Q8_0 weights: a v2 file as it is; a v0/v1 file one matrix at a time,
 * each quantized (export.py's quantize_q80, `groupSize` halved until it divides dim) as soon as it
 * is read, so the float32 weights are never all in memory at once.
 */
export function readCheckpointAsQ8(path: string, groupSize: number, alloc: Q8Allocator = defaultQ8Allocator): Q8Weights {
  const f = new FileReader(path);
  try {
    const header = readHeaderFrom(f);
    if (header.format === 'v2') return readQ8(f, header, { allocate: alloc.float32, allocateInt8: alloc.int8 });
    const c = header.config;
    const gs = q8GroupSizeFor(c, groupSize);
    const offsets = tensorOffsets(header);
    const table = parameterTable(c);
    const largest = table.reduce((m, t) => Math.max(m, t.size / (t.perLayer ? c.nLayers : 1)), 0);
    const scratch = new Float32Array(largest);
    const readFloats = (name: TensorName, first: number, count: number, dst: Float32Array): Float32Array => {
      const view = dst.subarray(0, count);
      f.readFloats(view, offsets.get(name)! + 4 * first);
      for (let i = 0; i < count; i++) {
        if (!Number.isFinite(view[i]!)) throw new FormatError(path, `tensor ${name}: value ${first + i} is not a finite number`);
      }
      return view;
    };
    const norm = (name: 'rmsAtt' | 'rmsFfn' | 'rmsFinal'): Float32Array => {
      const n = table.find((t) => t.name === name)!.size;
      return readFloats(name, 0, n, alloc.float32(n));
    };
    const quantized = (name: TensorName, index: number, per: number): QuantizedTensor => {
      if (per % gs !== 0) throw new FormatError(path, `tensor ${name} (${per} values) is not a whole number of groups of ${gs}`);
      return quantizeQ80(readFloats(name, index * per, per, scratch), gs, alloc);
    };
    const perLayer = (name: 'wq' | 'wk' | 'wv' | 'wo' | 'w1' | 'w2' | 'w3'): QuantizedTensor[] => {
      const per = table.find((t) => t.name === name)!.size / c.nLayers;
      return Array.from({ length: c.nLayers }, (_, l) => quantized(name, l, per));
    };
    const emb = quantized('tokenEmbedding', 0, c.vocabSize * c.dim);
    return {
      config: c, groupSize: gs, rmsAtt: norm('rmsAtt'), rmsFfn: norm('rmsFfn'), rmsFinal: norm('rmsFinal'), tokenEmbedding: emb,
      wq: perLayer('wq'), wk: perLayer('wk'), wv: perLayer('wv'), wo: perLayer('wo'),
      w1: perLayer('w1'), w2: perLayer('w2'), w3: perLayer('w3'),
      wcls: c.sharedClassifier ? emb : quantized('wcls', 0, c.vocabSize * c.dim),
    };
  } finally {
    f.close();
  }
}

/** Expands Q8_0 weights back to float32 (value = q · scale of its group). */
export function dequantizeWeights(q8: Q8Weights, data?: Float32Array): TransformerWeights {
  const c = q8.config;
  const w = weightsView(c, data ?? new Float32Array(parameterCount(c)));
  w.rmsAtt.set(q8.rmsAtt);
  w.rmsFfn.set(q8.rmsFfn);
  w.rmsFinal.set(q8.rmsFinal);
  const expand = (src: QuantizedTensor, dst: Float32Array): void => {
    for (let i = 0; i < src.q.length; i++) dst[i] = src.q[i]! * src.s[Math.floor(i / q8.groupSize)]!;
  };
  expand(q8.tokenEmbedding, w.tokenEmbedding);
  for (const name of ['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'] as const) {
    const per = w[name].length / c.nLayers;
    q8[name].forEach((t, l) => expand(t, w[name].subarray(l * per, (l + 1) * per)));
  }
  if (!c.sharedClassifier) expand(q8.wcls, w.wcls);
  return w;
}

/** Float32 weights of any checkpoint (v2 is dequantized). */
export function checkpointWeights(ckpt: Checkpoint): TransformerWeights {
  return ckpt.format === 'v2' ? dequantizeWeights(ckpt.q8) : ckpt.weights;
}

// ----------------------------------------------------------------------------------------------
// Quantization (Q8_0), exactly as export.py's quantize_q80 computes it in float32:
//   scale = max|w| / 127 over the group;  q = round_half_even(w / scale)

/** Quantizes `w` in groups of `groupSize` consecutive values (w.length must be a multiple). */
export function quantizeQ80(w: Float32Array, groupSize: number, alloc: Q8Allocator = defaultQ8Allocator): QuantizedTensor {
  if (w.length % groupSize !== 0) throw new RangeError(`${w.length} values are not a whole number of groups of ${groupSize}`);
  const q = alloc.int8(w.length);
  const s = alloc.float32(w.length / groupSize);
  // the same arithmetic as the activation quantizer of the reference int8 kernels
  quantize(q, s, w, w.length, groupSize);
  return { q, s };
}

/** Where quantized tensors are stored (e.g. the kernels' memory). */
export interface Q8Allocator {
  int8(count: number): Int8Array;
  float32(count: number): Float32Array;
}

const defaultQ8Allocator: Q8Allocator = { int8: (n) => new Int8Array(n), float32: (n) => new Float32Array(n) };


/** The group size export.py picks: the requested one, halved until it divides dim. */
export function q8GroupSizeFor(c: ModelConfig, requested: number): number {
  let gs = requested;
  while (c.dim % gs !== 0) gs = Math.floor(gs / 2);
  return gs;
}

/** Quantizes float32 weights to Q8_0 (what a v2 file holds). */
export function quantizeWeights(w: TransformerWeights, groupSize: number, alloc: Q8Allocator = defaultQ8Allocator): Q8Weights {
  const c = w.config;
  const perLayer = (name: 'wq' | 'wk' | 'wv' | 'wo' | 'w1' | 'w2' | 'w3'): QuantizedTensor[] => {
    const per = w[name].length / c.nLayers;
    return Array.from({ length: c.nLayers }, (_, l) => quantizeQ80(w[name].subarray(l * per, (l + 1) * per), groupSize, alloc));
  };
  const copy = (a: Float32Array): Float32Array => {
    const out = alloc.float32(a.length);
    out.set(a);
    return out;
  };
  const emb = quantizeQ80(w.tokenEmbedding, groupSize, alloc);
  return {
    config: c, groupSize, rmsAtt: copy(w.rmsAtt), rmsFfn: copy(w.rmsFfn), rmsFinal: copy(w.rmsFinal), tokenEmbedding: emb,
    wq: perLayer('wq'), wk: perLayer('wk'), wv: perLayer('wv'), wo: perLayer('wo'),
    w1: perLayer('w1'), w2: perLayer('w2'), w3: perLayer('w3'),
    wcls: c.sharedClassifier ? emb : quantizeQ80(w.wcls, groupSize, alloc),
  };
}

// ----------------------------------------------------------------------------------------------
// Writing (atomically and durably: files.ts's writeFileAtomic — temporary file, fsync, rename, fsync of the folder)

// (re-exported for older imports; new code imports it from ../files.js)
export { writeFileAtomic };

function headerBytes(c: ModelConfig, version: 1 | 2, groupSize = 0): Uint8Array {
  const head = new Uint8Array(HEADER_BYTES_V1);
  const dv = new DataView(head.buffer);
  dv.setUint32(0, CHECKPOINT_MAGIC, true);
  dv.setInt32(4, version, true);
  [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.vocabSize, c.seqLen].forEach((v, i) => dv.setInt32(8 + 4 * i, v, true));
  dv.setUint8(36, c.sharedClassifier ? 1 : 0);
  if (version === 2) dv.setInt32(37, groupSize, true);
  return head;
}

/** The RoPE tables a v0 file carries: cos and sin of pos · 10000^(-2i/head_size), in float32. */
function freqCis(c: ModelConfig): [Float32Array, Float32Array] {
  const hs = headSize(c);
  const half = hs / 2;
  const re = new Float32Array(c.seqLen * half);
  const im = new Float32Array(c.seqLen * half);
  for (let i = 0; i < half; i++) {
    const freq = Math.fround(1 / Math.fround(Math.pow(10000, Math.fround((2 * i) / hs))));
    for (let p = 0; p < c.seqLen; p++) {
      const angle = Math.fround(p * freq);
      re[p * half + i] = Math.cos(angle);
      im[p * half + i] = Math.sin(angle);
    }
  }
  return [re, im];
}

/**
 * A llama2.c header has no field for RMSNorm's ε or RoPE's θ (run.c hard-codes 1e-5 and 10000): a
 * model with other values is refused rather than silently changed.
 */
export function checkFitsLlama2c(c: ModelConfig, format: CheckpointFormat): void {
  if (!fitsLlama2c(c)) {
    throw new LlamaError(`a llama2.c ${format} file cannot record this model's norm epsilon ${normEps(c)} and rope theta ${ropeTheta(c)} ` +
      `(llama2.c assumes ${DEFAULT_NORM_EPS} and ${DEFAULT_ROPE_THETA}): export it in another format`);
  }
}

/**
 * What the streaming writer reads from: a ModelSource (src/model/source.ts: any model format), or
 * anything else that produces rows of the engine's tensors (src/train/init.ts draws them). The
 * writer asks for the tensors in the order of the file it writes, each tensor's rows in order —
 * for every llama2.c format the matrices then come in the same order (embedding, wq, wk, wv, wo,
 * w1, w2, w3, classifier; layer by layer).
 */
export type WeightReader = Pick<ModelSource, 'config' | 'read'> & Partial<Pick<ModelSource, 'path' | 'q8GroupSize' | 'readQ8'>>;

/** Values the writer holds at once (16 MiB of float32): a 7B model is written piece by piece. */
const WRITE_CHUNK = 1 << 22;

/**
 * Writes a checkpoint whose values come from `reader`, a chunk of rows at a time: memory stays a
 * few tens of MiB whatever the model's size. v2 quantizes with group size `groupSize` (halved
 * until it divides dim, as export.py does), chunks of whole groups, exactly as quantizeQ80
 * quantizes a whole matrix; a reader that stores Q8_0 with that group size (readQ8) hands its
 * values over as they are. Every value read is checked to be finite.
 */
export function writeCheckpointFrom(path: string, reader: WeightReader, format: CheckpointFormat, groupSize = 64): void {
  const c = reader.config;
  checkFitsLlama2c(c, format);
  const gs = q8GroupSizeFor(c, groupSize);
  if (format === 'v2') {
    for (const [name, numel] of q8Order(c)) {
      if (numel % gs !== 0) throw new LlamaError(`cannot write v2: tensor ${name} (${numel} values per layer) is not a whole number of groups of ${gs}`);
    }
  }
  const native = format === 'v2' && reader.q8GroupSize === gs && reader.readQ8 !== undefined;
  let scratch = new Float32Array(WRITE_CHUNK);
  const file = new TempFile(path);
  /** Reads rows [row, row + rows) of `name` into scratch and checks them. */
  const read = (name: TensorName, layer: number, row: number, rows: number, cols: number): Float32Array => {
    if (scratch.length < rows * cols) scratch = new Float32Array(rows * cols); // rows longer than a chunk
    const view = scratch.subarray(0, rows * cols);
    reader.read(name, layer, row, rows, view);
    for (let i = 0; i < view.length; i++) {
      if (!Number.isFinite(view[i]!)) throw new FormatError(reader.path ?? path, `tensor ${name} layer ${layer} row ${row + Math.floor(i / cols)}: value ${i % cols} is not a finite number`);
    }
    return view;
  };
  /** Tensor `name` as float32, layer by layer. */
  const float32 = (name: TensorName): void => {
    const { layers, rows, cols } = tensorShape(c, name);
    const step = Math.max(1, Math.min(rows, Math.floor(WRITE_CHUNK / cols)));
    for (let l = 0; l < layers; l++) {
      for (let r = 0; r < rows; r += step) file.write(bytesOf(read(name, l, r, Math.min(step, rows - r), cols)));
    }
  };
  /** Tensor `name` as Q8_0, layer by layer: its int8 values, then its scales. */
  const q8 = (name: TensorName): void => {
    const { layers, rows, cols } = tensorShape(c, name);
    const numel = rows * cols;
    // chunks of whole rows holding whole groups (a multiple of gs / gcd(cols, gs) rows)
    const align = gs / gcd(cols, gs);
    const step = Math.min(rows, Math.max(align, Math.floor(WRITE_CHUNK / cols / align) * align));
    const q = new Int8Array(Math.min(numel, Math.max(step * cols, WRITE_CHUNK)));
    const s = new Float32Array(numel / gs);
    for (let l = 0; l < layers; l++) {
      if (native) {
        const span = Math.floor(q.length / gs) * gs;
        for (let i = 0; i < numel; i += span) {
          const n = Math.min(span, numel - i);
          reader.readQ8!(name, l, i, n, q, s.subarray(i / gs));
          file.write(bytesOf(q.subarray(0, n)));
        }
        for (let g = 0; g < s.length; g++) {
          if (!Number.isFinite(s[g]!)) throw new FormatError(reader.path ?? path, `tensor ${name} layer ${l}: scale ${g} is not a finite number`);
        }
      } else {
        for (let r = 0; r < rows; r += step) {
          const view = read(name, l, r, Math.min(step, rows - r), cols);
          quantize(q, s.subarray((r * cols) / gs), view, view.length, gs);
          file.write(bytesOf(q.subarray(0, view.length)));
        }
      }
      file.write(bytesOf(s));
    }
  };
  try {
    if (format === 'v1') {
      file.write(headerBytes(c, 1));
      for (const t of parameterTable(c)) float32(t.name);
    } else if (format === 'v0') {
      const head = new Int32Array([c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.sharedClassifier ? c.vocabSize : -c.vocabSize, c.seqLen]);
      file.write(new Uint8Array(head.buffer));
      for (const name of V0_ORDER) {
        if (name === 'freqCis') freqCis(c).forEach((t) => file.write(bytesOf(t)));
        else if (name !== 'wcls' || !c.sharedClassifier) float32(name);
      }
    } else {
      file.write(headerBytes(c, 2, gs));
      for (const name of ['rmsAtt', 'rmsFfn', 'rmsFinal'] as const) float32(name);
      for (const [name] of q8Order(c)) q8(name);
    }
    file.commit();
  } catch (err) {
    file.abort();
    throw err;
  }
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** A WeightReader over float32 weights in memory. */
export function weightsReader(w: TransformerWeights): WeightReader {
  return {
    config: w.config,
    read(name, layer, row, rows, dst) {
      const { rows: perLayer, cols } = tensorShape(w.config, name);
      const from = (layer * perLayer + row) * cols;
      dst.set(w[name].subarray(from, from + rows * cols));
    },
  };
}

/** Writes float32 weights as a v0 or v1 checkpoint, or quantized as v2 (Q8_0). */
export function writeCheckpoint(path: string, w: TransformerWeights, format: CheckpointFormat = 'v1', groupSize = 64): void {
  writeCheckpointFrom(path, weightsReader(w), format, groupSize);
}

/** Writes Q8_0 weights as a v2 checkpoint. */
export function writeQ8Checkpoint(path: string, q8: Q8Weights): void {
  const c = q8.config;
  checkFitsLlama2c(c, 'v2');
  const chunks: Uint8Array[] = [headerBytes(c, 2, q8.groupSize), bytesOf(q8.rmsAtt), bytesOf(q8.rmsFfn), bytesOf(q8.rmsFinal)];
  for (const [name] of q8Order(c)) {
    const list = name === 'tokenEmbedding' ? [q8.tokenEmbedding] : name === 'wcls' ? [q8.wcls] : q8[name];
    for (const t of list) chunks.push(bytesOf(t.q), bytesOf(t.s));
  }
  writeFileAtomic(path, chunks);
}
