// `llama2 train` as a user runs it: resuming with the README's one line (every setting, the data
// and the tokenizer from the checkpoint; explicit flags override and are printed), how the
// validation data is chosen, the progress line (N/max, elapsed, ETA), metrics.jsonl (a settings
// record first, a timestamp on every line) and the tokenizer written beside the model.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { serializeLlama2cTokenizer } from '../src/tokenizer/llama2c-format.js';
import { readTrainCheckpoint } from '../src/train/checkpoint.js';
import { splitDataFolder } from '../src/train/data.js';
import { Rng } from '../src/train/rng.js';
import { renderLossSvg } from '../src/train/plot.js';
import { formatDuration } from '../src/train/trainer.js';
import { cliPath } from './refdata.js';

const dir = mkdtempSync(join(tmpdir(), 'llama2ts-train-run-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function tokens(path: string, n: number, seed: number): string {
  const rng = new Rng(seed);
  const a = new Uint16Array(n);
  for (let i = 0; i < n; i++) a[i] = i % 9 === 0 ? 1 : (rng.nextInt(32) + (i % 7)) % 64;
  writeFileSync(path, a);
  return path;
}

function llama2(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// A data folder as pretokenize leaves it after `--input train.txt valid.txt`, with the tokenizer
// that made it beside it (data/tok64.bin for data/tok64/, as train-vocab names it).
const data = join(dir, 'tok64');
mkdirSync(data);
tokens(join(data, 'train.bin'), 12000, 1);
tokens(join(data, 'valid.bin'), 2000, 2);
const pieces = ['<unk>', '\n<s>\n', '\n</s>\n', ...Array.from({ length: 61 }, (_, i) => `p${i}`)];
const tokenizerBytes = serializeLlama2cTokenizer(pieces, pieces.map((_, i) => -i));
writeFileSync(join(dir, 'tok64.bin'), tokenizerBytes);

const shape = ['--vocab-size', '64', '--dim', '16', '--n-layers', '2', '--n-heads', '4', '--n-kv-heads', '2', '--multiple-of', '8', '--max-seq-len', '16'];
const run = ['--batch-size', '3', '--gradient-accumulation-steps', '2', '--learning-rate', '3e-3', '--warmup-iters', '2', '--lr-decay-iters', '12',
  '--eval-interval', '3', '--eval-iters', '2', '--beta2', '0.99', '--weight-decay', '0.01', '--seed', '7'];
const lossLines = (s: string): string[] => s.split('\n').filter((l) => /^\d+\/\d+ \|/.test(l)).map((l) => l.split(' | ').slice(0, 2).join(' | ').replace(/^(\d+)\/\d+/, '$1'));

test('README resume line: settings, data and tokenizer come from the checkpoint; the run continues exactly', () => {
  const out = join(dir, 'out');
  const first = llama2(['train', '--data', data, ...shape, ...run, '--max-iters', '5', '--out-dir', out]);
  assert.equal(first.status, 0, first.stderr);
  // exactly `llama2 train --out-dir out --init-from resume --max-iters 2000`, with smaller numbers
  const resumed = llama2(['train', '--out-dir', out, '--init-from', 'resume', '--max-iters', '9']);
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stdout, /settings from the checkpoint; given here: max_iters 9 \(checkpoint: 5\)/);
  assert.match(resumed.stdout, /96 tokens per iteration \(3 × 16 × 2\)/); // batch 3, accumulation 2: not train.py's 128 × 4
  assert.match(resumed.stdout, /validation data: .*valid\.bin \(the checkpoint's\)/);
  const whole = llama2(['train', '--data', data, ...shape, ...run, '--max-iters', '9', '--out-dir', join(dir, 'whole')]);
  assert.equal(whole.status, 0, whole.stderr);
  const resumedFrom = readTrainCheckpoint(join(out, 'ckpt.bin')).state;
  assert.equal(resumedFrom.iter, 10);
  assert.deepEqual(lossLines(resumed.stdout), lossLines(whole.stdout).slice(6));
  assert.equal(lossLines(resumed.stdout).length, 4);
  assert.deepEqual(readFileSync(join(out, 'model.bin')), readFileSync(join(dir, 'whole', 'model.bin')));

  // an explicit setting overrides the checkpoint's and says so; the model shape cannot change
  const lr = llama2(['train', '--out-dir', out, '--init-from', 'resume', '--max-iters', '10', '--learning-rate', '1e-3', '--dim', '16']);
  assert.equal(lr.status, 0, lr.stderr);
  assert.match(lr.stdout, /given here: learning_rate 0\.001 \(checkpoint: 0\.003\), max_iters 10 \(checkpoint: 9\)/);
  const dim = llama2(['train', '--out-dir', out, '--init-from', 'resume', '--dim', '32']);
  assert.equal(dim.status, 2);
  assert.match(dim.stderr, /--dim 32: the checkpoint's model has dim 16, and a resumed run keeps its shape/);
});

test('train prints N/max, elapsed and ETA; metrics.jsonl opens with the settings and stamps every line; the tokenizer lands beside the model', () => {
  const out = join(dir, 'progress');
  const r = llama2(['train', '--data', data, ...shape, ...run, '--max-iters', '4', '--out-dir', out]);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split('\n').filter((l) => /^\d+\/4 \|/.test(l));
  assert.equal(lines.length, 5);
  for (const l of lines) assert.match(l, /\| \d+(m\d\ds)?s? elapsed, ETA \d+(m\d\ds|s)$/);
  assert.match(r.stdout, new RegExp(`tokenizer: .*tok64\\.bin → .*tokenizer\\.bin`));
  assert.deepEqual(readFileSync(join(out, 'tokenizer.bin')), Buffer.from(tokenizerBytes));
  assert.deepEqual(readdirSync(out).sort(), ['ckpt.bin', 'loss.svg', 'metrics.jsonl', 'model.bin', 'tokenizer.bin']);
  const records = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const head = records[0]!;
  assert.equal(head['type'], 'settings');
  assert.equal(head['batch_size'], 3);
  assert.equal(head['max_iters'], 4);
  assert.deepEqual(head['val_files'], [join(data, 'valid.bin')]);
  assert.equal(head['tokenizer'], join(dir, 'tok64.bin'));
  for (const rec of records) {
    assert.equal(typeof rec['time'], 'string');
    assert.ok(Math.abs(Date.parse(rec['time'] as string) - Date.now()) < 600_000, `a current ISO time: ${String(rec['time'])}`);
  }
  assert.equal(records.filter((x) => x['type'] === 'train').length, 5);
  // loss.svg (written at the evaluation of iteration 3) draws the learning rate of iterations 0..2
  const svg = readFileSync(join(out, 'loss.svg'), 'utf8');
  assert.match(svg, />learning rate</);
  assert.equal(/<path d="([^"]*)"[^>]*stroke-dasharray/.exec(svg)![1]!.split(/[ML]/).filter(Boolean).length, 3);
  // llama2 run finds the tokenizer beside the model
  const gen = llama2(['run', join(out, 'model.bin'), '-n', '8', '-s', '1']);
  assert.equal(gen.status, 0, gen.stderr);
  // a resumed run adds a settings record saying where it resumed, after the kept records
  const resumed = llama2(['train', '--out-dir', out, '--init-from', 'resume', '--max-iters', '6']);
  assert.equal(resumed.status, 0, resumed.stderr);
  const after = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(after[0]!['type'], 'settings');
  const second = after.findIndex((x, i) => i > 0 && x['type'] === 'settings');
  assert.equal(after[second]!['resumed_at'], 5);
  assert.equal(after[second]!['max_iters'], 6);
  assert.deepEqual(after.slice(second + 1).filter((x) => x['type'] === 'train').map((x) => x['iter']), [5, 6]);
});

test('validation data: --val, else val*.bin, else data00.bin, else an error asking for --val', () => {
  const folder = (name: string, files: string[]): string => {
    const d = join(dir, name);
    mkdirSync(d);
    for (const f of files) tokens(join(d, f), 100, 3);
    return d;
  };
  // pretokenize --input train.txt valid.txt: valid.bin validates (train.bin came first by name)
  const named = folder('named', ['train.bin', 'valid.bin']);
  assert.deepEqual(splitDataFolder(named), { train: [join(named, 'train.bin')], val: [join(named, 'valid.bin')], how: 'named val*' });
  const tiny = folder('tiny', ['data00.bin', 'data01.bin', 'data02.bin']);
  assert.deepEqual(splitDataFolder(tiny), { train: [join(tiny, 'data01.bin'), join(tiny, 'data02.bin')], val: [join(tiny, 'data00.bin')], how: 'data00.bin, as TinyStories does' });
  assert.deepEqual(splitDataFolder(tiny, [join(tiny, 'data02.bin')]), { train: [join(tiny, 'data00.bin'), join(tiny, 'data01.bin')], val: [join(tiny, 'data02.bin')], how: 'given with --val' });
  const other = folder('other', ['a.bin', 'b.bin']);
  assert.throws(() => splitDataFolder(other), /which shard is validation\? None is named val\*\.bin or data00\.bin; give --val FILE/);

  // printed at the start, with a warning when validation outweighs training
  const swapped = join(dir, 'swapped');
  mkdirSync(swapped);
  tokens(join(swapped, 'train.bin'), 600, 4);
  tokens(join(swapped, 'validation.bin'), 5000, 5);
  const r = llama2(['train', '--data', swapped, ...shape, ...run, '--max-iters', '0', '--out-dir', join(dir, 'swapped-out')]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^training data: .*train\.bin: 600 tokens, 37 windows of 16$/m);
  assert.match(r.stdout, /^validation data: .*validation\.bin \(named val\*\): 5,000 tokens, 312 windows$/m);
  assert.match(r.stdout, /^warning: the validation data \(5,000 tokens\) is larger than the training data \(600\)/m);
  const e = llama2(['train', '--data', other, ...shape, '--out-dir', join(dir, 'other-out')]);
  assert.equal(e.status, 2);
  assert.match(e.stderr, /give --val FILE/);
});

test('durations: seconds, minutes and seconds, hours and minutes', () => {
  assert.deepEqual([0, 42.4, 65, 3599, 7260, Infinity].map(formatDuration), ['0s', '42s', '1m05s', '59m59s', '2h01m', '?']);
});

test('loss.svg: the learning rate on its own axis, dashed, from 0 to its peak', () => {
  const svg = renderLossSvg({ train: [[10, 4], [20, 3], [30, 2.5]], evals: [[30, 2.6, 2.7]], lr: [[10, 1e-4], [20, 1e-3], [30, 5e-4]] }, 't');
  const pts = /<path d="([^"]*)"[^>]*stroke-dasharray/.exec(svg)![1]!.split(/[ML]/).filter(Boolean).map((p) => p.split(',').map(Number));
  assert.equal(pts.length, 3);
  const [a, b, c] = pts.map((p) => p[1]!) as [number, number, number];
  assert.ok(b < c && c < a, 'higher rate, higher on the page');
  assert.ok(b > 36 && b < 60, `the peak near the top of the plot area (y ${b})`);
  assert.match(svg, />1\.0e-3</);
  assert.doesNotMatch(renderLossSvg({ train: [[1, 2]], evals: [] }, 't'), /learning rate/);
});
