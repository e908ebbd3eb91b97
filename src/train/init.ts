// Initial weights of a model trained from scratch, as llama2.c's model.py initialises them:
// every linear layer and the token embedding from N(0, 0.02²), the residual output projections
// (attention wo and feed-forward w3) from N(0, (0.02/√(2·n_layers))²), RMSNorm weights 1.
// (model.py scales the parameters whose names end in "w3.weight" and "wo.weight".)
// The numbers come from our seeded generator, so they are reproducible but not PyTorch's.

import type { ModelConfig } from '../model/config.js';
import { allocateWeights, type TransformerWeights } from '../model/weights.js';
import { Rng } from './rng.js';

export const INIT_STD = 0.02;

/** Fresh float32 weights for `config`, drawn from a generator seeded with `seed`. */
export function initWeights(config: ModelConfig, seed: number): TransformerWeights {
  const w = allocateWeights(config);
  const rng = new Rng(seed);
  const normal = (t: Float32Array, std: number): void => {
    for (let i = 0; i < t.length; i++) t[i] = rng.nextNormal() * std;
  };
  const residualStd = INIT_STD / Math.sqrt(2 * config.nLayers);
  w.rmsAtt.fill(1);
  w.rmsFfn.fill(1);
  w.rmsFinal.fill(1);
  normal(w.tokenEmbedding, INIT_STD);
  normal(w.wq, INIT_STD);
  normal(w.wk, INIT_STD);
  normal(w.wv, INIT_STD);
  normal(w.wo, residualStd);
  normal(w.w1, INIT_STD);
  normal(w.w2, INIT_STD);
  normal(w.w3, residualStd);
  if (!config.sharedClassifier) normal(w.wcls, INIT_STD);
  return w;
}
