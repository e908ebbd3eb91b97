// `llama2 eval` against PyTorch: stories260K on both validation files (tok512, BOS before each
// story), every non-overlapping 256-token window → 1.5207 (shared/reference_train_260K.md).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readStories } from '../src/data/stories.js';
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
    [['eval', model], /needs --data/],
    [['eval', model, '--data', join(tmp, 'missing.bin')], /no such file/],
  ];
  for (const [args, pattern] of cases) {
    const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });
    assert.notEqual(r.status, 0, args.join(' '));
    assert.match(r.stderr, pattern);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});
