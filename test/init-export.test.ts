// `llama2 init` (model.py's initialisation) and `llama2 export` (format conversion; v2 against
// the reference exporter's bytes).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkpointWeights, readCheckpoint, readCheckpointHeader, writeCheckpoint } from '../src/model/checkpoint.js';
import { parameterCount } from '../src/model/weights.js';
import { initWeights } from '../src/train/init.js';
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
  assert.match(llama2('export', v2, '-o', back).stderr, /--format must be v0, v1, v2, gguf, hf or meta/);
});

test('init writes as it draws: each format byte-identical to writing the whole initWeights; a 42M model in far less memory than its weights', () => {
  const args = ['--dim', '48', '--layers', '3', '--heads', '6', '--kv-heads', '2', '--vocab', '300', '--seq-len', '32', '--seed', '5', '--unshared'];
  const config = { dim: 48, hiddenDim: 128, nLayers: 3, nHeads: 6, nKvHeads: 2, vocabSize: 300, seqLen: 32, sharedClassifier: false };
  const weights = initWeights(config, 5);
  for (const format of ['v0', 'v1', 'v2'] as const) {
    const streamed = join(tmp, `s.${format}.bin`), whole = join(tmp, `w.${format}.bin`);
    assert.equal(llama2('init', ...args, '--format', format, '-o', streamed).status, 0);
    writeCheckpoint(whole, weights, format, 64);
    assert.ok(readFileSync(streamed).equals(readFileSync(whole)), format);
  }
  // 42M parameters: 167 MB as float32; init --format v2 writes them in pieces of 16 MiB
  const big = join(tmp, 'big.v2.bin');
  const script = `const { main } = await import(${JSON.stringify(new URL('../src/cli/init.js', import.meta.url).href)});
    await main(['--dim', '512', '--layers', '8', '--heads', '8', '-o', ${JSON.stringify(big)}, '--format', 'v2']);
    console.log(process.resourceUsage().maxRSS * 1024);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const rss = Number(r.stdout.trim());
  const h = readCheckpointHeader(big);
  assert.ok(rss < 130 * 2 ** 20, `peak RSS ${(rss / 2 ** 20).toFixed(0)} MiB while writing ${(h.fileBytes / 2 ** 20).toFixed(0)} MiB (float32 weights: ${(4 * parameterCount(h.config) / 2 ** 20).toFixed(0)} MiB)`);
  unlinkSync(big);
});

test('export streams too: v2 → v1 holds exactly the dequantized values; v2 → v2 at the same group size copies the bytes', needsRefdata, () => {
  const v2 = ref('data', 'models', 'stories260K.v2.bin');
  const v1 = join(tmp, 'deq.v1.bin');
  assert.equal(llama2('export', v2, '--format', 'v1', '-o', v1).status, 0);
  assert.deepEqual(checkpointWeights(readCheckpoint(v1)).data, checkpointWeights(readCheckpoint(v2)).data);
  const copy = join(tmp, 'copy.v2.bin');
  assert.equal(llama2('export', v2, '--format', 'v2', '-o', copy).status, 0);
  assert.ok(readFileSync(copy).equals(readFileSync(v2)));
  // another group size requantizes the dequantized values
  const g32 = join(tmp, 'g32.v2.bin');
  assert.equal(llama2('export', v2, '--format', 'v2', '--group-size', '32', '-o', g32).status, 0);
  assert.equal(readCheckpointHeader(g32).groupSize, 32);
  const a = checkpointWeights(readCheckpoint(g32)).data, b = checkpointWeights(readCheckpoint(v2)).data;
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= 0.01, `value ${i}`);
  // a truncated input: one line, nothing written
  const bad = join(tmp, 'bad.bin');
  writeFileSync(bad, readFileSync(v2).subarray(0, 5000));
  const r = llama2('export', bad, '--format', 'v1', '-o', join(tmp, 'never.bin'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /bad\.bin: v2 header implies \d+ bytes but the file has 5000 \(truncated\)/);
  assert.ok(!existsSync(join(tmp, 'never.bin')));
});
