// The llama architecture in GGUF: the metadata keys and tensor names llama.cpp uses for a Llama
// model, how they map to the engine's ModelConfig and tensors, and the GGUF writer (`llama2 export
// --format gguf`).
//
//   general.architecture = "llama"
//   llama.context_length            seqLen        llama.embedding_length        dim
//   llama.block_count               nLayers       llama.feed_forward_length     hiddenDim
//   llama.attention.head_count      nHeads        llama.attention.head_count_kv nKvHeads
//   llama.rope.dimension_count      headSize (RoPE over the whole head)
//   llama.rope.freq_base            ropeTheta     llama.attention.layer_norm_rms_epsilon  normEps
//
//   token_embd.weight   tokenEmbedding (vocab, dim)    output_norm.weight  rmsFinal (dim)
//   output.weight       wcls (vocab, dim) — absent when the classifier is the embedding (tied)
//   blk.N.attn_norm     rmsAtt   blk.N.attn_q wq   blk.N.attn_k wk   blk.N.attn_v wv
//   blk.N.attn_output   wo       blk.N.ffn_norm rmsFfn
//   blk.N.ffn_gate      w1       blk.N.ffn_down w2  blk.N.ffn_up w3     (all with ".weight")
//
// A GGUF matrix of dims [cols, rows] is the engine's (rows, cols) row-major matrix as it is. The
// q and k rows are in the order llama.cpp's "normal" RoPE rotates — adjacent pairs (x[2i], x[2i+1])
// of each head, Meta's and llama2.c's order, which is the engine's: llama.cpp's converter permutes
// Hugging Face's rotate-half q_proj/k_proj back into it, so a GGUF file needs no permutation here.

import { FormatError, LlamaError } from '../errors.js';
import { type ModelConfig, DEFAULT_NORM_EPS, DEFAULT_ROPE_THETA, headSize, normEps, ropeTheta, validateConfig } from './config.js';
import { GgmlType, type GgufHeader, type GgufTensorOut, type GgufValue, ValueType, writeGguf } from './gguf.js';
import { encodeF16, encodeQ8_0, QK } from './gguf-blocks.js';
import { type ModelSource, tensorShape } from './source.js';
import type { TensorName } from './weights.js';

export const LLAMA_ARCH = 'llama';

/** The GGUF name of engine tensor `name` in layer `layer`. */
export function ggufTensorName(name: TensorName, layer: number): string {
  switch (name) {
    case 'tokenEmbedding': return 'token_embd.weight';
    case 'rmsFinal': return 'output_norm.weight';
    case 'wcls': return 'output.weight';
    case 'rmsAtt': return `blk.${layer}.attn_norm.weight`;
    case 'wq': return `blk.${layer}.attn_q.weight`;
    case 'wk': return `blk.${layer}.attn_k.weight`;
    case 'wv': return `blk.${layer}.attn_v.weight`;
    case 'wo': return `blk.${layer}.attn_output.weight`;
    case 'rmsFfn': return `blk.${layer}.ffn_norm.weight`;
    case 'w1': return `blk.${layer}.ffn_gate.weight`;
    case 'w2': return `blk.${layer}.ffn_down.weight`;
    case 'w3': return `blk.${layer}.ffn_up.weight`;
  }
}

/** The engine tensors in the order the writer puts them (llama.cpp's converter's order). */
const GLOBAL_TENSORS: readonly TensorName[] = ['tokenEmbedding', 'rmsFinal', 'wcls'];
const LAYER_TENSORS: readonly TensorName[] = ['rmsAtt', 'wq', 'wk', 'wv', 'wo', 'rmsFfn', 'w1', 'w2', 'w3'];

/** Every (tensor, layer) of a model, in file order (wcls only when not shared). */
export function llamaTensorList(c: ModelConfig): Array<[TensorName, number]> {
  const list: Array<[TensorName, number]> = GLOBAL_TENSORS.filter((t) => t !== 'wcls' || !c.sharedClassifier).map((t) => [t, 0]);
  for (let l = 0; l < c.nLayers; l++) for (const t of LAYER_TENSORS) list.push([t, l]);
  return list;
}

// ----------------------------------------------------------------------------------------------
// Reading the config

/**
 * The shortest decimal that a float32 metadata value stands for (f32 1e-5 is 9.99999974e-6: the
 * number its writer meant is 1e-5, and a model read back must record 1e-5, not its float32 image).
 */
