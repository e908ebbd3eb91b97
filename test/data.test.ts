// The data pipeline: story sources, the BPE trainer (against tok512, trained by llama2.c's author
// with SentencePiece), pretokenize (against the reference token counts), tokenize-stats, the CLI
// commands with bad input, and the chain download → train-vocab → pretokenize → train.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { BpeTrainer, isValidPiece, normalizeSentence, splitWords } from '../src/data/bpe-trainer.js';
import { pretokenize, pretokenizeShard } from '../src/data/pretokenize.js';
import { parseStories, pyStrip, readStories, splitTextStories } from '../src/data/stories.js';
import { tokenizeStats } from '../src/data/tokenize-stats.js';
import { trainVocabulary, writeVocabulary } from '../src/data/train-vocab.js';
import { FormatError, UsageError } from '../src/errors.js';
import { PieceType, Tokenizer, loadTokenizer, readSentencePieceModel, writeSentencePieceModel } from '../src/tokenizer/index.js';
import { cliPath, needsRefdata, ref } from './refdata.js';
import { makeArchive, serve, tempDir, writeShards } from './data-fixtures.js';

const TRAIN = (): string => ref('data', 'tinystories', 'train_first2316.txt');
const VALID = (): string[] => [ref('data', 'tinystories', 'valid_first201.txt'), ref('data', 'tinystories', 'valid_next781_heuristic_boundaries.txt')];
const TOK512 = (): string => ref('data', 'models', 'tok512.model');

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function oneLineError(r: { status: number | null; stderr: string }, re: RegExp): void {
  assert.notEqual(r.status, 0);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^llama2: /);
  assert.match(lines[0]!, re);
}

// ---- story sources ---------------------------------------------------------------------------

test('stories: the three layouts, Python strip, separators', () => {
  const dir = tempDir();
  assert.deepEqual(splitTextStories('a b\nc\n<|endoftext|>\n\nd\n<|endoftext|>\n'), ['a b\nc', '\nd']);
  assert.equal(pyStrip('\ufeff x \u200a\x1c'), '\ufeff x', 'strips what Python strips, not U+FEFF');
  const jsonl = join(dir, 's.jsonl');
  writeFileSync(jsonl, '{"story": "one"}\n\n{"story": "two", "x": 1}\n');
  assert.deepEqual(readStories(jsonl), ['one', 'two']);
  const [shard] = writeShards(dir, 1, 3);
  assert.equal(readStories(shard!).length, 3);
});

test('stories: bad input is a FormatError naming the problem', () => {
  const dir = tempDir();
  const cases: Array<[string, string | Buffer, RegExp]> = [
    ['missing.json', '[{"story": "a"}, {"text": "b"}]', /record 1: missing "story" field/],
    ['notstring.json', '[{"story": 5}]', /"story" is not a string/],
    ['object.json', '{"story": "a"}', /expected a JSON array/],
    ['broken.json', '[{"story": "a"', /not valid JSON/],
    ['empty.json', '', /no stories found/],
    ['emptyarray.json', '[]', /no stories found/],
    ['empty.txt', '\n<|endoftext|>\n  \n', /no stories found/],
    ['bad.jsonl', '{"story": "a"}\nnope\n', /line 2: not valid JSON/],
    ['latin1.txt', Buffer.from([0x4f, 0x6e, 0x63, 0x65, 0x20, 0xe9, 0x74, 0xe9, 0x0a]), /invalid UTF-8 at byte 5/],
    ['surrogate.json', '[{"story": "a \\ud800 b"}]', /lone UTF-16 surrogate/],
  ];
  for (const [name, content, re] of cases) {
    const file = join(dir, name);
    writeFileSync(file, content);
    assert.throws(() => readStories(file), (err: Error) => err instanceof FormatError && re.test(err.message) && err.message.startsWith(file), name);
  }
  assert.throws(() => readStories(join(dir, 'nope.txt')), /no such file/);
  assert.throws(() => parseStories('x', '[{"story": "a"}]', 'json').concat(readStories(dir)), /is a directory/);
});

