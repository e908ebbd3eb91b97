// Timing the engine: a prefill of P forced tokens, then N decoded (sampled) tokens, never stopping
// at BOS, as `llama2 bench` reports it.

import type { Transformer } from './forward.js';
import { Sampler } from './sampler.js';

export interface BenchResult {
  readonly promptTokens: number;
  readonly decodeTokens: number;
  readonly prefillTokensPerSecond: number;
  readonly decodeTokensPerSecond: number;
  readonly msPerToken: number;
  /** Peak resident set size of the process, in bytes. */
  readonly peakRssBytes: number;
}

/** Runs P prefill positions then N decode positions (P + N ≤ seqLen) and times both phases. */
export function benchmark(transformer: Transformer, promptLen: number, steps: number, seed = 1): BenchResult {
  const c = transformer.config;
  const sampler = new Sampler(c.vocabSize, { temperature: 1, topp: 0.9, seed });
  // A fixed, varied prompt: BOS, then ids spread over the vocabulary.
  let token = 1;
  let pos = 0;
  const t0 = performance.now();
  for (; pos < promptLen; pos++) {
    transformer.forward(token, pos);
    token = (pos * 7919 + 13) % c.vocabSize;
  }
  const t1 = performance.now();
  for (let i = 0; i < steps; i++, pos++) token = sampler.sample(transformer.forward(token, pos));
  const t2 = performance.now();
  return {
    promptTokens: promptLen,
    decodeTokens: steps,
    prefillTokensPerSecond: promptLen > 0 ? (promptLen / (t1 - t0)) * 1000 : 0,
    decodeTokensPerSecond: steps > 0 ? (steps / (t2 - t1)) * 1000 : 0,
    msPerToken: steps > 0 ? (t2 - t1) / steps : 0,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}