export function float32Decimal(v: number): number {
  for (let p = 1; p <= 9; p++) {
    const d = Number(v.toPrecision(p));
    if (Math.fround(d) === v) return d;
  }
  return v;
}

function metaNumber(h: GgufHeader, key: string, integer: boolean): number | undefined {
  const v = h.metadata.get(key);
  if (v === undefined) return undefined;
  let n: number;
  if (v.type === ValueType.UINT64 || v.type === ValueType.INT64) n = Number(v.value);
  else if (typeof v.value === 'number') n = v.type === ValueType.FLOAT32 ? float32Decimal(v.value) : v.value;
  else throw new FormatError(h.path, `${key} must be a number, not ${v.type === ValueType.ARRAY ? 'an array (one per layer)' : 'a string or boolean'}`);
  if (integer && !Number.isSafeInteger(n)) throw new FormatError(h.path, `${key} must be an integer, not ${n}`);
  return n;
}

function required(h: GgufHeader, key: string): number {
  const n = metaNumber(h, key, true);
  if (n === undefined) throw new FormatError(h.path, `has no ${key} (not a complete llama model)`);
  return n;
}

function metaString(h: GgufHeader, key: string): string | undefined {
  const v = h.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type !== ValueType.STRING) throw new FormatError(h.path, `${key} must be a string`);
  return v.value;
}

/** The model a GGUF file describes, checked: a llama architecture the engine runs as it is. */
export function llamaConfigFromGguf(h: GgufHeader): ModelConfig {
  const arch = metaString(h, 'general.architecture');
  if (arch === undefined) throw new FormatError(h.path, 'has no general.architecture (not a GGUF model)');
  if (arch !== LLAMA_ARCH) throw new FormatError(h.path, `architecture '${arch}' is not supported (llama2ts runs 'llama' models)`);
  const k = (name: string): string => `${LLAMA_ARCH}.${name}`;
  const nHeads = required(h, k('attention.head_count'));
  const embd = h.tensorByName.get('token_embd.weight');
  if (embd === undefined) throw new FormatError(h.path, 'has no tensor token_embd.weight');
  if (embd.dims.length !== 2) throw new FormatError(h.path, `token_embd.weight has ${embd.dims.length} dimensions, expected 2`);
  const eps = metaNumber(h, k('attention.layer_norm_rms_epsilon'), false);
  const theta = metaNumber(h, k('rope.freq_base'), false);
  const c: ModelConfig = {
    dim: required(h, k('embedding_length')),
    hiddenDim: required(h, k('feed_forward_length')),
    nLayers: required(h, k('block_count')),
    nHeads,
    nKvHeads: metaNumber(h, k('attention.head_count_kv'), true) ?? nHeads,
    vocabSize: embd.dims[1]!,
    seqLen: required(h, k('context_length')),
    sharedClassifier: !h.tensorByName.has('output.weight'),
    ...(eps !== undefined && eps !== DEFAULT_NORM_EPS ? { normEps: eps } : {}),
    ...(theta !== undefined && theta !== DEFAULT_ROPE_THETA ? { ropeTheta: theta } : {}),
  };
  validateConfig(c, h.path);
  const ropeDims = metaNumber(h, k('rope.dimension_count'), true);
  if (ropeDims !== undefined && ropeDims !== headSize(c)) {
    throw new FormatError(h.path, `RoPE over ${ropeDims} of each head's ${headSize(c)} dimensions is not supported (llama2ts rotates whole heads)`);
  }
  const scaling = metaString(h, k('rope.scaling.type'));
  const factor = metaNumber(h, k('rope.scaling.factor'), false);
  if ((scaling !== undefined && scaling !== 'none' && factor !== 1) || h.tensorByName.has('rope_freqs.weight')) {
    throw new FormatError(h.path, `RoPE scaling (${scaling ?? 'rope_freqs.weight'}) is not supported`);
  }
  const vocab = metaNumber(h, k('vocab_size'), true);
  if (vocab !== undefined && vocab !== c.vocabSize) {
    throw new FormatError(h.path, `${k('vocab_size')} ${vocab} disagrees with token_embd.weight's ${c.vocabSize} rows`);
  }
  return c;
}

// ----------------------------------------------------------------------------------------------
// Writing

export type GgufDtype = 'f32' | 'f16' | 'q8_0';

/** llama.cpp's general.file_type (LLAMA_FTYPE_*) for each dtype the writer offers. */
const FILE_TYPE: Record<GgufDtype, number> = { f32: 0, f16: 1, q8_0: 7 };

