// `llama2 run` against the C program: every golden case's standard output byte for byte, the
// classic greedy check, chat, and the error paths.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliPath, needsRefdata, projectRoot, ref } from './refdata.js';

interface RunCase {
  name: string;
  model: string;
  tokenizer: string;
  args: string[];
  stdout_b64: string;
}

function llama2(args: string[], input?: string) {
  return spawnSync(process.execPath, [cliPath, ...args], { input, maxBuffer: 1 << 24 });
}

test('every golden case of the C program: stdout byte-identical (wasm kernels on 2 threads, and js)', needsRefdata, () => {
  const cases = JSON.parse(readFileSync(ref('golden', 'runc_public.json'), 'utf8')) as RunCase[];
  assert.equal(cases.length, 8);
  for (const [c, engine] of cases.flatMap((c) => [[c, ['--threads', '2']], [c, ['--kernels', 'js']]] as Array<[RunCase, string[]]>)) {
    const r = llama2(['run', ref(c.model), '-z', ref(c.tokenizer), ...c.args, ...engine]);
    assert.equal(r.status, 0, `${c.name}: ${r.stderr}`);
    const expected = Buffer.from(c.stdout_b64, 'base64');
    assert.ok(r.stdout.equals(expected), `${c.name}: stdout differs\n--- ours\n${r.stdout}\n--- C\n${expected}`);
    assert.match(r.stderr.toString(), /^achieved tok\/s: \d+\.\d{6}\n$/, c.name);
  }
});

test('greedy 200 steps prints the classic expected text and a newline', needsRefdata, () => {
  const r = llama2(['run', ref('data/models/stories260K.bin'), '-z', ref('data/models/tok512.bin'), '-t', '0', '-n', '200']);
  const expected = readFileSync(ref('golden', 'stories260K_expected_greedy_n200.txt'));
  assert.ok(r.stdout.equals(Buffer.concat([expected, Buffer.from('\n')])));
});

test('v1 and v2 checkpoints run too; int8 greedy text stays coherent', needsRefdata, () => {
  const args = ['-z', ref('data/models/tok512.bin'), '-t', '0', '-n', '64'];
  const v0 = llama2(['run', ref('data/models/stories260K.bin'), ...args]).stdout.toString();
  assert.equal(llama2(['run', ref('data/models/stories260K.v1.bin'), ...args]).stdout.toString(), v0);
  for (const extra of [[], ['--quantize', 'q8']]) {
    const v2 = llama2(['run', ref('data/models/stories260K.v2.bin'), ...args, ...extra]);
    assert.equal(v2.status, 0);
    // the greedy story of the float32 model begins "Once upon a time, there was a little girl named Lily."
    assert.match(v2.stdout.toString(), /^Once upon a time, there was a little girl named Lily\. She loved to play/);
    assert.doesNotMatch(v2.stdout.toString(), /(upon ){3}/);
  }
});

test('chat mode: scripted turns through a pipe, clean exit at end of input', needsRefdata, () => {
  const r = llama2(['run', ref('data/models/stories260K.bin'), '-z', ref('data/models/tok512.bin'), '-m', 'chat', '-t', '0', '-n', '0', '-y', 'You tell stories.'], 'Tell me about a cat.\nAnd a dog?\n');
  assert.equal(r.status, 0, r.stderr.toString());
  const out = r.stdout.toString();
  assert.equal(out.split('Assistant: ').length - 1 >= 1, true, out);
  assert.match(out, /User: /);
});

