// The forward pass against PyTorch: logits of stories260K for the golden tokens.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadTransformer } from '../src/infer/forward.js';
import { jsKernels } from '../src/kernels/js.js';
import { needsRefdata, ref } from './refdata.js';

/** Feeds the golden tokens one by one and returns the largest |ours − PyTorch| over all logits. */
export function maxLogitError(modelFile: string, kernels = jsKernels): number {
  const meta = JSON.parse(readFileSync(ref('golden', 'logits_260K_public.json'), 'utf8')) as { tokens: number[]; shape: number[] };
  const bytes = readFileSync(ref('golden', 'logits_260K_public.f32'));
  const golden = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const [T, V] = meta.shape as [number, number];
  assert.equal(T, meta.tokens.length);
  const t = loadTransformer(ref('data', 'models', modelFile), kernels);
  let maxDiff = 0;
  meta.tokens.forEach((tok, pos) => {
    const logits = t.forward(tok, pos);
    for (let i = 0; i < V; i++) maxDiff = Math.max(maxDiff, Math.abs(logits[i]! - golden[pos * V + i]!));
  });
  return maxDiff;
}

test('stories260K logits match PyTorch within 1e-4 (v0 and v1 files)', needsRefdata, () => {
  for (const file of ['stories260K.bin', 'stories260K.v1.bin']) {
    const err = maxLogitError(file);
    assert.ok(err < 1e-4, `${file}: max |logit diff| ${err}`);
  }
});

test('forward rejects positions outside the context and unknown tokens', needsRefdata, () => {
  const t = loadTransformer(ref('data', 'models', 'stories260K.bin'));
  assert.throws(() => t.forward(1, 512), /outside the context window/);
  assert.throws(() => t.forward(512, 0), /outside the vocabulary/);
});