/** The llama.* and general.* metadata of a model. */
export function llamaMetadata(c: ModelConfig, name: string, dtype: GgufDtype): Array<[string, GgufValue]> {
  const u32 = (value: number): GgufValue => ({ type: ValueType.UINT32, value });
  const f32 = (value: number): GgufValue => ({ type: ValueType.FLOAT32, value: Math.fround(value) });
  const entries: Array<[string, GgufValue]> = [
    ['general.architecture', { type: ValueType.STRING, value: LLAMA_ARCH }],
    ['general.name', { type: ValueType.STRING, value: name }],
    ['general.file_type', u32(FILE_TYPE[dtype])],
  ];
  if (dtype === 'q8_0') entries.push(['general.quantization_version', u32(2)]);
  entries.push(
    ['llama.vocab_size', u32(c.vocabSize)],
    ['llama.context_length', u32(c.seqLen)],
    ['llama.embedding_length', u32(c.dim)],
    ['llama.block_count', u32(c.nLayers)],
    ['llama.feed_forward_length', u32(c.hiddenDim)],
    ['llama.rope.dimension_count', u32(headSize(c))],
    ['llama.attention.head_count', u32(c.nHeads)],
    ['llama.attention.head_count_kv', u32(c.nKvHeads)],
    ['llama.attention.layer_norm_rms_epsilon', f32(normEps(c))],
    ['llama.rope.freq_base', f32(ropeTheta(c))],
  );
  return entries;
}

/**
 * The GGUF type a tensor is written as: norms (one row) stay F32, as llama.cpp's converter keeps
 * them; matrices take the dtype, except that Q8_0 needs rows of whole 32-value blocks — a matrix
 * whose rows are not (stories260K's ffn_down, 172 wide) falls back to F16, as the converter does.
 */
export function llamaTensorType(rows: number, cols: number, dtype: GgufDtype): number {
  if (rows === 1 || dtype === 'f32') return GgmlType.F32;
  if (dtype === 'q8_0' && cols % QK === 0) return GgmlType.Q8_0;
  return GgmlType.F16;
}

/** Rows per read while writing: about 1 Mi values. */
const WRITE_CHUNK_VALUES = 1 << 20;

/**
 * Writes a model as a GGUF file llama.cpp runs: the llama metadata, `extra` entries (the tokenizer's
 * tokenizer.ggml.*, a chat template), and every tensor read from `source` and encoded as `dtype`,
 * a chunk of rows at a time (the model is never in memory as a whole).
 */
export function writeLlamaGguf(path: string, source: ModelSource, extra: ReadonlyArray<[string, GgufValue]>, dtype: GgufDtype, name: string): void {
  const c = source.config;
  const metadata = new Map<string, GgufValue>([...llamaMetadata(c, name, dtype), ...extra]);
  let floats = new Float32Array(0);
  const tensors: GgufTensorOut[] = llamaTensorList(c).map(([tensor, layer]) => {
    const { rows, cols } = tensorShape(c, tensor);
    const type = llamaTensorType(rows, cols, dtype);
    const data = function* (): Generator<Uint8Array> {
      const step = Math.max(1, Math.floor(WRITE_CHUNK_VALUES / cols));
      if (floats.length < step * cols) floats = new Float32Array(Math.min(rows, step) * cols);
      for (let r = 0; r < rows; r += step) {
        const n = Math.min(step, rows - r);
        const values = floats.subarray(0, n * cols);
        source.read(tensor, layer, r, n, values);
        yield encode(values, type, `${ggufTensorName(tensor, layer)} row ${r}`);
      }
    };
    return { name: ggufTensorName(tensor, layer), dims: rows === 1 ? [cols] : [cols, rows], type, data };
  });
  writeGguf(path, metadata, tensors);
}

/** float32 values → the bytes of `type` (a fresh array: the writer may hold it until written). */
function encode(values: Float32Array, type: number, where: string): Uint8Array {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]!)) throw new LlamaError(`${where}: value ${i} is not a finite number`);
  }
  if (type === GgmlType.F32) return new Uint8Array(values.slice().buffer);
  if (type === GgmlType.F16) {
    const out = new Uint8Array(values.length * 2);
    encodeF16(values, out);
    for (let i = 0; i < values.length; i++) {
      if (Math.abs(values[i]!) >= 65520) throw new LlamaError(`${where}: value ${values[i]} is too large for F16 (export as f32)`);
    }
    return out;
  }
  const out = new Uint8Array((values.length / QK) * 34);
  encodeQ8_0(values, out);
  return out;
}
