// `llama2 encode`, `llama2 decode` and `llama2 export-tokenizer`, run as a user would.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { cliPath, needsRefdata, ref } from './refdata.js';

interface Golden { cases: Array<{ text: string; ids: number[]; decoded: string }> }

const tmp = mkdtempSync(join(tmpdir(), 'llama2ts-tokcli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function llama2(args: string[], input?: string | Uint8Array): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cliPath, ...args], { input: input ?? '', encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A failure: non-zero exit and exactly one line on stderr, matching `pattern`. */
function assertOneLineError(r: ReturnType<typeof llama2>, pattern: RegExp): void {
  assert.notEqual(r.status, 0);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, pattern);
}

const tok512 = (): string => ref('data', 'models', 'tok512.bin');
const tok32k = (): string => ref('data', 'tokenizers', 'tokenizer.model');

test('encode TEXT prints the SentencePiece ids, BOS first, on one line', needsRefdata, () => {
  const g = JSON.parse(readFileSync(ref('golden', 'tok512_sentencepiece.json'), 'utf8')) as Golden;
  const c = g.cases[5]!;
  const r = llama2(['encode', '-z', tok512(), c.text]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, c.ids.join(' ') + '\n');
  assert.equal(llama2(['encode', '-z', tok512(), '--no-bos', c.text]).stdout, c.ids.slice(1).join(' ') + '\n');
  assert.equal(llama2(['encode', '-z', tok512(), '--eos', c.text]).stdout, [...c.ids, 2].join(' ') + '\n');
});

test('encode without TEXT reads standard input verbatim, trailing newline included', needsRefdata, () => {
  // golden case: tabs, newlines and double spaces, with the 32k tokenizer (which keeps them)
  const g = JSON.parse(readFileSync(ref('golden', 'tok32000_sentencepiece.json'), 'utf8')) as Golden;
  const c = g.cases.find((x) => x.text.startsWith('tabs'))!;
  const r = llama2(['encode', '-z', tok32k()], c.text);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, c.ids.join(' ') + '\n');
  // "Hello\n": the newline is a token (<0x0A>, id 13)
  assert.equal(llama2(['encode', '-z', tok32k()], 'Hello\n').stdout, '1 15043 13\n');
  assert.equal(llama2(['encode', '-z', tok32k()], 'Hello').stdout, '1 15043\n');
});

test('decode ID… prints the text; ids also come from standard input', needsRefdata, () => {
  const g = JSON.parse(readFileSync(ref('golden', 'tok512_sentencepiece.json'), 'utf8')) as Golden;
  const c = g.cases.find((x) => x.text.startsWith('Hello, world!'))!; // emoji and CJK via byte tokens
  const r = llama2(['decode', '-z', tok512(), ...c.ids.map(String)]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, c.decoded + '\n');
  assert.equal(llama2(['decode', '-z', tok512()], c.ids.join(' ') + '\n').stdout, c.decoded + '\n');
});

test('export-tokenizer writes llama2.c\'s tokenizer.bin byte for byte', needsRefdata, () => {
  const out = join(tmp, 'tok512.bin');
  const r = llama2(['export-tokenizer', ref('data', 'models', 'tok512.model'), '-o', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(readFileSync(out).equals(readFileSync(tok512())));
});

test('errors are one line and a non-zero exit', needsRefdata, () => {
  assertOneLineError(llama2(['encode', 'text']), /encode needs a tokenizer/);
  assertOneLineError(llama2(['encode', '-z', join(tmp, 'missing.bin'), 'x']), /missing\.bin: no such file/);
  assertOneLineError(llama2(['decode', '-z', tok512(), '1', '512']), /token id 512 is out of range/);
  assertOneLineError(llama2(['decode', '-z', tok512(), '1', 'x7']), /'x7' is not a token id/);
  assertOneLineError(llama2(['encode', '-z', tok512(), '--vocab-size', '32000', 'x']), /has 512 tokens, but the model's vocabulary needs 32000/);
  const junk = join(tmp, 'junk.model');
  writeFileSync(junk, Uint8Array.from({ length: 500 }, (_, i) => (i * 7919) & 0xff));
  assertOneLineError(llama2(['encode', '-z', junk, 'x']), /junk\.model: not a/);
  assertOneLineError(llama2(['export-tokenizer', tok512(), '-o', join(tmp, 'x.bin')]), /already a llama2\.c tokenizer\.bin/);
});
