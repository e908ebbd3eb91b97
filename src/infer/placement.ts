// Where a model's tensors go among the kernels' memories. A WebAssembly memory holds at most 4 GiB
// (src/kernels/wasm.ts), so a larger model — Llama-2-7B as int8 is 7 GB, TinyLlama-1.1B as float32
// 4.4 GB — is cut into groups of whole layers, one group per memory, filled in order:
//
//   memory 0:  [embedding, if not shared]  layer 0 … layer a-1
//   memory 1:  layer a … layer b-1
//   …
//   memory k:  … layer L-1  [final norm + classifier (+ the embedding when it is the classifier)]
//
// Everything one kernel call touches must be in one memory, so each memory also holds what its
// layers run with: per session, the activation buffers (x, xb, q, … — a few hundred KB), the block
// buffers of a batched prefill (prefill.ts's prefillRows: 24 MB for Llama-2-7B) and the KV caches of its
// layers (2 · context · kvDim floats per layer: the part that grows with --ctx), the fused forward
// pass's plan and RoPE table; the classifier's memory the logits and the sampler's scratch. The Transformer (forward.ts) copies the residual stream from one memory to the next, a
// few KB per token. A part that does not fit an empty memory by itself (a 32000 × 8192 float32
// classifier) is an OutOfMemoryError saying what would fit.
//
// Kernels with one memory of no fixed size (the TypeScript kernels) put everything in memory 0;
// with memory64 the WebAssembly kernels will too (their memoryBytes then exceeds the model).

import { OutOfMemoryError } from '../errors.js';
import { type ModelConfig, headSize, kvDim } from '../model/config.js';
import { tensorShape } from '../model/source.js';
import type { TensorName } from '../model/weights.js';
import type { KernelMemories } from '../kernels/types.js';
import { fusedPlanBytes, runStateFloats } from './forward.js';
import { blockBufferFloats, prefillRows } from './prefill.js';

/** Which memory each part of a model goes to. */
export interface Placement {
  /** The memory of each layer (its norms, matrices, and per session its KV caches). */
  readonly layers: readonly number[];
  readonly embedding: number;
  /** The memory of the final norm and the classifier (and of the logits). */
  readonly head: number;
  /** Memories used (the highest index + 1). */
  readonly memories: number;
}

/** Bytes each allocation rounds up to (the kernels' alignment). */
const ALIGN = 64;
/** Room left in every memory for what the kernels add on their own (control blocks, packing buffers): 1 MiB of 4 GiB. */
const SLACK_SHARE = 1 / 4096;

const aligned = (bytes: number): number => Math.ceil(bytes / ALIGN) * ALIGN;

/** Bytes of one layer's (or the whole, for tensors not per layer) `name` as loaded: float32, or Q8_0 values + scales. */
function tensorBytes(c: ModelConfig, name: TensorName, groupSize: number): number {
  const { rows, cols } = tensorShape(c, name);
  const numel = rows * cols;
  if (groupSize === 0 || rows === 1) return aligned(4 * numel); // norms stay float32
  return aligned(numel) + aligned((4 * numel) / groupSize);
}

/** Bytes one layer's weights take. */
export function layerWeightBytes(c: ModelConfig, groupSize: number): number {
  return (['rmsAtt', 'wq', 'wk', 'wv', 'wo', 'rmsFfn', 'w1', 'w2', 'w3'] as const).reduce((sum, name) => sum + tensorBytes(c, name, groupSize), 0);
}

/**
 * Places a model of config `c` (seqLen = the context the engine runs with) whose matrices are Q8_0
 * of `groupSize` (0: float32) for `sessions` sessions (each with its own KV caches) in the memories
 * of `kernels`, filling memory 0 first.
 */
export function placeModel(c: ModelConfig, groupSize: number, kernels: Partial<KernelMemories>, sessions = 1): Placement {
  const L = c.nLayers;
  if (kernels.memoryBytes === undefined || kernels.memoryAvailable === undefined) {
    return { layers: new Array<number>(L).fill(0), embedding: 0, head: 0, memories: 1 };
  }
  const available = kernels.memoryAvailable.bind(kernels);
  // what every memory holds per session whatever its layers: the activations and a fused plan
  // (and the kernels' RoPE table of every position, which grows by doubling: up to 4 tables' worth,
  // and per session the block buffers of a batched prefill, prefill.ts)
  const rows = prefillRows(c.dim, c.hiddenDim, kvDim(c), c.seqLen);
  const widest = Math.max(c.dim, c.hiddenDim);
  const blockBytes = 4 * blockBufferFloats(c.dim, c.hiddenDim, kvDim(c), rows)
    + (groupSize > 0 ? aligned(rows * widest) + aligned((4 * rows * widest) / groupSize) : 0) + 3 * ALIGN;
  // (the block attention's score buffers: up to 64 rows of the context per thread, a few threads)
  const scores = 8 * aligned(4 * 64 * c.seqLen);
  const perMemory = sessions * (4 * runStateFloats(c, groupSize, 0, false) + ALIGN + fusedPlanBytes(c, 0) + blockBytes)
    + scores + 4 * 4 * c.seqLen * headSize(c) + Math.max(1 << 16, kernels.memoryBytes * SLACK_SHARE);
  const perLayer = layerWeightBytes(c, groupSize) + sessions * (4 * 2 * c.seqLen * kvDim(c) + 4 * 18);
  const embedding = tensorBytes(c, 'tokenEmbedding', groupSize);
  // the final norm, the classifier (the embedding when shared), the logits (of one token, and of a
  // prefill block for evaluation) and the sampler's scratch
  const head = tensorBytes(c, 'rmsFinal', 0) + (c.sharedClassifier ? embedding : tensorBytes(c, 'wcls', groupSize))
    + sessions * (aligned(4 * c.vocabSize) + aligned(4 * rows * c.vocabSize)) + aligned(16 * c.vocabSize) + (1 << 16);

  // (a memory not made yet has all its room; memories made already — another model's — may have less)
  const empty = available(Number.MAX_SAFE_INTEGER) - perMemory;
  let memory = 0;
  let free = available(0) - perMemory;
  /** The memory `bytes` more go to: the current one, else the next with room. */
  const place = (bytes: number, what: string): number => {
    if (bytes > empty) {
      throw new OutOfMemoryError(`${what} takes ${(bytes / 2 ** 20).toFixed(1)} MiB, more than one WebAssembly memory holds (${(kernels.memoryBytes! / 2 ** 20).toFixed(0)} MiB with its share of activations)`);
    }
    while (bytes > free) free = available(++memory) - perMemory;
    free -= bytes;
    return memory;
  };
  const embeddingMemory = c.sharedClassifier ? -1 : place(embedding, 'the token embedding');
  const layers = Array.from({ length: L }, (_, l) => place(perLayer, `layer ${l}`));
  const headMemory = place(head, 'the classifier');
  return { layers, embedding: c.sharedClassifier ? headMemory : embeddingMemory, head: headMemory, memories: memory + 1 };
}
