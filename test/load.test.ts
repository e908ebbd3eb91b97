// Loading a model: a v2 file runs as the int8 it holds (float32 only when dequantized), the KV
// cache holds the context asked for (--ctx) and nothing more, and a model that does not fit fails
// with one line that says what would.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OutOfMemoryError } from '../src/errors.js';
import { Transformer } from '../src/infer/forward.js';
import { loadTransformer, runningBytes } from '../src/infer/load.js';
import { jsKernelSet } from '../src/kernels/kernel-set.js';
import { tokenMatmulWork } from '../src/kernels/types.js';
import { writeCheckpoint } from '../src/model/checkpoint.js';
import type { ModelConfig } from '../src/model/config.js';
import { initWeights } from '../src/train/init.js';
import { cliPath, needsRefdata, ref } from './refdata.js';

const tmp = mkdtempSync(join(tmpdir(), 'llama2ts-load-'));
const llama2 = (...args: string[]) => spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });

test('a v2 file runs as int8 by default, as float32 with dequantize (its values exactly); quantize q8 and dequantize are refused together', needsRefdata, () => {
  const v2 = ref('data', 'models', 'stories260K.v2.bin');
  const int8 = loadTransformer(v2);
  assert.equal(int8.groupSize, 64);
  const fp32 = loadTransformer(v2, undefined, { dequantize: true });
  assert.equal(fp32.groupSize, 0);
  // a float32 file stays float32 unless asked
  assert.equal(loadTransformer(ref('data', 'models', 'stories260K.bin')).groupSize, 0);
  assert.equal(loadTransformer(ref('data', 'models', 'stories260K.bin'), undefined, { quantize: 'q8' }).groupSize, 64);
  assert.throws(() => loadTransformer(v2, undefined, { quantize: 'q8', dequantize: true }), /contradict/);
  const r = llama2('run', v2, '-z', ref('data', 'models', 'tok512.bin'), '--quantize', 'q8', '--dequantize', '-n', '4');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--dequantize and --quantize q8 contradict each other/);
});

test('--ctx sizes the KV cache: the same logits as the full context below it, positions past it refused', needsRefdata, () => {
  const model = ref('data', 'models', 'stories260K.bin');
  const full = loadTransformer(model);
  assert.equal(full.config.seqLen, 512);
  const short = loadTransformer(model, undefined, { contextLength: 40 });
  assert.equal(short.config.seqLen, 40);
  assert.equal(short.state.keyCache.length, 5 * 40 * 32);
  assert.equal(short.session().config.seqLen, 40, 'sessions keep the context');
  let token = 1;
  for (let pos = 0; pos < 40; pos++) {
    const a = Float32Array.from(full.forward(token, pos));
    assert.deepEqual(short.forward(token, pos), a, `position ${pos}`);
    token = (pos * 31 + 7) % 512;
  }
  assert.throws(() => short.forward(1, 40), /outside the context window \(40\)/);
  assert.throws(() => loadTransformer(model, undefined, { contextLength: 513 }), /from 1 to the model's 512, not 513/);
  // the CLI: a generation stops at the context; bad values are one-line errors
  const run = llama2('run', model, '-z', ref('data', 'models', 'tok512.bin'), '-t', '0', '-n', '0', '--ctx', '20');
  assert.equal(run.status, 0, run.stderr);
  const again = llama2('run', model, '-z', ref('data', 'models', 'tok512.bin'), '-t', '0', '-n', '20');
  assert.equal(run.stdout, again.stdout, '-n 0 runs the whole (shortened) context');
  for (const [ctx, pattern, status] of [['0', /--ctx: 0 must be ≥ 1/, 2], ['600', /from 1 to the model's 512, not 600/, 1]] as const) {
    const bad = llama2('run', model, '-z', ref('data', 'models', 'tok512.bin'), '--ctx', ctx);
    assert.equal(bad.status, status);
    assert.equal(bad.stderr.trim().split('\n').length, 1);
    assert.match(bad.stderr, pattern);
  }
});

test('the context defaults to the model\'s seq_len, at most 4096', () => {
  const c: ModelConfig = { dim: 8, hiddenDim: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, vocabSize: 10, seqLen: 5000, sharedClassifier: true };
  assert.equal(new Transformer(initWeights(c, 1)).config.seqLen, 4096);
  assert.equal(new Transformer(initWeights({ ...c, seqLen: 300 }, 1)).config.seqLen, 300);
});

test('a model that does not fit: one error naming the file, its size, and what would fit (int8, a shorter context)', () => {
  const c: ModelConfig = { dim: 64, hiddenDim: 128, nLayers: 2, nHeads: 4, nKvHeads: 4, vocabSize: 100, seqLen: 2048, sharedClassifier: true };
  const file = join(tmp, 'm.bin');
  writeCheckpoint(file, initWeights(c, 1), 'v1');
  // kernels whose memory holds less than the float32 weights
  const limit = runningBytes(c, true, 2048).total + 1000;
  let used = 0;
  const small = {
    ...jsKernelSet,
    allocate(n: number) {
      if ((used += 4 * n) > limit) throw new OutOfMemoryError(`cannot grow to ${used} bytes`);
      return new Float32Array(n);
    },
  };
  assert.throws(() => loadTransformer(file, small), (err: Error) => {
    assert.ok(err instanceof OutOfMemoryError);
    assert.match(err.message, /m\.bin: cannot grow to \d+ bytes; it needs [\d.]+ MiB \(weights [\d.]+ MiB as float32, KV cache 2\.0 MiB for a context of 2048\); try run it as int8 with --quantize q8 \([\d.]+ MiB\), or a shorter context, e\.g\. --ctx 512 \(KV cache 0\.5 MiB\)$/);
    return true;
  });
  used = 0;
  assert.equal(loadTransformer(file, small, { quantize: 'q8' }).groupSize, 64, 'the advice works');
});

test('loading tells the kernels the per-token work ahead (warmUp: the worker threads start while the weights load)', needsRefdata, () => {
  const calls: number[] = [];
  const kernels = { ...jsKernelSet, warmUp: (work: number) => { calls.push(work); } };
  const t = loadTransformer(ref('data', 'models', 'stories260K.bin'), kernels);
  const c = t.config;
  assert.deepEqual(calls, [tokenMatmulWork(c.nLayers, c.dim, (c.dim * c.nKvHeads) / c.nHeads, c.hiddenDim, c.vocabSize)]);
});
