// What `llama2 bench` times (src/infer/bench.ts), checked against an engine whose cost is known:
// every token takes MS milliseconds of work, done when the engine does it. Like the WebGPU engine,
// this one only queues the tokens given to prefill() and does their work with the next forward(),
// so a prefill timed around the prefill() call alone would report millions of tokens per second
// (the WebGPU backend once showed ~1.19M tok/s) and charge the prompt to the first decode step.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { benchmark } from '../src/infer/bench.js';
import type { InferenceEngine } from '../src/infer/engine.js';
import type { ModelConfig } from '../src/model/config.js';

const MS = 2;

class DeferringEngine implements InferenceEngine {
  readonly config: ModelConfig = { dim: 8, hiddenDim: 16, nLayers: 1, nHeads: 2, nKvHeads: 2, vocabSize: 32, seqLen: 64, sharedClassifier: true };
  readonly backend = 'deferring (test)';
  /** Every position fed, in order, and which call fed it. */
  readonly fed: Array<{ pos: number; call: 'advance' | 'prefill' | 'forward' }> = [];
  private queued = 0;
  private readonly logits = new Float32Array(32).map((_, i) => Math.sin(i));

  advance(_token: number, pos: number): void {
    this.fed.push({ pos, call: 'advance' });
    this.queued++;
  }

  prefill(tokens: ArrayLike<number>, pos: number): void {
    for (let i = 0; i < tokens.length; i++) this.fed.push({ pos: pos + i, call: 'prefill' });
    this.queued += tokens.length;
  }

  forward(_token: number, pos: number): Float32Array {
    this.fed.push({ pos, call: 'forward' });
    const until = performance.now() + (this.queued + 1) * MS;
    while (performance.now() < until) { /* the queued tokens' work and this one's */ }
    this.queued = 0;
    return this.logits;
  }

  shift(): void {}
  session(): InferenceEngine {
    return new DeferringEngine();
  }
}

test('bench: the prefill is timed until the prompt\'s logits are out, even on an engine that defers the prompt\'s work', () => {
  const engine = new DeferringEngine();
  const promptLen = 16;
  const steps = 4;
  const r = benchmark(engine, promptLen, steps, { warmup: 0, repeats: 1, temperature: 0 });
  // 16 tokens of 2 ms each cannot take less than 32 ms: at most 500 tok/s (a wall-clock bound, never flaky)
  assert.ok(r.prefillTokensPerSecond <= 1000 / MS, `prefill ${r.prefillTokensPerSecond.toFixed(0)} tok/s, but each token takes ${MS} ms`);
  assert.ok(r.decodeTokensPerSecond <= 1000 / MS, `decode ${r.decodeTokensPerSecond.toFixed(0)} tok/s`);
  // positions 0 … P+N-1, each once, in order: the prompt by prefill() but its last token, whose logits start the decode
  assert.deepEqual(engine.fed.map((f) => f.pos), Array.from({ length: promptLen + steps }, (_, i) => i));
  assert.deepEqual(engine.fed.map((f) => f.call), [...Array<'prefill'>(promptLen - 1).fill('prefill'), ...Array<'forward'>(steps + 1).fill('forward')]);
});

test('bench: without a prompt, decoding starts from BOS at position 0', () => {
  const engine = new DeferringEngine();
  const r = benchmark(engine, 0, 3, { warmup: 0, repeats: 1, temperature: 0 });
  assert.equal(r.prefillTokensPerSecond, 0);
  assert.deepEqual(engine.fed, [0, 1, 2].map((pos) => ({ pos, call: 'forward' })));
});
