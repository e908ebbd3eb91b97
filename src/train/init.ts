// Initial weights of a model trained from scratch, as llama2.c's model.py initialises them:
// every linear layer and the token embedding from N(0, 0.02²), the residual output projections
// (attention wo and feed-forward w3) from N(0, (0.02/√(2·n_layers))²), RMSNorm weights 1.
// (model.py scales the parameters whose names end in "w3.weight" and "wo.weight".)
// The numbers come from our seeded generator, so they are reproducible but not PyTorch's.
//
// The matrices are drawn in one fixed order — embedding, wq, wk, wv, wo, w1, w2, w3 (each over
// all layers), classifier — which is also the order every llama2.c format stores them in; so
// `llama2 init` can write a 7B checkpoint as it draws it (initReader), never holding it in memory.

import type { WeightReader } from '../model/checkpoint.js';
import type { ModelConfig } from '../model/config.js';
import { tensorShape } from '../model/source.js';
import { allocateWeights, parameterTable, type TensorName, type TransformerWeights } from '../model/weights.js';
import { Rng } from './rng.js';

export const INIT_STD = 0.02;

const DRAW_ORDER: readonly TensorName[] = ['tokenEmbedding', 'wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3', 'wcls'];

/**
 * The initial weights of `config` as a WeightReader: norms are 1 in any order; the matrices must be
 * read in DRAW_ORDER, rows in order (the checkpoint writers do), or it throws.
 */
export function initReader(config: ModelConfig, seed: number): WeightReader {
  const rng = new Rng(seed);
  const residualStd = INIT_STD / Math.sqrt(2 * config.nLayers);
  const order = DRAW_ORDER.filter((name) => name !== 'wcls' || !config.sharedClassifier);
  // where the next draw goes: tensor order[next], layer, row
  let next = 0, layer = 0, row = 0;
  return {
    config,
    read(name, l, r, rows, dst) {
      const { layers, rows: perLayer, cols } = tensorShape(config, name);
      if (name === 'rmsAtt' || name === 'rmsFfn' || name === 'rmsFinal') {
        dst.fill(1, 0, rows * cols);
        return;
      }
      if (order[next] !== name || l !== layer || r !== row) throw new Error(`initReader: ${name} layer ${l} row ${r} asked out of the drawing order`);
      const std = name === 'wo' || name === 'w3' ? residualStd : INIT_STD;
      for (let i = 0, n = rows * cols; i < n; i++) dst[i] = rng.nextNormal() * std;
      row += rows;
      if (row === perLayer) [row, layer] = [0, layer + 1];
      if (layer === layers) [layer, next] = [0, next + 1];
    },
  };
}

/** Fresh float32 weights for `config`, drawn from a generator seeded with `seed`. */
export function initWeights(config: ModelConfig, seed: number): TransformerWeights {
  const w = allocateWeights(config);
  const reader = initReader(config, seed);
  for (const t of parameterTable(config)) {
    const { layers, rows } = tensorShape(config, t.name);
    const per = t.size / layers;
    for (let l = 0; l < layers; l++) reader.read(t.name, l, 0, rows, w[t.name].subarray(l * per, (l + 1) * per));
  }
  return w;
}
