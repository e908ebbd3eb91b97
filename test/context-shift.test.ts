// The engine's context shift (InferenceEngine.shift): after keeping the first `keep` cache rows,
// dropping `drop` and moving the rest down with their keys re-rotated, the next tokens' logits are
// those of a fresh forward pass over the kept tokens at their new positions.
//
// That identity is exact only where a position's keys and values depend on its own token and
// position alone. In a model whose attention feeds the residual stream of later layers, the kept
// tokens' deeper keys remember the dropped tokens (that is what a context shift trades for not
// recomputing them: on the whole model the logits after a shift differ from a fresh pass by ~0.8
// here). So the test runs stories260K's real weights with the attention output (Wo) of every layer
// but one zeroed: up to that live layer every key and value is a function of its token and
// position alone, the live layer reads its shifted cache, the later layers' attention adds
// nothing, and the identity holds to float rounding (~2e-6). Each of the five layers in turn is
// the live one, so every layer's shift is checked: float32 and Q8_0, the js kernels, and the
// WebAssembly kernels fused and kernel by kernel; θ 10000 and 500000.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Transformer } from '../src/infer/forward.js';
import { quantizeWeights, readCheckpoint } from '../src/model/checkpoint.js';
import { weightsView } from '../src/model/weights.js';
import { jsKernelSet, createKernels, type KernelSet } from '../src/kernels/kernel-set.js';
import { wasmSupported } from '../src/kernels/wasm.js';
import { needsRefdata, ref } from './refdata.js';

const SEQ = 64; // a short window (the weights do not depend on it): the test stays fast
const KEEP = 5;
const DROP = 29;

/** stories260K with a window of SEQ, RoPE base `theta`, and only layer `live`'s attention feeding the residual stream. */
function model(kernels: KernelSet, live: number | undefined, theta: number, q8: boolean, fused: boolean): Transformer {
  const ckpt = readCheckpoint(ref('data', 'models', 'stories260K.bin'), { allocate: (n) => kernels.allocate(n) });
  if (ckpt.format === 'v2') throw new Error('expected a float32 checkpoint');
  const w = weightsView({ ...ckpt.config, seqLen: SEQ, ropeTheta: theta }, ckpt.weights.data);
  const per = w.wo.length / w.config.nLayers;
  for (let l = 0; l < w.config.nLayers; l++) if (live !== undefined && l !== live) w.wo.fill(0, l * per, (l + 1) * per);
  const weights = q8 ? quantizeWeights(w, 64, { int8: (n) => kernels.allocateInt8(n), float32: (n) => kernels.allocate(n) }) : w;
  return new Transformer(weights, kernels, { fused });
}

/** Deterministic token ids (not BOS-only text: every position differs). */
function tokens(n: number, vocab: number): number[] {
  return Array.from({ length: n }, (_, i) => (i === 0 ? 1 : (i * 7919 + 13) % vocab));
}

/** Fills the window, shifts, and returns the largest |shifted − fresh| over the next 4 tokens' logits. */
function shiftError(t: Transformer): number {
  const ids = tokens(SEQ + 4, t.config.vocabSize);
  for (let pos = 0; pos < SEQ; pos++) t.advance(ids[pos]!, pos);
  t.shift(KEEP, DROP, SEQ);
  const fresh = t.session();
  const kept = [...ids.slice(0, KEEP), ...ids.slice(KEEP + DROP, SEQ)];
  kept.forEach((id, pos) => fresh.advance(id, pos));
  let err = 0;
  for (let j = 0; j < 4; j++) {
    const pos = SEQ - DROP + j;
    const a = Float32Array.from(t.forward(ids[SEQ + j]!, pos));
    const b = fresh.forward(ids[SEQ + j]!, pos);
    for (let i = 0; i < a.length; i++) err = Math.max(err, Math.abs(a[i]! - b[i]!));
  }
  return err;
}

