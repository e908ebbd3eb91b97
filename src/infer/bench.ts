// Timing the engine: a prefill of P forced tokens, then N decoded (sampled) tokens, never stopping
// at BOS, as `llama2 bench` reports it. The prefill is timed until the prompt's last logits are
// out — what a generation waits for before its first sample — so an engine that only queues the
// prompt's tokens (WebGPU sends advance()d tokens as one batch with the next forward) is timed
// with their work done, not credited with it for free. `repeats` runs of the same sequence are timed (each from
// position 0, with the same seed) after `warmup` untimed ones; the median run is reported. The
// warm-up lets V8 optimise the JavaScript around the kernels, as it has in any long generation.

import type { InferenceEngine } from './engine.js';
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

export interface BenchOptions {
  /** Untimed runs first (default 1). */
  readonly warmup?: number;
  /** Timed runs; the median is reported (default 3). */
  readonly repeats?: number;
  readonly seed?: number;
  /** The sampler's settings (default: run's, temperature 1 and top-p 0.9; temperature 0 = greedy). */
  readonly temperature?: number;
  readonly topp?: number;
}

/** Runs P prefill positions then N decode positions (P + N ≤ seqLen) and times both phases. */
export function benchmark(transformer: InferenceEngine, promptLen: number, steps: number, options: BenchOptions = {}): BenchResult {
  const warmup = options.warmup ?? 1;
  const repeats = Math.max(1, options.repeats ?? 3);
  for (let i = 0; i < warmup; i++) timeOnce(transformer, promptLen, steps, options);
  const runs = Array.from({ length: repeats }, () => timeOnce(transformer, promptLen, steps, options));
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const prefillMs = median(runs.map((r) => r.prefillMs));
  const decodeMs = median(runs.map((r) => r.decodeMs));
  return {
    promptTokens: promptLen,
    decodeTokens: steps,
    prefillTokensPerSecond: promptLen > 0 ? (promptLen / prefillMs) * 1000 : 0,
    decodeTokensPerSecond: steps > 0 ? (steps / decodeMs) * 1000 : 0,
    msPerToken: steps > 0 ? decodeMs / steps : 0,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}

/** One timed run: milliseconds of the prefill and of the decode phase. */
function timeOnce(transformer: InferenceEngine, promptLen: number, steps: number, options: BenchOptions): { prefillMs: number; decodeMs: number } {
  const c = transformer.config;
  const sampler = new Sampler(c.vocabSize, { temperature: options.temperature ?? 1, topp: options.topp ?? 0.9, seed: options.seed ?? 1 });
  // A fixed, varied prompt: BOS, then ids spread over the vocabulary.
  const prompt = Array.from({ length: promptLen }, (_, pos) => (pos === 0 ? 1 : ((pos - 1) * 7919 + 13) % c.vocabSize));
  const head = prompt.slice(0, Math.max(0, promptLen - 1));
  let token = 1;
  let pos = promptLen;
  let logits: Float32Array | undefined;
  const t0 = performance.now();
  if (promptLen > 0) {
    // as a generation feeds its prompt: in blocks without logits, then the last token's
    transformer.prefill(head, 0);
    logits = transformer.forward(prompt[promptLen - 1]!, promptLen - 1);
  }
  const t1 = performance.now();
  for (let i = 0; i < steps; i++, pos++) {
    // each step samples the logits before it (BOS first when there was no prompt) and runs the token
    token = logits === undefined ? 1 : sampler.sample(logits);
    logits = transformer.forward(token, pos);
  }
  const t2 = performance.now();
  return { prefillMs: t1 - t0, decodeMs: t2 - t1 };
}
