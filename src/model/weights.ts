// All parameters of a model live in one Float32Array, in llama2.c's v1 file order. A table of
// tensors (name, shape, offset) carves it into views, as llm.c does: a v1 file loads with a single
// read, the optimiser is one loop over one array, and gradients and AdamW moments use the same
// table over buffers of the same size.

import { type ModelConfig, kvDim } from './config.js';

export type TensorName =
  | 'rmsAtt' | 'rmsFfn' | 'rmsFinal' | 'tokenEmbedding'
  | 'wq' | 'wk' | 'wv' | 'wo' | 'w1' | 'w2' | 'w3' | 'wcls';

export interface TensorSpec {
  readonly name: TensorName;
  /** Shape of the stacked tensor; per-layer tensors have nLayers first. Matrices are (out, in). */
  readonly shape: readonly number[];
  /** True when the first axis is the layer. */
  readonly perLayer: boolean;
  /** Offset in floats from the start of the parameter buffer. */
  readonly offset: number;
  /** Number of floats. */
  readonly size: number;
  /** AdamW decays tensors whose per-layer shape has two or more dimensions (matrices, not norms). */
  readonly decay: boolean;
}

/** The tensors of a model in v1 order; `wcls` is present only when the classifier is not shared. */
export function parameterTable(c: ModelConfig): TensorSpec[] {
  const { dim, hiddenDim: h, nLayers: L, vocabSize: V } = c;
  const kv = kvDim(c);
  const shapes: Array<[TensorName, number[], boolean]> = [
    ['rmsAtt', [L, dim], true],
    ['rmsFfn', [L, dim], true],
    ['rmsFinal', [dim], false],
    ['tokenEmbedding', [V, dim], false],
    ['wq', [L, dim, dim], true],
    ['wk', [L, kv, dim], true],
    ['wv', [L, kv, dim], true],
    ['wo', [L, dim, dim], true],
    ['w1', [L, h, dim], true],
    ['w2', [L, dim, h], true],
    ['w3', [L, h, dim], true],
  ];
  if (!c.sharedClassifier) shapes.push(['wcls', [V, dim], false]);
  let offset = 0;
  return shapes.map(([name, shape, perLayer]) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const spec: TensorSpec = { name, shape, perLayer, offset, size, decay: shape.length - (perLayer ? 1 : 0) >= 2 };
    offset += size;
    return spec;
  });
}

/** Number of floats in the parameter buffer. */
export function parameterCount(c: ModelConfig): number {
  const t = parameterTable(c);
  const last = t[t.length - 1]!;
  return last.offset + last.size;
}

/** Views over one parameter buffer. Shapes as in parameterTable, (out, in) for matrices. */
export interface TransformerWeights {
  readonly config: ModelConfig;
  /** Every parameter, v1 order. */
  readonly data: Float32Array;
  readonly rmsAtt: Float32Array; //         (layer, dim)
  readonly rmsFfn: Float32Array; //         (layer, dim)
  readonly rmsFinal: Float32Array; //       (dim)
  readonly tokenEmbedding: Float32Array; // (vocab, dim)
  readonly wq: Float32Array; //             (layer, nHeads * headSize, dim)
  readonly wk: Float32Array; //             (layer, nKvHeads * headSize, dim)
  readonly wv: Float32Array; //             (layer, nKvHeads * headSize, dim)
  readonly wo: Float32Array; //             (layer, dim, nHeads * headSize)
  readonly w1: Float32Array; //             (layer, hidden, dim)
  readonly w2: Float32Array; //             (layer, dim, hidden)
  readonly w3: Float32Array; //             (layer, hidden, dim)
  /** The classifier (vocab, dim): the token embedding itself when shared. */
  readonly wcls: Float32Array;
}

/** Carves `data` (parameterCount(c) floats, v1 order) into named tensor views. */
export function weightsView(c: ModelConfig, data: Float32Array): TransformerWeights {
  const n = parameterCount(c);
  if (data.length !== n) throw new RangeError(`parameter buffer has ${data.length} floats, the model needs ${n}`);
  const views: Partial<Record<TensorName, Float32Array>> = {};
  for (const t of parameterTable(c)) views[t.name] = data.subarray(t.offset, t.offset + t.size);
  return {
    config: c,
    data,
    rmsAtt: views.rmsAtt!, rmsFfn: views.rmsFfn!, rmsFinal: views.rmsFinal!, tokenEmbedding: views.tokenEmbedding!,
    wq: views.wq!, wk: views.wk!, wv: views.wv!, wo: views.wo!, w1: views.w1!, w2: views.w2!, w3: views.w3!,
    wcls: views.wcls ?? views.tokenEmbedding!,
  };
}

/** A fresh, zeroed parameter buffer (optionally inside a caller-provided shared buffer). */
export function allocateWeights(c: ModelConfig, buffer?: ArrayBufferLike, byteOffset = 0): TransformerWeights {
  const n = parameterCount(c);
  const data = buffer ? new Float32Array(buffer, byteOffset, n) : new Float32Array(n);
  return weightsView(c, data);
}