test('past the context window: -n 1200 runs 1200 positions with context shifts; the first 512 are -n 512\'s; a long prompt is cut, with a note', needsRefdata, () => {
  const args = ['run', ref('data/models/stories260K.bin'), '-z', ref('data/models/tok512.bin'), '-t', '0.8', '-s', '5'];
  // stories260K's stories end (BOS) within ~500 tokens: --ignore-bos goes on to the next story
  const long = llama2([...args, '-n', '1200', '--ignore-bos']);
  const short = llama2([...args, '-n', '512', '--ignore-bos']);
  const c = llama2([...args, '-n', '512']);
  assert.equal(long.status, 0, long.stderr.toString());
  const text = long.stdout.toString();
  const first = short.stdout.toString().replace(/\n$/, '');
  assert.ok(text.startsWith(first), 'the first window is unchanged');
  assert.ok(first.startsWith(c.stdout.toString().replace(/\n$/, '')), 'without --ignore-bos it stops at the first BOS');
  assert.ok(text.length > 2 * first.length, `${text.length} characters`);
  const prompt = 'Once upon a time '.repeat(200);
  const cut = llama2([...args, '-n', '600', '-i', prompt]);
  assert.equal(cut.status, 0, cut.stderr.toString());
  assert.match(cut.stderr.toString(), /note: the prompt is 801 tokens, longer than the context window of 512: 510 tokens after the first 1 were left out/);
  // BOS, then the last 290 of the 800 prompt tokens after it (a cut inside "Once upon a time")
  assert.ok(cut.stdout.toString().startsWith('a time Once upon a time Once upon a time'), cut.stdout.toString().slice(0, 40));
});

test('error paths: one line on stderr, non-zero exit', needsRefdata, () => {
  const model = ref('data/models/stories260K.bin');
  const tok = ref('data/models/tok512.bin');
  const cases: Array<[string[], RegExp]> = [
    [['run', model, '-z', tok, '-t', 'hot'], /--temperature: 'hot' is not a number/],
    [['run', model, '-z', tok, '--temperature=-1'], /--temperature must be ≥ 0/],
    [['run', model, '-z', tok, '-t', '-1'], /argument is ambiguous.*'--temperature=-XYZ'/],
    [['run', model, '-z', tok, '-p', '1.5'], /--top-p must be in \[0, 1\]/],
    [['run', model, '-z', tok, '--steps=-3'], /--steps: -3 must be ≥ 0/],
    [['run', model, '-z', tok, '--bogus'], /Unknown option '--bogus'/],
    [['run', model, '-z', tok, '-m', 'talk'], /--mode must be generate or chat/],
    [['run', model, '-z', ref('data/tokenizers/tokenizer.bin')], /vocab|vocabulary/i],
    [['run', model, '-z', '/nonexistent/tok.bin'], /no such file/],
    [['run', model, '-z', tok, '--keep', '257'], /--keep: 257 must be at most half the context window \(256\)/],
    [['run', model, '-z', tok, '--keep=-1'], /--keep: -1 must be ≥ 0/],
    [['run', '/nonexistent/model.bin'], /no such file/],
    [['run', model, 'extra'], /run takes one model, got 2 arguments/],
  ];
  for (const [args, pattern] of cases) {
    const r = llama2(args);
    const err = r.stderr.toString();
    assert.notEqual(r.status, 0, `${args.join(' ')} should fail`);
    assert.match(err, pattern, args.join(' '));
    assert.equal(err.trim().split('\n').length, 1, `one line: ${err}`);
    assert.ok(!/\n\s+at /.test(err), 'no stack trace');
  }
});

test('without a model, run (and a bare prompt) use the embedded default model', () => {
  const models = join(projectRoot, 'models');
  const explicit = llama2(['run', join(models, 'default.bin'), '-z', join(models, 'tokenizer.bin'), '-t', '0', '-n', '60', '-i', 'Once upon a time']);
  assert.equal(explicit.status, 0, explicit.stderr.toString());
  assert.match(explicit.stdout.toString(), /^Once upon a time/);
  const implicit = llama2(['run', '-t', '0', '-n', '60', '-i', 'Once upon a time']);
  assert.ok(implicit.stdout.equals(explicit.stdout));
  const bare = llama2(['Once upon a time', '-t', '0', '-n', '60']);
  assert.ok(bare.stdout.equals(explicit.stdout));
});