// ---- the BPE trainer ---------------------------------------------------------------------------

test('bpe: SentencePiece normalization, word splitting and piece rules', () => {
  assert.equal(normalizeSentence('  Once upon   a time '), '▁Once▁upon▁a▁time');
  assert.equal(normalizeSentence('a ▁'), '▁a', 'trailing ▁ go, literal or not');
  assert.equal(normalizeSentence('x <s> y</s>'), '▁x▁\t▁y\t', 'meta pieces become barriers');
  assert.equal(normalizeSentence('   '), '');
  assert.deepEqual(splitWords('▁a▁▁b▁c'), ['▁a', '▁▁b', '▁c']);
  assert.deepEqual(splitWords('ab▁c'), ['ab', '▁c']);
  for (const p of ['▁the', '▁▁', 'ing', '▁"', 'éa', 'ひらカタ', '5']) assert.equal(isValidPiece(p), true, p);
  for (const p of ['a▁', 'a.', '12', '▁1', 'a\tb', 'aΑ', ',▁', 'x'.repeat(17)]) assert.equal(isValidPiece(p), false, p);
});

test('bpe: a hand-checked tiny corpus', () => {
  // words ▁aaa ×2, ▁ab. Alphabet by frequency: a (7), ▁ (3), b (1). First merge ▁a (3). SentencePiece
  // counts ("a","a") once per "aaa" and forgets the overlapping second occurrence for good, so after
  // ▁a no "aa" is left: the merges go on ▁aa, ▁aaa. (spm_train 0.1.97 gives exactly this vocabulary.)
  const t = new BpeTrainer();
  t.addStory('aaa aaa ab');
  const r = t.train({ vocabSize: 259 + 3 + 3 });
  assert.deepEqual(r.pieces.slice(259).map((p) => p.piece), ['▁a', '▁aa', '▁aaa', 'a', '▁', 'b']);
  assert.deepEqual(r.pieces.slice(259).map((p) => p.score), [-0, -1, -2, -3, -4, -5]);
  assert.ok(Object.is(r.pieces[259]!.score, -0));
  assert.throws(() => t.train({ vocabSize: 261 }), (e: Error) => e instanceof UsageError && /use --vocab-size 262 or more/.test(e.message));
  assert.throws(() => t.train({ vocabSize: 300 }), (e: Error) => e instanceof UsageError && /too high for this input: at most 26\d/.test(e.message));
  assert.throws(() => new BpeTrainer().train({ vocabSize: 512 }), /no text/);
});

