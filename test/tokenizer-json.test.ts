// Hugging Face tokenizer.json (Llama 2 style): a fixture built from tok512.model (and from Llama
// 2's 32k tokenizer.model) the way transformers' LlamaConverter builds one gives SentencePiece's
// ids on its goldens; hand-written files in both layouts transformers writes (the "legacy"
// normalizer and the Metaspace pre-tokenizer) load; foreign tokenizers are refused with one line;
// 200 mutated files never crash the reader.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LlamaError } from '../src/errors.js';
import { loadTokenizer } from '../src/tokenizer/index.js';
import { tokenizerJson } from '../src/tokenizer/tokenizer-json.js';
import { needsRefdata, ref } from './refdata.js';

const tmp = mkdtempSync(join(tmpdir(), 'llama2ts-tokjson-'));

interface SpGolden {
  cases: Array<{ text: string; ids: number[]; decoded: string }>;
}

test('tokenizer.json built from tok512.model and the 32k tokenizer.model: SentencePiece\'s ids and text on every golden case', needsRefdata, () => {
  for (const [model, golden, merges] of [
    [ref('data', 'models', 'tok512.model'), 'tok512_sentencepiece.json', 165],
    [ref('data', 'tokenizers', 'tokenizer.model'), 'tok32000_sentencepiece.json', 61249],
  ] as const) {
    const json = tokenizerJson(loadTokenizer(model).vocabulary) as { model: { merges: string[][] }; normalizer: unknown };
    // as transformers' LlamaConverter: every split of a piece into two pieces, in score order
    assert.equal(json.model.merges.length, merges, `${golden}: merges`);
    const path = join(tmp, `${golden}.tokenizer.json`);
    writeFileSync(path, JSON.stringify(json, null, 2));
    const tok = loadTokenizer(path);
    assert.equal(tok.format, 'tokenizer.json');
    const g = JSON.parse(readFileSync(ref('golden', golden), 'utf8')) as SpGolden;
    assert.equal(g.cases.length, 17);
    for (const c of g.cases) {
      assert.deepEqual(tok.encode(c.text), c.ids, `${golden}: ${JSON.stringify(c.text)}`);
      assert.equal(tok.decode(c.ids), c.decoded, `${golden}: decode ${JSON.stringify(c.text)}`);
    }
  }
});

test('the 32k fixture\'s first merges are Llama 2\'s ("▁ t", "e r", "i n", "▁ a")', needsRefdata, () => {
  const json = tokenizerJson(loadTokenizer(ref('data', 'tokenizers', 'tokenizer.model')).vocabulary) as { model: { merges: string[][] } };
  assert.deepEqual(json.model.merges.slice(0, 4), [['▁', 't'], ['e', 'r'], ['i', 'n'], ['▁', 'a']]);
});

/** A small Llama-style tokenizer.json: 3 specials, 256 byte pieces, a few pieces and merges. */
function handWritten(layout: 'legacy' | 'metaspace'): Record<string, unknown> {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  const pieces = ['▁t', 'he', '▁the', '▁', 't', 'h', 'e', 'a', '▁a'];
  pieces.forEach((p, i) => (vocab[p] = 259 + i));
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: layout === 'legacy'
      ? { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] }
      : null,
    pre_tokenizer: layout === 'legacy' ? null : { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
    post_processor: null,
    decoder: null,
    model: {
      type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab,
      merges: layout === 'legacy' ? ['▁ t', 'h e', '▁t he', '▁ a'] : [['▁', 't'], ['h', 'e'], ['▁t', 'he'], ['▁', 'a']],
    },
  };
}

test('hand-written tokenizer.json in both layouts transformers writes: the same ids', () => {
  for (const layout of ['legacy', 'metaspace'] as const) {
    const path = join(tmp, `hand-${layout}.json`);
    writeFileSync(path, JSON.stringify(handWritten(layout)));
    const tok = loadTokenizer(path);
    // "the a" → ▁the ▁a; "z" has no piece → byte fallback <0x7A>
    assert.deepEqual(tok.encode('the a z'), [1, 261, 267, 262, 3 + 0x7a], layout);
    assert.equal(tok.decode([1, 261, 267, 262, 3 + 0x7a]), 'the a z');
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
  }
});

function expectRefused(json: unknown, pattern: RegExp): void {
  const path = join(tmp, `bad-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(path, typeof json === 'string' ? json : JSON.stringify(json));
  assert.throws(() => loadTokenizer(path), (e: unknown) => {
    assert.ok(e instanceof LlamaError, `expected a LlamaError, got ${e}`);
    assert.ok(!e.message.includes('\n'), 'one line');
    assert.ok(e.message.startsWith(path), 'names the file');
    assert.match(e.message, pattern);
    return true;
  });
}

test('foreign tokenizers and broken files are refused with one line naming the file', () => {
  const base = handWritten('legacy');
  const model = base['model'] as Record<string, unknown>;
  expectRefused({ ...base, normalizer: null, pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false } }, /pre_tokenizer .*ByteLevel/);
  expectRefused({ ...base, model: { ...model, type: 'WordPiece' } }, /model type "WordPiece" is not supported/);
  expectRefused({ ...base, normalizer: { type: 'NFKC' } }, /normalizer .*NFKC/);
  expectRefused({ ...base, model: { ...model, merges: ['▁ zz'] } }, /merge 0 .* is not of vocabulary pieces/);
  expectRefused({ ...base, model: { ...model, vocab: { ...(model['vocab'] as object), '▁x': 3 } } }, /id 3 is given to two pieces/);
  expectRefused({ ...base, model: { ...model, unk_token: '<nope>' } }, /unk_token "<nope>" is not in the vocabulary/);
  expectRefused('{"model": ', /not valid JSON/);
  expectRefused({ model: 3 }, /no "model" object/);
});

test('200 mutated tokenizer.json files: a tokenizer or a one-line LlamaError, never anything else', () => {
  const good = Buffer.from(JSON.stringify(handWritten('legacy')));
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
  let loaded = 0;
  for (let trial = 0; trial < 200; trial++) {
    const b = Buffer.from(good);
    const edits = 1 + rand(8);
    for (let e = 0; e < edits; e++) b[rand(b.length)] = ' "{}[]:,0123456789abnlt\\'.charCodeAt(rand(26));
    const text = trial % 10 === 0 ? b.subarray(0, rand(b.length)) : b;
    const path = join(tmp, `mutated-${trial}.json`);
    writeFileSync(path, text);
    try {
      const tok = loadTokenizer(path);
      tok.decode(tok.encode('the a z'));
      loaded++;
    } catch (e) {
      assert.ok(e instanceof LlamaError, `trial ${trial}: ${(e as Error).stack}`);
      assert.ok(!e.message.includes('\n'), `trial ${trial}: one line`);
    }
  }
  assert.ok(loaded < 200, 'mutations are caught');
});
