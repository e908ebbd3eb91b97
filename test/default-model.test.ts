// The default model shipped in models/ (made by `npm run train:default`, described in
// models/README.md): it loads with its tokenizer, tells the same story twice at temperature 0, and
// its validation loss is the one its card states.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LanguageModel, createKernels, evaluateLoss, loadTokenizer, loadTransformer } from '../src/index.js';
import { pyStrip, readStories } from '../src/data/stories.js';
import { needsRefdata, projectRoot, ref } from './refdata.js';

const models = join(projectRoot, 'models');
const modelPath = join(models, 'default.bin');
const tokenizerBin = join(models, 'tokenizer.bin');
const tokenizerModel = join(models, 'tokenizer.model');
/** Windows of 256 tokens the card's test figure covers (all 1,475 windows take too long for a test). */
const FIRST_WINDOWS = 64;
const T = 256;

test('the default model is a v1 checkpoint under 10 MB and loads with both forms of its tokenizer', async () => {
  assert.ok(statSync(modelPath).size <= 10 * 1024 * 1024, 'models/default.bin must stay at most 10 MB');
  const lm = await LanguageModel.load(modelPath, { tokenizer: tokenizerBin, kernels: 'js' });
  assert.equal(lm.config.vocabSize, 512);
  assert.equal(lm.config.seqLen, 256);
  // tokenizer.bin (llama2.c) and tokenizer.model (SentencePiece) are the same vocabulary.
  const fromModel = loadTokenizer(tokenizerModel, 512);
  const text = 'Once upon a time, Lily saw a big red ball. "Can I play?" she asked. 123 ☀';
  assert.deepEqual(fromModel.encode(text, { bos: true }), lm.encode(text, { bos: true }));
  assert.equal(lm.decode(lm.encode(text, { bos: false })), text);
});

test('greedy generation is deterministic and reads like a story', async () => {
  const kernels = await createKernels({ kind: 'wasm', threads: 1 });
  try {
    const first = (await (await LanguageModel.load(modelPath, { tokenizer: tokenizerBin, kernels })).complete({ temperature: 0 })).text;
    const second = (await (await LanguageModel.load(modelPath, { tokenizer: tokenizerBin, kernels })).complete({ temperature: 0 })).text;
    assert.equal(second, first);
    const story = first.trim();
    assert.match(story, /^[A-Z]/, `a story starts with a capital letter: ${story.slice(0, 40)}`);
    const words = story.split(/\s+/).filter((w) => /[a-z]/i.test(w));
    assert.ok(words.length >= 20, `at least 20 words, got ${words.length}: ${story}`);
    // The plain TypeScript kernels tell the same story.
    const js = (await (await LanguageModel.load(modelPath, { tokenizer: tokenizerBin, kernels: 'js' })).complete({ temperature: 0 })).text;
    assert.equal(js, first);
  } finally {
    await kernels.close();
  }
});

test('validation loss over the first windows equals the model card within 0.5%', needsRefdata, async () => {
  const card = readFileSync(join(models, 'README.md'), 'utf8');
  const m = /first 64 windows[^*]*\*\*([0-9]+\.[0-9]+)\*\*/.exec(card);
  assert.ok(m, 'models/README.md states the loss over the first 64 windows in bold');
  const stated = Number(m[1]);

  // The validation stream exactly as `npm run train:default` builds it: both files in order, each
  // story stripped and encoded with BOS first, no EOS, by the committed tokenizer.
  const tokenizer = loadTokenizer(tokenizerModel, 512);
  const needed = FIRST_WINDOWS * T + 1;
  const ids: number[] = [];
  files: for (const f of ['valid_first201.txt', 'valid_next781_heuristic_boundaries.txt']) {
    for (const story of readStories(ref('data', 'tinystories', f))) {
      ids.push(...tokenizer.encode(pyStrip(story), { bos: true, eos: false }));
      if (ids.length >= needed) break files;
    }
  }
  assert.ok(ids.length >= needed, `the validation stories hold ${ids.length} tokens`);
  ids.length = needed;
  const kernels = await createKernels({ kind: 'wasm', threads: 1 });
  try {
    const r = evaluateLoss(loadTransformer(modelPath, kernels), Uint16Array.from(ids), T);
    assert.equal(r.windows, FIRST_WINDOWS);
    assert.ok(Math.abs(r.loss - stated) <= 0.005 * stated, `loss ${r.loss} vs the card's ${stated}`);
  } finally {
    await kernels.close();
  }
});