test('train-vocab on the TinyStories sample: tok512\'s layout, merges and compression, deterministic, fast', needsRefdata, () => {
  const t0 = performance.now();
  const trained = trainVocabulary([TRAIN()], 'tok512', { vocabSize: 512 });
  const seconds = (performance.now() - t0) / 1000;
  assert.ok(seconds < 60, `2 MB must train in under a minute, took ${seconds.toFixed(1)} s`);
  const ref512 = readSentencePieceModel(TOK512());
  const ours = trained.model;
  assert.equal(ours.pieces.length, 512);
  // layout: <unk> <s> </s>, 256 byte pieces, then NORMAL pieces scored 0, -1, -2, … as in tok512
  for (let i = 0; i < 259; i++) {
    assert.equal(ours.pieces[i]!.piece, ref512.pieces[i]!.piece);
    assert.equal(ours.pieces[i]!.type, ref512.pieces[i]!.type);
    assert.equal(ours.pieces[i]!.score, 0);
  }
  for (let i = 259; i < 512; i++) {
    assert.equal(ours.pieces[i]!.type, undefined);
    assert.equal(ours.pieces[i]!.score, -(i - 259));
  }
  // the same data family gives much the same merges: the first seven of tok512 are all there early
  const firstMerges = ours.pieces.slice(259, 259 + 12).map((p) => p.piece);
  for (const p of ['▁t', 'he', '▁a', '▁s', '▁w', 'nd', '▁the']) assert.ok(firstMerges.includes(p), `${p} in ${firstMerges.join(' ')}`);
  const refSet = new Set(ref512.pieces.map((p) => p.piece));
  assert.ok(ours.pieces.filter((p) => refSet.has(p.piece)).length >= 470);
  // the characters close the vocabulary, most frequent first; '▁' and 'e' lead as in tok512
  assert.equal(trained.mergeCount + trained.charCount, 512 - 259);
  assert.deepEqual(ours.pieces.slice(259 + trained.mergeCount, 259 + trained.mergeCount + 2).map((p) => p.piece), ['▁', 'e']);
  // trainer and normalizer specs: tok512's, except where the input, prefix and threads are recorded
  const strip = (s: object): object => ({ ...s, input: undefined, modelPrefix: undefined, numThreads: undefined, unkSurface: undefined, unknownFields: undefined });
  assert.deepEqual(strip(ours.trainerSpec), strip(ref512.trainerSpec));
  assert.deepEqual({ ...ours.normalizerSpec, unknownFields: undefined }, { ...ref512.normalizerSpec, unknownFields: undefined });
  // compression on the validation files: within 2% of tok512 (it may be better: this sample has
  // fewer distinct characters than the 10 shards tok512 saw, which leaves room for more merges)
  const mine = tokenizeStats(VALID(), Tokenizer.fromSentencePiece(ours));
  const theirs = tokenizeStats(VALID(), loadTokenizer(TOK512()));
  const ratio = mine.tokensPerByte / theirs.tokensPerByte;
  assert.ok(ratio <= 1.02 && ratio >= 0.95, `tokens/byte ${mine.tokensPerByte.toFixed(4)} vs tok512 ${theirs.tokensPerByte.toFixed(4)}`);
  // deterministic
  const again = trainVocabulary([TRAIN()], 'tok512', { vocabSize: 512 });
  assert.deepEqual(again.model.pieces, ours.pieces);
});

test('train-vocab output: the .model round-trips, the .bin is what export-tokenizer makes, both encode alike', needsRefdata, () => {
  const dir = tempDir();
  const trained = trainVocabulary([VALID()[0]!], 'x', { vocabSize: 400 });
  const paths = writeVocabulary(join(dir, 'sub', 'tok400'), trained.model);
  const model = readSentencePieceModel(paths.model);
  assert.deepEqual(model.pieces, trained.model.pieces);
  const fromModel = loadTokenizer(paths.model);
  const fromBin = loadTokenizer(paths.bin, 400);
  assert.deepEqual(readFileSync(paths.bin), Buffer.from(fromModel.toLlama2cBytes()));
  const text = 'Once upon a time, Lily saw a big dog. "Hi!" she said. 123 ☃';
  assert.deepEqual(fromBin.encode(text), fromModel.encode(text));
  assert.equal(fromModel.decode(fromModel.encode(text)), text);
  assert.equal(model.pieces[3]!.type, PieceType.BYTE);
});

// ---- pretokenize -------------------------------------------------------------------------------

