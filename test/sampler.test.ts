// The sampler against run.c's definitions: xorshift64* checked against a BigInt transcription of
// the C code, and the sampling rules on hand-made distributions.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sampler, Xorshift64Star, argmax, resolveSeed, softmaxF32 } from '../src/infer/sampler.js';

/** run.c's random_u32, transcribed with BigInt (unsigned long long arithmetic). */
function cRandomU32(state: { s: bigint }): number {
  const M = 0xffffffffffffffffn;
  state.s ^= state.s >> 12n;
  state.s ^= (state.s << 25n) & M;
  state.s ^= state.s >> 27n;
  return Number(((state.s * 0x2545f4914f6cdd1dn) & M) >> 32n);
}

test('xorshift64* equals the C generator bit for bit', () => {
  for (const seed of [1n, 7n, 42n, 123n, 2n ** 64n - 1n, 2n ** 63n + 12345n, 0xdeadbeefcafen]) {
    const ours = new Xorshift64Star(seed);
    const c = { s: seed };
    for (let i = 0; i < 5000; i++) assert.equal(ours.nextU32(), cRandomU32(c), `seed ${seed}, draw ${i}`);
    assert.equal(ours.state, c.s);
  }
  const r = new Xorshift64Star(42n);
  const c = { s: 42n };
  for (let i = 0; i < 100; i++) assert.equal(r.nextF32(), (cRandomU32(c) >>> 8) / 16777216);
});

test('seeds: 0 means the clock, negative seeds wrap to uint64 as C converts them', () => {
  const now = BigInt(Math.floor(Date.now() / 1000));
  const s = resolveSeed(0);
  assert.ok(s >= now && s <= now + 2n);
  assert.equal(resolveSeed(-1), 2n ** 64n - 1n);
  assert.equal(resolveSeed(42), 42n);
});

test('argmax takes the first maximum; temperature 0 is greedy', () => {
  assert.equal(argmax(new Float32Array([1, 3, 3, 2]), 4), 1);
  const s = new Sampler(4, { temperature: 0, seed: 1 });
  assert.equal(s.sample(new Float32Array([0.1, -2, 5, 4.9])), 2);
});

test('float32 softmax sums to 1 and keeps order', () => {
  const x = new Float32Array([1, 2, 3, 4, 1000]);
  softmaxF32(x, 5);
  assert.ok(Math.abs(x.reduce((a, b) => a + b, 0) - 1) < 1e-6);
  assert.ok(x[4]! > 0.99);
});

/** The empirical distribution of many draws. */
function histogram(sampler: Sampler, logits: number[], draws: number): number[] {
  const counts = new Array<number>(logits.length).fill(0);
  const buf = new Float32Array(logits.length);
  for (let i = 0; i < draws; i++) {
    buf.set(logits);
    counts[sampler.sample(buf)]!++;
  }
  return counts.map((c) => c / draws);
}

test('multinomial sampling follows softmax(logits / T)', () => {
  const logits = [Math.log(0.5), Math.log(0.3), Math.log(0.2)];
  const h = histogram(new Sampler(3, { temperature: 1, topp: 0, seed: 7 }), logits, 20000);
  [0.5, 0.3, 0.2].forEach((p, i) => assert.ok(Math.abs(h[i]! - p) < 0.015, `p[${i}] ${h[i]} vs ${p}`));
});

test('top-p keeps the smallest nucleus whose mass exceeds p, renormalised', () => {
  // probs 0.5, 0.3, 0.15, 0.05: with p = 0.7 the nucleus is {0, 1} (0.8 > 0.7), drawn 5:3
  const logits = [0.5, 0.3, 0.15, 0.05].map(Math.log);
  const h = histogram(new Sampler(4, { temperature: 1, topp: 0.7, seed: 3 }), logits, 20000);
  assert.equal(h[2], 0);
  assert.equal(h[3], 0);
  assert.ok(Math.abs(h[0]! - 0.625) < 0.015, `p[0] ${h[0]}`);
  // equal probabilities keep index order (a stable sort, as glibc's qsort here): with four tokens
  // at 0.25 and p = 0.3 the nucleus is the first two
  const tie = histogram(new Sampler(4, { temperature: 1, topp: 0.3, seed: 5 }), [0, 0, 0, 0], 4000);
  assert.deepEqual(tie.slice(2), [0, 0]);
  assert.ok(Math.abs(tie[0]! - 0.5) < 0.03, `tie ${tie}`);
  // a cutoff above every probability (tiny p, flat distribution) leaves no candidate: run.c reads
  // out of bounds there; we return the most probable token
  const flat = new Sampler(4, { temperature: 1, topp: 0.2, seed: 5 });
  assert.equal(flat.sample(new Float32Array([0, 0, 0, 0])), 0);
});

test('skip() advances the random stream exactly as a discarded sample() does', () => {
  for (const temperature of [0, 1, 0.7]) {
    const a = new Sampler(50, { seed: 11, temperature, topp: 0.9 });
    const b = new Sampler(50, { seed: 11, temperature, topp: 0.9 });
    for (let step = 0; step < 20; step++) {
      const logits = Float32Array.from({ length: 50 }, (_, i) => Math.sin(i * 0.3 + step));
      if (step % 3 === 0) {
        a.sample(logits.slice());
        b.skip();
      } else {
        assert.equal(b.sample(logits.slice()), a.sample(logits.slice()), `temperature ${temperature}, step ${step}`);
      }
    }
    assert.equal(b.rng.state, a.rng.state);
  }
});
