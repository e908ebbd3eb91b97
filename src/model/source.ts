// A model format is a reader into the engine's layout. Whatever a file stores — llama2.c's `.bin`
// (float32 or Q8_0), a Hugging Face folder of safetensors (F32/F16/BF16, q/k rows in rotate-half
// order), a Meta folder of torch pickles split over model-parallel shards, a GGUF file — it is
// opened as a ModelSource, which answers in the engine's terms:
//
//   config      the ModelConfig (with normEps / ropeTheta when the file records them)
//   read        rows [row, row+rows) of engine tensor `name` in layer `layer`, as float32, in the
//               engine's layout: matrices (out, in), one row per output; norms are one row; q and
//               k rows in llama2.c's interleaved RoPE order (see hfRotateHalfRow below)
//   readQ8      (optional) the stored Q8_0 values of a matrix as they are, when the file stores
//               Q8_0 the engine can take without requantizing (llama2.c v2 today)
//
// The loader (src/infer/load.ts) streams a source tensor by tensor into the kernels' memory and
// never asks which format it came from; nothing below the source knows about files.
//
// Engine tensors, per layer (TensorName of weights.ts):
//   rmsAtt, rmsFfn (1, dim)   wq (dim, dim)   wk, wv (kvDim, dim)   wo (dim, dim)
//   w1, w3 (hidden, dim)      w2 (dim, hidden)
// and once: tokenEmbedding (vocab, dim), rmsFinal (1, dim), wcls (vocab, dim) when not shared.

import { type ModelConfig, kvDim } from './config.js';
import type { TensorName } from './weights.js';

/** How a tensor is stored in the file ('F32', 'F16', 'BF16', 'Q8_0', or a GGUF type name). */
export type StorageType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | (string & {});

/** A tokenizer that came with the model: a file beside it (tokenizer.bin, .model, tokenizer.json). */
export interface TokenizerRef {
  readonly path: string;
}

/** A chat template that came with the model (tokenizer_config.json's `chat_template`). */
export interface ChatTemplateRef {
  /** The Jinja source. */
  readonly template: string;
  /** What the template's `bos_token` / `eos_token` variables hold. */
  readonly bosToken: string;
  readonly eosToken: string;
  /** Where it came from, for error messages. */
  readonly file: string;
}

export interface ModelSource {
  /** The file or folder it was opened from. */
  readonly path: string;
  /** The format for people (`llama2 info`): 'llama2.c v1 (float32)', 'Hugging Face safetensors (BF16, 5 shards)', … */
  readonly format: string;
  readonly config: ModelConfig;
  /** How `name` is stored (undefined for wcls when the classifier is shared). */
  storage(name: TensorName): StorageType | undefined;
  /** The tokenizer found with the model, if any. */
  readonly tokenizer?: TokenizerRef;
  /** The chat template found with the model, if any. */
  readonly chatTemplate?: ChatTemplateRef;
  /**
   * Writes rows [row, row + rows) of tensor `name`, layer `layer` (0 for tensors that are not
   * per layer) into dst[0 .. rows·cols) as float32, in the engine's layout. Any row range may be
   * asked for; a source's scratch grows to the largest request (the loader asks for a few MiB).
   */
  read(name: TensorName, layer: number, row: number, rows: number, dst: Float32Array): void;
  /** The Q8_0 group size when readQ8 is offered: matrices are stored as Q8_0 the engine runs as they are. */
  readonly q8GroupSize?: number;
  /**
   * Values [first, first + count) of matrix `name`, layer `layer` — groups of q8GroupSize run over
   * the flattened (rows × cols) matrix, so first and count are multiples of it — as int8 values
   * into q[0 .. count) and one float32 scale per group into s[0 .. count / q8GroupSize).
   */
  readQ8?(name: TensorName, layer: number, first: number, count: number, q: Int8Array, s: Float32Array): void;
  /** Releases the files. */
  close(): void;
}

/** rows × cols of one layer's `name`, and how many layers (1 for tensors that are not per layer). */
export interface TensorShape {
  readonly layers: number;
  readonly rows: number;
  readonly cols: number;
}

export function tensorShape(c: ModelConfig, name: TensorName): TensorShape {
  const L = c.nLayers;
  switch (name) {
    case 'rmsAtt': case 'rmsFfn': return { layers: L, rows: 1, cols: c.dim };
    case 'rmsFinal': return { layers: 1, rows: 1, cols: c.dim };
    case 'tokenEmbedding': case 'wcls': return { layers: 1, rows: c.vocabSize, cols: c.dim };
    case 'wq': case 'wo': return { layers: L, rows: c.dim, cols: c.dim };
    case 'wk': case 'wv': return { layers: L, rows: kvDim(c), cols: c.dim };
    case 'w1': case 'w3': return { layers: L, rows: c.hiddenDim, cols: c.dim };
    case 'w2': return { layers: L, rows: c.dim, cols: c.hiddenDim };
  }
}

/** The engine tensors of a model in loading order (v1 order; wcls only when not shared). */
export const NORM_TENSORS: readonly TensorName[] = ['rmsAtt', 'rmsFfn', 'rmsFinal'];
export const MATRIX_TENSORS: readonly TensorName[] = ['tokenEmbedding', 'wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3', 'wcls'];

// ----------------------------------------------------------------------------------------------
// RoPE row order: the one place Hugging Face's rotate-half layout is undone (and redone, to write).
//
// llama2.c (and Meta's checkpoints) rotate adjacent pairs: within each head of size hs, the pair
// (q[2i], q[2i+1]) turns by the angle pos·θ^(-2i/hs). Hugging Face's LlamaAttention rotates
// "halves" instead: the pair is (q[i], q[i + hs/2]). transformers' conversion script makes the
// two agree by permuting the rows of Wq and Wk (Wk with the kv-head count):
//
//   permute(W, heads) = W.view(heads, hs/2, 2, cols).transpose(1, 2).reshape(heads·hs, cols)
//
// so HF row h·hs + j·hs/2 + i holds llama2.c row h·hs + 2i + j (j ∈ {0, 1}, i < hs/2). Read the
// other way: llama2.c row r = h·hs + 2i + j is HF row h·hs + j·hs/2 + i. Both directions are this
// one function of the row index.

/** The Hugging Face (rotate-half) row that holds llama2.c's (interleaved) row `row` of Wq or Wk. */
export function hfRotateHalfRow(row: number, headSize: number): number {
  const h = Math.floor(row / headSize);
  const r = row - h * headSize;
  const half = headSize / 2;
  return h * headSize + (r & 1) * half + (r >> 1);
}

/** True for the tensors whose rows the rotate-half order permutes. */
export function isRopeRotated(name: TensorName): boolean {
  return name === 'wq' || name === 'wk';
}