test('after a shift the logits are a fresh pass over the kept tokens at their new places (each layer; fp32 and Q8_0; js, wasm fused and kernel by kernel; θ 1e4 and 5e5)', needsRefdata, async () => {
  const sets: Array<[string, KernelSet, boolean]> = [['js', jsKernelSet, false]];
  const wasm = wasmSupported() ? await createKernels({ kind: 'wasm', threads: 1 }) : undefined;
  if (wasm !== undefined) sets.push(['wasm fused', wasm, true], ['wasm kernel by kernel', wasm, false]);
  try {
    for (const [name, kernels, fused] of sets) {
      for (const q8 of [false, true]) {
        for (let live = 0; live < 5; live++) {
          const theta = live % 2 === 0 ? 10000 : 500000;
          const t = model(kernels, live, theta, q8, fused);
          assert.equal(t.isFused, fused);
          const err = shiftError(t);
          assert.ok(err < 1e-4, `${name}, ${q8 ? 'Q8_0' : 'fp32'}, live layer ${live}, θ ${theta}: max |logit diff| ${err}`);
        }
      }
    }
  } finally {
    await wasm?.close();
  }
});

test('the check can fail: without the re-rotation (keys left at their old angles) the logits differ', needsRefdata, () => {
  const t = model(jsKernelSet, 0, 10000, false, false);
  const ids = tokens(SEQ + 1, t.config.vocabSize);
  for (let pos = 0; pos < SEQ; pos++) t.advance(ids[pos]!, pos);
  // move the rows by hand, as a shift that forgot RoPE would
  const kv = t.state.keyCache.length / t.config.nLayers / SEQ;
  for (const cache of [t.state.keyCache, t.state.valueCache]) {
    for (let l = 0; l < t.config.nLayers; l++) {
      const base = l * SEQ * kv;
      cache.copyWithin(base + KEEP * kv, base + (KEEP + DROP) * kv, base + SEQ * kv);
    }
  }
  const fresh = t.session();
  [...ids.slice(0, KEEP), ...ids.slice(KEEP + DROP, SEQ)].forEach((id, pos) => fresh.advance(id, pos));
  const a = Float32Array.from(t.forward(ids[SEQ]!, SEQ - DROP));
  const b = fresh.forward(ids[SEQ]!, SEQ - DROP);
  let err = 0;
  for (let i = 0; i < a.length; i++) err = Math.max(err, Math.abs(a[i]! - b[i]!));
  assert.ok(err > 1e-2, `max |logit diff| ${err}`);
});

test('on the whole model the fused and kernel-by-kernel paths stay bit-identical through shifts', { ...needsRefdata, skip: needsRefdata.skip || (!wasmSupported() && 'no WebAssembly SIMD') }, async () => {
  const kernels = await createKernels({ kind: 'wasm', threads: 1 });
  try {
    for (const q8 of [false, true]) {
      const fused = model(kernels, undefined, 10000, q8, true);
      const stepwise = model(kernels, undefined, 10000, q8, false);
      const ids = tokens(3 * SEQ, fused.config.vocabSize);
      let pos = 0;
      for (const id of ids) {
        if (pos === SEQ) {
          fused.shift(1, SEQ / 2, SEQ);
          stepwise.shift(1, SEQ / 2, SEQ);
          pos -= SEQ / 2;
        }
        assert.deepEqual(fused.forward(id, pos), stepwise.forward(id, pos));
        pos++;
      }
    }
  } finally {
    await kernels.close();
  }
});

test('shift: drop 0 changes nothing; arguments outside the cache are refused', needsRefdata, () => {
  const t = model(jsKernelSet, undefined, 10000, false, false);
  const ids = tokens(SEQ, t.config.vocabSize);
  for (let pos = 0; pos < 10; pos++) t.advance(ids[pos]!, pos);
  const before = Float32Array.from(t.state.keyCache);
  t.shift(3, 0, 10);
  assert.deepEqual(t.state.keyCache, before);
  for (const [keep, drop, length] of [[-1, 2, 10], [3, 8, 10], [0, 1, SEQ + 1], [1.5, 2, 10], [0, NaN, 10]] as const) {
    assert.throws(() => t.shift(keep, drop, length), RangeError, `${keep} ${drop} ${length}`);
  }
});