test('pretokenize: the reference token counts with tok512 (BOS per story, no EOS), workers = in-thread', needsRefdata, async () => {
  const dir = tempDir();
  const inputs = [TRAIN(), ...VALID()];
  const stats = await pretokenize(inputs, TOK512(), join(dir, 'tok512'), { workers: 2 });
  assert.equal(stats[0]!.tokens, 1_031_666);
  assert.equal(stats[1]!.tokens + stats[2]!.tokens, 387_046);
  assert.deepEqual(readdirSync(join(dir, 'tok512')).sort(), ['train_first2316.bin', 'valid_first201.bin', 'valid_next781_heuristic_boundaries.bin']);
  const bin = readFileSync(join(dir, 'tok512', 'valid_first201.bin'));
  assert.equal(bin.length, 2 * stats[1]!.tokens);
  const ids = new Uint16Array(bin.buffer, bin.byteOffset, bin.length / 2);
  assert.equal(ids.filter((t) => t === 1).length, 201, 'one BOS per story');
  assert.equal(ids.filter((t) => t === 2).length, 0, 'no EOS');
  const tok = loadTokenizer(TOK512());
  const first = readStories(VALID()[0]!)[0]!;
  assert.deepEqual([...ids.subarray(0, tok.encode(first.trim()).length)], tok.encode(first.trim()));
  // the single-thread path writes the same bytes
  const single = join(dir, 'single.bin');
  pretokenizeShard(VALID()[0]!, tok, single);
  assert.deepEqual(readFileSync(single), bin);
});

test('pretokenize: bad inputs and a vocabulary too large for uint16 are one-line CLI errors, nothing written', needsRefdata, () => {
  const dir = tempDir();
  const good = join(dir, 'good.txt');
  writeFileSync(good, 'Once upon a time.\n<|endoftext|>\n');
  const cases: Array<[string, string | Buffer, RegExp]> = [
    ['nostory.json', '[{"story": "a"}, {"summary": "b"}]', /record 1: missing "story" field/],
    ['latin1.txt', Buffer.from([0x61, 0xff, 0x62]), /invalid UTF-8 at byte 1/],
    ['empty.txt', '', /no stories found/],
  ];
  for (const [name, content, re] of cases) {
    const bad = join(dir, name);
    writeFileSync(bad, content);
    const out = join(dir, `out-${name}`);
    oneLineError(cli(['pretokenize', '--tokenizer', TOK512(), '--quiet', '--workers', '1', '--input', good, bad, '--out', out]), re);
    assert.equal(existsSync(join(out, name.replace(/\.\w+$/, '.bin'))), false, name);
    // with workers too
    oneLineError(cli(['pretokenize', '--tokenizer', TOK512(), '--quiet', '--workers', '2', '--input', good, bad, '--out', out]), re);
  }
  // 70000 pieces do not fit in uint16
  const big = readSentencePieceModel(TOK512());
  for (let i = 0; big.pieces.length < 70000; i++) big.pieces.push({ piece: `▁x${i}`, score: -1000 - i });
  const bigPath = join(dir, 'big.model');
  writeSentencePieceModel(bigPath, big);
  oneLineError(cli(['pretokenize', '--tokenizer', bigPath, '--input', good, '--out', join(dir, 'o')]), /70000 tokens.*uint16/);
  oneLineError(cli(['pretokenize', '--input', good]), /needs --tokenizer/);
  oneLineError(cli(['pretokenize', '--tokenizer', TOK512(), '--dir', join(dir, 'nothing')]), /TinyStories_all_data does not exist — run llama2 download tinystories --dir .*nothing first/);
  oneLineError(cli(['pretokenize', '--tokenizer', TOK512(), '--input', good, join(dir, 'x', 'good.txt'), '--out', join(dir, 'o')]), /no such file|both be written/);
});

test('tokenize-stats: counts, vocabulary use and the CLI', needsRefdata, () => {
  const s = tokenizeStats([VALID()[0]!], loadTokenizer(TOK512()), 5);
  assert.equal(s.stories, 201);
  assert.equal(s.tokens + s.stories, 148644 / 2, 'the pretokenized count minus one BOS per story');
  assert.equal(s.bytes, readStories(VALID()[0]!).reduce((n, st) => n + Buffer.byteLength(pyStrip(st)), 0));
  assert.ok(s.idsUsed > 200 && s.idsUsed <= 512);
  assert.equal(s.top.length, 5);
  assert.ok(s.top[0]!.count >= s.top[1]!.count);
  const r = cli(['tokenize-stats', '--tokenizer', TOK512(), '--json', VALID()[0]!]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).tokens, s.tokens);
  oneLineError(cli(['tokenize-stats', '--tokenizer', TOK512()]), /needs story files/);
});

