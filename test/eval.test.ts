// `llama2 eval` against PyTorch: stories260K on both validation files (tok512, BOS before each
// story), every non-overlapping 256-token window → 1.5207 (shared/reference_train_260K.md); and
// sliding windows (--stride): each token scored once, the loss = a per-token computation.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readStories } from '../src/data/stories.js';
import { crossEntropy, evalWindows, evaluateLoss } from '../src/infer/eval.js';
import { evaluateLossOnThreads } from '../src/infer/eval-windows.js';
import { loadTransformer } from '../src/infer/load.js';
import { createKernels } from '../src/kernels/kernel-set.js';
import { kernelModuleIfLoaded } from '../src/kernels/wasm.js';
import { loadTokenizer } from '../src/tokenizer/index.js';
import { cliPath, needsRefdata, ref } from './refdata.js';

const tmp = mkdtempSync(join(tmpdir(), 'llama2ts-eval-'));

function tokenizeValidation(): string {
  const tok = loadTokenizer(ref('data', 'models', 'tok512.bin'), 512);
  const ids: number[] = [];
  for (const f of ['valid_first201.txt', 'valid_next781_heuristic_boundaries.txt']) {
    for (const story of readStories(ref('data', 'tinystories', f))) ids.push(...tok.encode(story.trim(), { bos: true }));
  }
  assert.equal(ids.length, 387046); // shared/README.md's count
  const out = join(tmp, 'val.bin');
  writeFileSync(out, new Uint16Array(ids));
  return out;
}

/** The first `count` stories of valid_first201.txt in tok512 ids, BOS before each. */
function firstStories(count: number): Uint16Array {
  const tok = loadTokenizer(ref('data', 'models', 'tok512.bin'), 512);
  const stories = readStories(ref('data', 'tinystories', 'valid_first201.txt')).slice(0, count);
  return Uint16Array.from(stories.map((s) => tok.encode(s.trim(), { bos: true })).flat());
}

