// Writing a model as a Hugging Face folder (what LlamaForCausalLM.from_pretrained loads): the
// config.json and generation_config.json of a ModelConfig, and model.safetensors streamed from any
// ModelSource tensor by tensor — a few MiB at a time, so a model is never in memory whole. Tensor
// names and the rotate-half order of q_proj/k_proj rows are hf-source.ts's / source.ts's, the other
// direction: HF row p of Wq holds engine row r where hfRotateHalfRow(r) = p.

import { LlamaError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import { type ModelConfig, headSize, normEps, ropeTheta } from './config.js';
import { encodeFloats, FLOAT_DTYPE_BYTES, type FloatDType } from './float-codecs.js';
import { hfTensorName } from './hf-source.js';
import { safetensorsHeader, type SafetensorsTensor } from './safetensors.js';
import { hfRotateHalfRow, isRopeRotated, type ModelSource, tensorShape } from './source.js';
import type { TensorName } from './weights.js';

const TORCH_DTYPE: Readonly<Record<FloatDType, string>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/** Values encoded per piece written (4 MiB of float32). */
const WRITE_CHUNK_VALUES = 1 << 20;

/** config.json for LlamaForCausalLM. */
export function hfConfigJson(c: ModelConfig, dtype: FloatDType, bosId: number, eosId: number): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: c.dim,
    intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    head_dim: headSize(c),
    vocab_size: c.vocabSize,
    max_position_embeddings: c.seqLen,
    rms_norm_eps: normEps(c),
    rope_theta: ropeTheta(c),
    rope_scaling: null,
    tie_word_embeddings: c.sharedClassifier,
    hidden_act: 'silu',
    attention_bias: false,
    attention_dropout: 0.0,
    mlp_bias: false,
    initializer_range: 0.02,
    pretraining_tp: 1,
    use_cache: true,
    bos_token_id: bosId,
    eos_token_id: eosId,
    torch_dtype: TORCH_DTYPE[dtype],
  };
}

/** generation_config.json: the special tokens generation uses. */
export function hfGenerationConfigJson(bosId: number, eosId: number): Record<string, unknown> {
  return { bos_token_id: bosId, eos_token_id: eosId };
}

/** The tensors of a Hugging Face LlamaForCausalLM, in transformers' order: [engine name, layer]. */
export function hfTensorList(c: ModelConfig): Array<[TensorName, number]> {
  const list: Array<[TensorName, number]> = [['tokenEmbedding', 0]];
  for (let l = 0; l < c.nLayers; l++) {
    for (const t of ['wq', 'wk', 'wv', 'wo', 'w1', 'w3', 'w2', 'rmsAtt', 'rmsFfn'] as const) list.push([t, l]);
  }
  list.push(['rmsFinal', 0]);
  if (!c.sharedClassifier) list.push(['wcls', 0]);
  return list;
}

/** Writes `source`'s weights as one safetensors file of `dtype` (atomically). */
export function writeHfSafetensors(path: string, source: ModelSource, dtype: FloatDType): void {
  const c = source.config;
  const hs = headSize(c);
  let floats = new Float32Array(0);
  let rowsBuf = new Float32Array(0);
  const tensors: SafetensorsTensor[] = hfTensorList(c).map(([name, layer]) => {
    const { rows, cols } = tensorShape(c, name);
    const rotated = isRopeRotated(name);
    return {
      name: hfTensorName(name, layer),
      dtype,
      shape: rows === 1 ? [cols] : [rows, cols],
      *bytes(): Generator<Uint8Array> {
        // whole heads at a time for Wq/Wk (their rows are reordered within each head)
        const unit = rotated ? hs : 1;
        const step = Math.max(unit, Math.floor(WRITE_CHUNK_VALUES / cols / unit) * unit);
        if (floats.length < Math.min(rows, step) * cols) floats = new Float32Array(Math.min(rows, step) * cols);
        for (let r = 0; r < rows; r += step) {
          const n = Math.min(step, rows - r);
          let values = floats.subarray(0, n * cols);
          source.read(name, layer, r, n, values);
          for (let i = 0; i < values.length; i++) {
            if (!Number.isFinite(values[i]!)) throw new LlamaError(`${source.path}: ${hfTensorName(name, layer)} row ${r + Math.floor(i / cols)}: value ${i % cols} is not a finite number`);
          }
          if (rotated) {
            if (rowsBuf.length < values.length) rowsBuf = new Float32Array(floats.length);
            const out = rowsBuf.subarray(0, values.length);
            for (let e = 0; e < n; e++) {
              const p = hfRotateHalfRow(r + e, hs) - r; // HF row (within this chunk of whole heads)
              out.set(values.subarray(e * cols, (e + 1) * cols), p * cols);
            }
            values = out;
          }
          const bytes = new Uint8Array(values.length * FLOAT_DTYPE_BYTES[dtype]);
          encodeFloats(dtype, values, bytes, values.length);
          yield bytes;
        }
      },
    };
  });
  writeFileAtomic(path, (function* () {
    yield safetensorsHeader(tensors);
    for (const t of tensors) yield* t.bytes();
  })());
}