test('train-vocab CLI: bad inputs are one-line errors, no output written', () => {
  const dir = tempDir();
  const empty = join(dir, 'empty.txt');
  writeFileSync(empty, '');
  const small = join(dir, 'small.txt');
  writeFileSync(small, 'the cat sat on the mat\n<|endoftext|>\n');
  oneLineError(cli(['train-vocab', '--input', small]), /needs --vocab-size/);
  oneLineError(cli(['train-vocab', '--vocab-size', '512']), /needs --input/);
  oneLineError(cli(['train-vocab', '--vocab-size', '100', '--input', small]), /must be in \[260/);
  oneLineError(cli(['train-vocab', '--quiet', '--vocab-size', '512', '--input', empty, '-o', join(dir, 'a')]), /no stories found/);
  oneLineError(cli(['train-vocab', '--quiet', '--vocab-size', '4096', '--input', small, '-o', join(dir, 'b')]), /too high for this input/);
  assert.deepEqual(readdirSync(dir).sort(), ['empty.txt', 'small.txt']);
});

// ---- the chain ---------------------------------------------------------------------------------

test('chain: download (local server) → train-vocab → pretokenize → train', async () => {
  const dir = tempDir();
  const { bytes } = await makeArchive(tempDir(), 3, 60);
  const server = await serve(bytes, 'drop-once');
  try {
    const child = spawn(process.execPath, [cliPath, 'download', 'tinystories', '--dir', dir, '--url', server.url, '--quiet'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    assert.equal(await new Promise<number | null>((resolve) => child.on('close', resolve)), 0, stderr);
  } finally {
    await server.close();
  }
  const shards = join(dir, 'TinyStories_all_data');
  assert.deepEqual(readdirSync(shards).sort(), ['.complete', 'data00.json', 'data01.json', 'data02.json']);

  const prefix = join(dir, 'tok360');
  const tv = cli(['train-vocab', '--vocab-size', '360', '--input', join(shards, 'data01.json'), join(shards, 'data02.json'), '-o', prefix, '--quiet']);
  assert.equal(tv.status, 0, tv.stderr);
  assert.ok(statSync(`${prefix}.model`).size > 0 && statSync(`${prefix}.bin`).size > 0);

  const pt = cli(['pretokenize', '--tokenizer', `${prefix}.model`, '--dir', dir, '--quiet']);
  assert.equal(pt.status, 0, pt.stderr);
  const outDir = join(dir, 'tok360');
  assert.deepEqual(readdirSync(outDir).filter((f) => f.endsWith('.bin')).sort(), ['data00.bin', 'data01.bin', 'data02.bin']);
  const ids = new Uint16Array(readFileSync(join(outDir, 'data01.bin')).buffer.slice(0));
  assert.equal(ids.filter((t) => t === 1).length, 60);
  assert.ok(ids.every((t) => t < 360));
  const tok = loadTokenizer(`${prefix}.bin`, 360);
  assert.match(tok.decode([...ids.subarray(0, 40)]), /^Once upon a time, there was a little girl named/);

  const tr = cli([
    'train', '--data', outDir, '--out-dir', join(dir, 'out'), '--vocab-size', '360', '--dim', '16', '--n-layers', '1',
    '--n-heads', '2', '--n-kv-heads', '2', '--max-seq-len', '32', '--batch-size', '2', '--gradient-accumulation-steps', '1',
    '--max-iters', '2', '--eval-interval', '2', '--eval-iters', '1', '--warmup-iters', '1', '--always-save-checkpoint', 'true',
  ]);
  assert.equal(tr.status, 0, tr.stderr);
  assert.ok(existsSync(join(dir, 'out', 'model.bin')), readdirSync(join(dir, 'out')).join(' '));
});
