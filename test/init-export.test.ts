// `llama2 init` (model.py's initialisation) and `llama2 export` (format conversion; v2 against
// the reference exporter's bytes).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkpointWeights, readCheckpoint } from '../src/model/checkpoint.js';
import { cliPath, needsRefdata, ref } from './refdata.js';

const tmp = mkdtempSync(join(tmpdir(), 'llama2ts-init-'));
const llama2 = (...args: string[]) => spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });

function std(a: Float32Array): number {
  let s = 0, s2 = 0;
  for (const v of a) { s += v; s2 += v * v; }
  const m = s / a.length;
  return Math.sqrt(s2 / a.length - m * m);
}

test('init: shape from flags, N(0, 0.02) weights, residual projections scaled by 1/√(2·layers), norms 1', () => {
  const out = join(tmp, 'm.bin');
  const r = llama2('init', '--dim', '128', '--layers', '4', '--heads', '8', '--kv-heads', '2', '--multiple-of', '32', '--vocab', '1000', '--seq-len', '64', '--seed', '7', '-o', out);
  assert.equal(r.status, 0, r.stderr);
  const ckpt = readCheckpoint(out);
  assert.equal(ckpt.format, 'v1');
  // hidden: 2/3 · 4 · 128 = 341 → next multiple of 32 = 352 (model.py)
  assert.deepEqual(ckpt.config, { dim: 128, hiddenDim: 352, nLayers: 4, nHeads: 8, nKvHeads: 2, vocabSize: 1000, seqLen: 64, sharedClassifier: true });
  const w = checkpointWeights(ckpt);
  for (const name of ['tokenEmbedding', 'wq', 'wk', 'wv', 'w1', 'w2'] as const) {
    assert.ok(Math.abs(std(w[name]) - 0.02) < 0.001, `${name} std ${std(w[name])}`);
  }
  for (const name of ['wo', 'w3'] as const) {
    const expected = 0.02 / Math.sqrt(8);
    assert.ok(Math.abs(std(w[name]) - expected) < 0.0005, `${name} std ${std(w[name])} vs ${expected}`);
  }
  assert.ok(w.rmsAtt.every((v) => v === 1) && w.rmsFfn.every((v) => v === 1) && w.rmsFinal.every((v) => v === 1));
  // the same seed gives the same file; another seed another
  const again = join(tmp, 'm2.bin');
  llama2('init', '--dim', '128', '--layers', '4', '--heads', '8', '--kv-heads', '2', '--vocab', '1000', '--seq-len', '64', '--seed', '7', '-o', again);
  assert.ok(readFileSync(out).equals(readFileSync(again)));
});

test('init: v0 and unshared classifier; impossible shapes are usage errors', () => {
  const out = join(tmp, 'u.bin');
  assert.equal(llama2('init', '--dim', '32', '--layers', '1', '--heads', '4', '--vocab', '50', '--seq-len', '16', '--unshared', '--format', 'v0', '-o', out).status, 0);
  const c = readCheckpoint(out);
  assert.equal(c.format, 'v0');
  assert.equal(c.config.sharedClassifier, false);
  for (const [args, pattern] of [
    [['--dim', '64', '--heads', '8', '--kv-heads', '3'], /n_heads 8 is not divisible by n_kv_heads 3/],
    [['--dim', '60', '--heads', '8'], /dim 60 is not divisible by n_heads 8/],
    [['--dim', '0'], /--dim: 0 must be ≥ 1/],
    [['--format', 'v9'], /--format must be v0, v1 or v2/],
  ] as Array<[string[], RegExp]>) {
    const r = llama2('init', ...args, '-o', join(tmp, 'x.bin'));
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, pattern);
  }
  assert.match(llama2('init', '--dim', '64').stderr, /init needs -o FILE/);
});

test('export: v0 → v2 equals the reference exporter byte for byte; v2 → v1 dequantizes', needsRefdata, () => {
  const v2 = join(tmp, 's.v2.bin');
  const r = llama2('export', ref('data', 'models', 'stories260K.bin'), '--format', 'v2', '-o', v2);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(readFileSync(v2).equals(readFileSync(ref('data', 'models', 'stories260K.v2.bin'))));
  const v1 = join(tmp, 's.v1.bin');
  assert.equal(llama2('export', ref('data', 'models', 'stories260K.v1.bin'), '--format', 'v1', '-o', v1).status, 0);
  assert.ok(readFileSync(v1).equals(readFileSync(ref('data', 'models', 'stories260K.v1.bin'))));
  const back = join(tmp, 'back.v1.bin');
  assert.equal(llama2('export', v2, '--format', 'v1', '-o', back).status, 0);
  assert.equal(readCheckpoint(back).format, 'v1');
  assert.match(llama2('export', v2, '-o', back).stderr, /--format must be v0, v1, v2 or gguf/);
});
