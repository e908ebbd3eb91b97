// The trainer around the model: schedule, initialisation, dropout and ignored targets (finite
// differences), data files, exact resume, atomic checkpoints, SIGKILL mid-training, CLI errors.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { ModelConfig } from '../src/model/config.js';
import { readCheckpoint } from '../src/model/checkpoint.js';
import { parameterTable } from '../src/model/weights.js';
import { readTrainCheckpoint, writeTrainCheckpoint } from '../src/train/checkpoint.js';
import { BatchSampler, openTokenFile, closeTokenFile } from '../src/train/data.js';
import { initWeights } from '../src/train/init.js';
import { buildTrainModel } from '../src/train/model.js';
import { learningRateAt } from '../src/train/schedule.js';
import { DEFAULT_SETTINGS, type TrainSettings } from '../src/train/settings.js';
import { train } from '../src/train/trainer.js';
import { Rng } from '../src/train/rng.js';
import { cliPath } from './refdata.js';
import { createKernels } from '../src/kernels/kernel-set.js';
import { engineFromKernelSet } from '../src/train/pool.js';

const dir = mkdtempSync(join(tmpdir(), 'llama2ts-train-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A token file of `n` tokens < vocab, with enough structure to be learnable. */
function tokenFile(name: string, n: number, vocab: number, seed: number): string {
  const rng = new Rng(seed);
  const a = new Uint16Array(n);
  for (let i = 0; i < n; i++) a[i] = i % 9 === 0 ? 1 : (rng.nextInt(vocab / 2) + (i % 7)) % vocab;
  const path = join(dir, name);
  writeFileSync(path, a);
  return path;
}

const trainBin = tokenFile('train.bin', 20000, 64, 1);
const valBin = tokenFile('val.bin', 3000, 64, 2);

function settings(over: Partial<TrainSettings>): TrainSettings {
  return {
    ...DEFAULT_SETTINGS, batchSize: 2, maxSeqLen: 16, vocabSize: 64, dim: 16, nLayers: 2, nHeads: 4, nKvHeads: 2, multipleOf: 8,
    gradientAccumulationSteps: 2, learningRate: 3e-3, warmupIters: 3, maxIters: 8, lrDecayIters: 8, evalInterval: 3, evalIters: 2,
    outDir: join(dir, 'out'), ...over,
  };
}
const quiet = { log: () => {} };

test('get_lr: linear warm-up, cosine decay to min_lr, then min_lr (train.py)', () => {
  const s = { learningRate: 1e-3, minLr: 1e-4, warmupIters: 100, lrDecayIters: 1000, decayLr: true };
  assert.equal(learningRateAt(0, s), 0);
  assert.equal(learningRateAt(50, s), 5e-4);
  assert.equal(learningRateAt(100, s), 1e-3);
  assert.ok(Math.abs(learningRateAt(550, s) - (1e-4 + 0.5 * 9e-4)) < 1e-15);
  assert.ok(Math.abs(learningRateAt(1000, s) - 1e-4) < 1e-15);
  assert.equal(learningRateAt(1001, s), 1e-4);
  // r = 0.25 → coeff = (1 + cos(π/4)) / 2
  assert.ok(Math.abs(learningRateAt(325, s) - (1e-4 + 0.5 * (1 + Math.SQRT1_2) * 9e-4)) < 1e-15);
  assert.equal(learningRateAt(7, { ...s, decayLr: false }), 1e-3);
});

test('initWeights: N(0, 0.02), wo and w3 with 0.02/sqrt(2·n_layers), norms 1, reproducible', () => {
  const c: ModelConfig = { dim: 64, hiddenDim: 172, nLayers: 4, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 64, sharedClassifier: true };
  const w = initWeights(c, 7);
  const std = (a: Float32Array): number => Math.sqrt(a.reduce((s, x) => s + x * x, 0) / a.length);
  const mean = (a: Float32Array): number => a.reduce((s, x) => s + x, 0) / a.length;
  for (const t of [w.tokenEmbedding, w.wq, w.wk, w.wv, w.w1, w.w2]) {
    assert.ok(Math.abs(std(t) - 0.02) < 0.001, `std ${std(t)}`);
    assert.ok(Math.abs(mean(t)) < 0.001);
  }
  for (const t of [w.wo, w.w3]) assert.ok(Math.abs(std(t) - 0.02 / Math.sqrt(8)) < 0.0005, `std ${std(t)}`);
  for (const t of [w.rmsAtt, w.rmsFfn, w.rmsFinal]) assert.ok(t.every((x) => x === 1));
  assert.deepEqual(initWeights(c, 7).data, w.data);
  assert.notDeepEqual(initWeights(c, 8).data.subarray(0, 1000 + c.dim * 9), w.data.subarray(0, 1000 + c.dim * 9));
});

/** Directional finite difference of the loss along the model's own gradient, per tensor. */
function checkGradientNumerically(dropout: number, ignoreSome: boolean): void {
  const c: ModelConfig = { dim: 16, hiddenDim: 40, nLayers: 2, nHeads: 4, nKvHeads: 2, vocabSize: 32, seqLen: 8, sharedClassifier: true };
  const B = 2, T = 8;
  const init = initWeights(c, 3);
  // larger weights than the 0.02 init, so that every path carries a measurable gradient
  for (let i = 0; i < init.data.length; i++) init.data[i] = init.data[i]! * 5 + (i % 5 === 0 ? 0.05 : 0);
  const model = buildTrainModel(c, init.data, { B, T, dropout, seed: 5 });
  const rng = new Rng(9);
  const x = Array.from({ length: B * T }, () => rng.nextInt(32));
  const y = x.map((_, i) => (ignoreSome && i % 3 === 0 ? -1 : rng.nextInt(32)));
  const rngState = model.getRngState();
  const loss = (): number => {
    model.dropoutRng.setState(rngState); // the same dropout masks in every evaluation
    return model.forward(x, y);
  };
  model.zeroGrad();
  loss();
  model.backward();
  const g = model.grads.data.slice();
  const p = model.params.data;
  for (const t of parameterTable(c)) {
    let norm = 0;
    for (let i = t.offset; i < t.offset + t.size; i++) norm += g[i]! ** 2;
    norm = Math.sqrt(norm);
    const h = 1e-3;
    const orig = p.slice(t.offset, t.offset + t.size);
    for (let i = 0; i < t.size; i++) p[t.offset + i] = orig[i]! + (h * g[t.offset + i]!) / norm;
    const up = loss();
    for (let i = 0; i < t.size; i++) p[t.offset + i] = orig[i]! - (h * g[t.offset + i]!) / norm;
    const down = loss();
    p.set(orig, t.offset);
    const fd = (up - down) / (2 * h);
    assert.ok(norm > 1e-4, `${t.name}: gradient vanishes`);
    assert.ok(Math.abs(fd - norm) <= 0.02 * norm + 2e-4, `${t.name}: finite difference ${fd} vs gradient norm ${norm}`);
  }
}

test('gradients with dropout (fixed masks) agree with finite differences', () => checkGradientNumerically(0.2, false));
test('gradients with ignored targets (−1) agree with finite differences', () => checkGradientNumerically(0, true));

test('ignored targets: the loss is the mean over the counted positions', () => {
  const c: ModelConfig = { dim: 16, hiddenDim: 40, nLayers: 1, nHeads: 4, nKvHeads: 4, vocabSize: 32, seqLen: 4, sharedClassifier: true };
  const w = initWeights(c, 1);
  const m = buildTrainModel(c, w.data, { B: 1, T: 4 });
  const x = [1, 2, 3, 4];
  // with causal attention, position t's loss depends only on tokens ≤ t: mask all but one target
  const each = [0, 1, 2, 3].map((t) => m.forward(x, [5, 6, 7, 8].map((v, i) => (i === t ? v : -1))));
  const all = m.forward(x, [5, 6, 7, 8]);
  assert.ok(Math.abs(all - each.reduce((a, b) => a + b) / 4) < 1e-6);
  assert.ok(Number.isNaN(m.forward(x, [-1, -1, -1, -1])));
});

test('the WebAssembly training kernels without their allocate are refused (they take the buffers by address in their memory)', async () => {
  const set = await createKernels({ kind: 'wasm', threads: 1 });
  try {
    const engine = engineFromKernelSet(set);
    const c: ModelConfig = { dim: 16, hiddenDim: 32, nLayers: 1, nHeads: 2, nKvHeads: 2, vocabSize: 20, seqLen: 8, sharedClassifier: true };
    assert.throws(() => buildTrainModel(c, initWeights(c, 1).data, { B: 1, T: 8, kernels: engine.matmul }), /pass their allocate too/);
    assert.doesNotThrow(() => buildTrainModel(c, initWeights(c, 1).data, { B: 1, T: 8, kernels: engine.matmul, allocate: engine.allocate! }));
  } finally {
    await set.close();
  }
});

test('sampler: every window once per epoch, state save/restore reproduces the stream', () => {
  const f = openTokenFile(valBin, 64);
  try {
    const s = new BatchSampler([f], 3, 16, 42);
    const x = new Int32Array(48), y = new Int32Array(48);
    const seen = new Set<number>();
    const perEpoch = Math.floor(s.windows / 3);
    for (let i = 0; i < perEpoch; i++) {
      s.next(x, y);
      for (let b = 0; b < 3; b++) seen.add(x[b * 16]! * 65536 + x[b * 16 + 1]! * 256 + x[b * 16 + 2]!);
      for (let t = 0; t < 15; t++) assert.equal(y[t], x[t + 1]);
    }
    assert.ok(seen.size >= perEpoch * 3 - 3); // distinct windows (up to rare equal prefixes)
    const state = s.getState();
    const a = [0, 1, 2, 3, 4].map(() => (s.next(x, y), Array.from(x)));
    s.setState(state);
    const b = [0, 1, 2, 3, 4].map(() => (s.next(x, y), Array.from(x)));
    assert.deepEqual(a, b);
  } finally {
    closeTokenFile(f);
  }
});

test('resume continues exactly: the same losses and weights as an uninterrupted run', async () => {
  const full = await train({ settings: settings({ outDir: join(dir, 'full'), dropout: 0.1 }), trainFiles: [trainBin], valFiles: [valBin], ...quiet });
  const first = await train({ settings: settings({ outDir: join(dir, 'split'), dropout: 0.1, maxIters: 4 }), trainFiles: [trainBin], valFiles: [valBin], ...quiet });
  const second = await train({ settings: settings({ outDir: join(dir, 'split'), dropout: 0.1, initFrom: 'resume' }), trainFiles: [trainBin], valFiles: [valBin], ...quiet });
  assert.equal(second.firstIter, 5);
  assert.deepEqual([...first.losses, ...second.losses], full.losses);
  assert.ok(full.losses[8]! < full.losses[0]!, 'the loss goes down');
  assert.deepEqual(readFileSync(join(dir, 'split', 'model.bin')), readFileSync(join(dir, 'full', 'model.bin')));
  // metrics.jsonl of the resumed run = that of the uninterrupted one (apart from timings and the
  // resumed run's second settings record)
  const strip = (p: string): unknown[] => readFileSync(p, 'utf8').trim().split('\n').map((l) => {
    const { ms: _ms, tok_per_s: _t, mfu: _m, time: _time, ...rest } = JSON.parse(l) as Record<string, unknown>;
    return rest;
  }).filter((r) => r['type'] !== 'settings');
  assert.deepEqual(strip(join(dir, 'split', 'metrics.jsonl')), strip(join(dir, 'full', 'metrics.jsonl')));
  assert.ok(readFileSync(join(dir, 'full', 'loss.svg'), 'utf8').startsWith('<svg'));
  // the exported model is a readable v1 checkpoint of the trained weights
  const exported = readCheckpoint(join(dir, 'full', 'model.bin'));
  assert.equal(exported.format, 'v1');
  assert.deepEqual(exported.config, { dim: 16, hiddenDim: 48, nLayers: 2, nHeads: 4, nKvHeads: 2, vocabSize: 64, seqLen: 16, sharedClassifier: true });
  assert.deepEqual(readdirSync(join(dir, 'full')).sort(), ['ckpt.bin', 'loss.svg', 'metrics.jsonl', 'model.bin']);
});

test('a checkpoint write killed midway leaves the previous checkpoint intact', async () => {
  // A child process rewrites a 60 MB checkpoint over and over (iteration k: all floats = k); we
  // kill it at some point, then the file must be a complete, consistent checkpoint.
  const path = join(dir, 'atomic.bin');
  const script = `
    import { writeTrainCheckpoint } from ${JSON.stringify(new URL('../src/train/checkpoint.js', import.meta.url).href)};
    const config = { dim: 512, hiddenDim: 1376, nLayers: 2, nHeads: 8, nKvHeads: 8, vocabSize: 2048, seqLen: 64, sharedClassifier: true };
    const { parameterCount } = await import(${JSON.stringify(new URL('../src/model/weights.js', import.meta.url).href)});
    const n = parameterCount(config);
    const a = new Float32Array(n);
    for (let k = 1; ; k++) {
      a.fill(k);
      writeTrainCheckpoint(${JSON.stringify(path)}, { state: { config, settings: {}, iter: k, adamSteps: k, tokensSeen: 0, bestValLoss: Infinity,
        sampler: { epoch: 0, cursor: 0 }, dropoutRng: [1, 2, 3, 4] }, params: a, m: a, v: a });
      if (k === 1) process.stdout.write('first\\n');
    }`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  await new Promise((r) => setTimeout(r, 150 + Math.random() * 100));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const ckpt = readTrainCheckpoint(path);
  const k = ckpt.state.iter;
  assert.ok(k >= 1);
  for (const a of [ckpt.params, ckpt.m, ckpt.v]) assert.ok(a.every((x) => x === k), 'checkpoint contents consistent with its header');
});

test('a run killed with SIGKILL resumes from its last checkpoint and matches an uninterrupted run', async () => {
  const out = join(dir, 'killed');
  const common = ['train', '--train', trainBin, '--val', valBin, '--kernels', 'js', '--batch-size', '2', '--max-seq-len', '16', '--vocab-size', '64',
    '--dim', '16', '--n-layers', '2', '--n-heads', '4', '--n-kv-heads', '2', '--multiple-of', '8', '--learning-rate', '3e-3',
    '--warmup-iters', '3', '--lr-decay-iters', '400', '--eval-interval', '5', '--eval-iters', '1', '--always-save-checkpoint', '--max-iters', '400'];
  const child = spawn(process.execPath, [cliPath, ...common, '--out-dir', out], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => {
    text += d.toString();
    if (/^2\d\/400 \|/m.test(text)) resolve(); // past iteration 20: several checkpoints written
  }));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const saved = readTrainCheckpoint(join(out, 'ckpt.bin')).state.iter;
  assert.ok(saved >= 20 && saved % 5 === 0);
  const resumed = spawnSync(process.execPath, [cliPath, ...common, '--out-dir', out, '--init-from', 'resume', '--max-iters', String(saved + 3)], { encoding: 'utf8' });
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.ok(!readdirSync(out).some((n) => n.includes('.tmp-')), 'no temp file left');
  const fresh = spawnSync(process.execPath, [cliPath, ...common, '--out-dir', join(dir, 'unkilled'), '--max-iters', String(saved + 3)], { encoding: 'utf8' });
  assert.equal(fresh.status, 0, fresh.stderr);
  const lossLines = (s: string): string[] => s.split('\n').filter((l) => /^\d+\/\d+ \|/.test(l)).map((l) => l.split(' | ').slice(0, 2).join(' | '));
  const tail = lossLines(fresh.stdout).slice(saved);
  assert.equal(tail.length, 4);
  assert.deepEqual(lossLines(resumed.stdout), tail);
});

function cli(args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [cliPath, 'train', ...args], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

test('bad flags, config files and data files are one-line errors', () => {
  const small = ['--batch-size', '2', '--max-seq-len', '16', '--vocab-size', '64', '--dim', '16', '--n-layers', '1', '--n-heads', '4', '--n-kv-heads', '4', '--max-iters', '1', '--kernels', 'js', '--out-dir', join(dir, 'bad')];
  const odd = join(dir, 'odd.bin');
  writeFileSync(odd, new Uint8Array(33));
  const big = join(dir, 'big.bin');
  writeFileSync(big, new Uint16Array([1, 2, 3, 999, 4]));
  const short = join(dir, 'short.bin');
  writeFileSync(short, new Uint16Array([1, 2, 3]));
  const badJson = join(dir, 'bad.json');
  writeFileSync(badJson, '{"batch_size": 4,');
  const unknownKey = join(dir, 'unknown.json');
  writeFileSync(unknownKey, '{"batch_sise": 4}');
  const cases: Array<[string[], RegExp]> = [
    [['--batch-size', 'x', '--train', trainBin, '--val', valBin], /--batch-size: 'x' is not a number/],
    [['--dropout', '1.5', '--train', trainBin, '--val', valBin], /--dropout: 1.5 is above the maximum/],
    [['--init-from', 'gpt2', '--train', trainBin, '--val', valBin], /--init-from: expected one of scratch, resume/],
    [['--bogus', '1'], /bogus/],
    [[...small], /give --data DIR, or --train FILE and --val FILE/],
    [[...small, '--train', join(dir, 'nope.bin'), '--val', valBin], /nope\.bin: no such file/],
    [[...small, '--train', odd, '--val', valBin], /odd\.bin: not a uint16 token file: odd size 33 bytes/],
    [[...small, '--train', big, '--val', valBin], /big\.bin: token 999 at position 3 is outside the vocabulary \(vocab_size 64\)/],
    [[...small, '--train', trainBin, '--val', short], /short\.bin: too short/],
    [[...small, '--data', dir + '/nope'], /no such file/],
    [['--config', badJson, ...small], /bad\.json: not valid JSON/],
    [['--config', unknownKey, ...small], /unknown setting 'batch_sise'/],
    [[...small, '--n-heads', '3', '--train', trainBin, '--val', valBin], /dim 16 is not divisible by n_heads 3/],
    [[...small, '--init-from', 'resume', '--out-dir', join(dir, 'empty'), '--train', trainBin, '--val', valBin], /ckpt\.bin: no such file/],
  ];
  for (const [args, want] of cases) {
    const r = cli(args);
    assert.notEqual(r.status, 0, args.join(' '));
    assert.match(r.stderr, want, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    assert.ok(!r.stderr.includes('    at '), 'no stack trace');
  }
});

test('a JSON config file of train.py names sets the run; flags override it', () => {
  const cfg = join(dir, 'cfg.json');
  writeFileSync(cfg, JSON.stringify({ batch_size: 2, max_seq_len: 16, vocab_size: 64, dim: 16, n_layers: 1, n_heads: 4, n_kv_heads: 4, max_iters: 3, eval_interval: 100, eval_iters: 1, out_dir: join(dir, 'cfgout'), always_save_checkpoint: true }));
  const r = spawnSync(process.execPath, [cliPath, 'train', '--config', cfg, '--max-iters', '1', '--kernels', 'js', '--train', trainBin, '--val', valBin], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /dim 16, hidden 64, 1 layers/);
  assert.match(r.stdout, /^1\/1 \| loss/m);
  assert.doesNotMatch(r.stdout, /^2\/\d+ \| loss/m);
  assert.ok(existsSync(join(dir, 'cfgout', 'model.bin')));
  const ck = readTrainCheckpoint(join(dir, 'cfgout', 'ckpt.bin'));
  assert.equal(ck.state.iter, 2);
  writeTrainCheckpoint(join(dir, 'cfgout', 'copy.bin'), ck);
  assert.deepEqual(readFileSync(join(dir, 'cfgout', 'copy.bin')), readFileSync(join(dir, 'cfgout', 'ckpt.bin')));
});