test('eval: stories260K validation loss over all 1,511 windows matches PyTorch (1.5207 ± 5e-4)', needsRefdata, () => {
  const data = tokenizeValidation();
  const r = spawnSync(process.execPath, [cliPath, 'eval', ref('data', 'models', 'stories260K.bin'), '--data', data, '--seq-len', '256'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const m = /^val_loss=(\d+\.\d{6})\nperplexity=(\d+\.\d{4})\n$/.exec(r.stdout);
  assert.ok(m, r.stdout);
  assert.ok(Math.abs(Number(m[1]) - 1.5207) < 5e-4, `val_loss ${m[1]}`);
  assert.ok(Math.abs(Number(m[2]) - Math.exp(Number(m[1]))) < 1e-3);
  assert.match(r.stderr, /1511 windows × 256 tokens/);
});

test('eval: bad data files are one-line errors', needsRefdata, () => {
  const model = ref('data', 'models', 'stories260K.bin');
  const odd = join(tmp, 'odd.bin');
  writeFileSync(odd, Buffer.alloc(7));
  const big = join(tmp, 'big.bin');
  writeFileSync(big, new Uint16Array([1, 2, 600, 3]));
  const short = join(tmp, 'short.bin');
  writeFileSync(short, new Uint16Array([1, 2, 3]));
  const cases: Array<[string[], RegExp]> = [
    [['eval', model, '--data', odd], /odd\.bin: not a uint16 token file: odd size 7 bytes/],
    [['eval', model, '--data', big], /token 600 at position 2 is outside the vocabulary \(vocab_size 512\)/],
    [['eval', model, '--data', short, '--seq-len', '8'], /fewer than one window/],
    [['eval', model, '--data', short, '--seq-len', '9999'], /--seq-len: 9999 must be in \[1, 512\]/],
    [['eval', model, '--data', big, '--seq-len', '2', '--stride', '3'], /--stride: 3 must be in \[1, 2\]/],
    [['eval', model, '--data', short, '--seq-len', '2', '--stride', '0'], /--stride: 0 must be in \[1, 2\]/],
    [['eval', model], /needs --data/],
    [['eval', model, '--data', big, '--parallel', 'layers'], /--parallel must be windows or kernels, got 'layers'/],
    [['eval', model, '--data', big, '--parallel', 'windows', '--backend', 'js'], /--parallel needs the wasm backend/],
    [['eval', model, '--data', join(tmp, 'missing.bin')], /no such file/],
  ];
  for (const [args, pattern] of cases) {
    const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });
    assert.notEqual(r.status, 0, args.join(' '));
    assert.match(r.stderr, pattern);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});

test('sliding windows: every token scored once, with at least T − S tokens of context after the first window', () => {
  for (const [count, T, S] of [[1000, 64, 16], [1000, 64, 64], [1000, 64, 1], [65, 64, 7], [777, 100, 33]] as const) {
    const windows = evalWindows(count, T, S);
    const targets: number[] = [];
    for (const { start, firstScored } of windows) {
      assert.ok(start + T + 1 <= count, 'the window and its last target are in the data');
      if (start > 0) assert.ok(firstScored >= T - S, 'context');
      for (let pos = firstScored; pos < T; pos++) targets.push(start + pos + 1);
    }
    // targets 1, 2, 3, … each once, as far as full windows reach
    assert.deepEqual(targets, Array.from({ length: T + (windows.length - 1) * S }, (_, i) => i + 1), `${count} ${T} ${S}`);
    assert.equal(windows.length, Math.floor((count - 1 - T) / S) + 1);
  }
  assert.throws(() => evalWindows(1000, 64, 0), /--stride must be between 1 and the window length 64, got 0/);
  assert.throws(() => evalWindows(1000, 64, 65), /--stride must be between 1 and the window length 64/);
  assert.throws(() => evalWindows(64, 64, 8), /fewer than one window/);
});

test('sliding windows: the loss is the mean over tokens of −log p(token | its window before it), each computed on its own', needsRefdata, async () => {
  const kernels = await createKernels({ kind: 'wasm', threads: 1 });
  try {
    const model = loadTransformer(ref('data', 'models', 'stories260K.bin'), kernels);
    const tokens = firstStories(3).slice(0, 200);
    const [T, S] = [64, 16];
    const r = evaluateLoss(model, tokens, T, undefined, S);
    // target j is scored by the window that ends with it: the first for j ≤ T, else the one starting at ceil((j − T) / S) · S
    const fresh = model.session();
    let sum = 0;
    for (let j = 1; j <= r.tokens; j++) {
      const start = j <= T ? 0 : Math.ceil((j - T) / S) * S;
      for (let p = start; p < j - 1; p++) fresh.advance(tokens[p]!, p - start);
      sum += crossEntropy(fresh.forward(tokens[j - 1]!, j - 1 - start), 512, tokens[j]!);
    }
    assert.equal(r.tokens, T + (r.windows - 1) * S);
    // (evaluateLoss feeds each window as prefills — matrix × matrix products summing in another
    // order than the one-token path here — and scores with the kernels: float32 rounding apart)
    assert.ok(Math.abs(r.loss - sum / r.tokens) < 1e-6, `${r.loss} vs ${sum / r.tokens}`);
    // non-overlapping windows of the same data score fewer tokens, with less context each
    const plain = evaluateLoss(model, tokens, T);
    assert.equal(plain.tokens, 3 * T);
  } finally {
    await kernels.close();
  }
});

test('eval on threads, whole windows each: the same loss bit for bit as one thread, and a failed worker is a one-line error', needsRefdata, async () => {
  const kernels = await createKernels({ kind: 'wasm', threads: 1 });
  try {
    const path = ref('data', 'models', 'stories260K.bin');
    const model = loadTransformer(path, kernels, { contextLength: 64 });
    const tokens = firstStories(12);
    const module = kernelModuleIfLoaded()!;
    for (const [T, S, threads] of [[64, 64, 2], [64, 24, 3], [48, 48, 4]] as const) {
      const one = evaluateLoss(model, tokens, T, undefined, S);
      const seen: number[] = [];
      const many = await evaluateLossOnThreads(model, { path, load: { contextLength: 64 }, module }, threads, tokens, T, (done, total) => {
        assert.equal(total, one.windows);
        seen.push(done);
      }, S);
      assert.ok(one.windows >= 8, `${one.windows} windows`);
      assert.deepEqual(many, one, `T ${T} S ${S} threads ${threads}`);
      assert.equal(seen.at(-1), one.windows, 'the progress ends at every window');
      assert.ok(seen.every((d, i) => i === 0 || d >= seen[i - 1]!), 'the progress only goes forward');
    }
    await assert.rejects(evaluateLossOnThreads(model, { path: join(tmp, 'gone.bin'), load: {}, module }, 2, tokens, 64),
      (err: Error) => /^an evaluation thread failed: .*gone\.bin/.test(err.message) && !err.message.includes('\n'));
  } finally {
    await kernels.close();
  }
});

test('eval: --parallel kernels (the products split between threads) and windows (whole windows per thread) agree', needsRefdata, () => {
  const data = join(tmp, 'val-part.bin');
  writeFileSync(data, firstStories(60));
  const losses = ['kernels', 'windows'].map((parallel) => {
    const r = spawnSync(process.execPath, [cliPath, 'eval', ref('data', 'models', 'stories260K.bin'), '--data', data, '--threads', '2', '--parallel', parallel, '-q'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /\d+ windows × 256 tokens = \d+ tokens scored/);
    return Number(/^val_loss=(\d+\.\d{6})$/m.exec(r.stdout)![1]);
  });
  assert.ok(Math.abs(losses[0]! - losses[1]!) <= 2e-6, `${losses}`);
});
