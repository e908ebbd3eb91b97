// The generation loop past the context window (src/infer/generate.ts): when the KV cache is full the
// ContextWindow shifts it — keeping the first `keep` positions, dropping the older half of the
// rest — so run, chat, the library and the server generate any number of tokens. A Recorder
// wraps the real engine and follows which token sits at each cache position through the shifts.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChatMessage, chat, systemPromptTokens, renderUserTurn } from '../src/infer/chat.js';
import { encodeChat } from '../src/infer/chat-format.js';
import { templateChat } from '../src/infer/template-chat.js';
import type { InferenceEngine } from '../src/infer/engine.js';
import { loadTransformer } from '../src/infer/load.js';
import { ContextWindow, generate, type GenerateOptions, type GenerationResult, generateFromIds, truncatePrompt } from '../src/infer/generate.js';
import { LanguageModel } from '../src/infer/model.js';
import { createKernels } from '../src/kernels/kernel-set.js';
import { loadTokenizer } from '../src/tokenizer/index.js';
import { needsRefdata, ref } from './refdata.js';
import { llama2Run } from './server-fixtures.js';
import { readStories } from '../src/data/stories.js';

/** The real engine, plus the token at each position of its cache and the shifts it was asked for. */
class Recorder implements InferenceEngine {
  readonly cache: number[] = [];
  readonly shifts: Array<[keep: number, drop: number, length: number]> = [];
  constructor(readonly inner: InferenceEngine) {}
  get config() {
    return this.inner.config;
  }
  get backend() {
    return this.inner.backend;
  }
  forward(token: number, pos: number): Float32Array {
    this.put(token, pos);
    return this.inner.forward(token, pos);
  }
  advance(token: number, pos: number): void {
    this.put(token, pos);
    this.inner.advance(token, pos);
  }
  prefill(tokens: ArrayLike<number>, pos: number, visit?: (index: number, logits: Float32Array) => void): void {
    for (let i = 0; i < tokens.length; i++) this.put(tokens[i]!, pos + i);
    this.inner.prefill(tokens, pos, visit);
  }
  shift(keep: number, drop: number, length: number): void {
    assert.equal(length, this.cache.length);
    this.shifts.push([keep, drop, length]);
    this.cache.splice(keep, drop);
    this.inner.shift(keep, drop, length);
  }
  session(): Recorder {
    return new Recorder(this.inner.session());
  }
  private put(token: number, pos: number): void {
    // the next position, or an earlier one (a rewind: what followed it is overwritten)
    assert.ok(pos <= this.cache.length, `position ${pos} after ${this.cache.length} held: no gaps`);
    this.cache.length = pos;
    this.cache.push(token);
  }
}

async function setup() {
  const kernels = await createKernels({ kind: 'wasm', threads: 1 });
  const engine = loadTransformer(ref('data', 'models', 'stories260K.bin'), kernels);
  const tokenizer = loadTokenizer(ref('data', 'models', 'tok512.bin'), 512);
  return { kernels, engine, tokenizer };
}

test('1500 tokens through a 512-token window: a shift at each full cache, BOS kept, the first 512 positions as without shifts', needsRefdata, async () => {
  const { kernels, engine, tokenizer } = await setup();
  try {
    const rec = new Recorder(engine);
    const request = { promptIds: [1], maxTokens: 1500, stopTokens: [], temperature: 0.8, seed: 3 };
    const texts: string[] = [];
    const gen = generateFromIds(rec, tokenizer, request);
    let r = gen.next();
    for (; !r.done; r = gen.next()) texts.push(r.value);
    assert.equal(r.value.completionTokens, 1500);
    assert.equal(r.value.positions, 1500);
    // full at 512; each shift keeps BOS and drops floor(511 / 2) = 255
    assert.equal(r.value.contextShifts, Math.ceil((1500 - 512) / 255));
    assert.deepEqual(rec.shifts, Array(r.value.contextShifts).fill([1, 255, 512]));
    assert.equal(rec.cache[0], 1, 'BOS stays at position 0');
    // the first window is what a generation that never reaches the end of the window produces
    const plain = [...generateFromIds(engine.session(), tokenizer, { ...request, maxTokens: 511 })].join('');
    assert.equal(texts.slice(0, 511).join(''), plain);
    assert.ok(texts.join('').length > 2.5 * plain.length);
  } finally {
    await kernels.close();
  }
});

test('a prompt longer than the window is cut as the shifts would have cut it, and says so', needsRefdata, async () => {
  const { kernels, engine, tokenizer } = await setup();
  try {
    const ids = tokenizer.encode('Once upon a time, there was a big dog. '.repeat(120), { bos: true, eos: false });
    assert.ok(ids.length > 2 * 512);
    for (const keep of [0, 1, 40, 256]) {
      // feed the whole prompt through a window: what stays in the cache
      const rec = new Recorder(engine.session());
      const window = new ContextWindow(rec, keep);
      for (const id of ids) window.advance(id);
      const cut = truncatePrompt(ids, 512, keep);
      assert.deepEqual(cut, rec.cache, `keep ${keep}`);
      assert.deepEqual(cut.slice(0, keep), ids.slice(0, keep));
      assert.ok(cut.length <= 512);
      // the loop feeds the cut prompt without running the dropped tokens
      const fed = new Recorder(engine.session());
      const gen = generateFromIds(fed, tokenizer, { promptIds: ids, maxTokens: 3, keep, temperature: 0 });
      let r = gen.next();
      while (!r.done) r = gen.next();
      assert.equal(r.value.promptTokens, ids.length);
      assert.equal(r.value.truncatedTokens, ids.length - cut.length);
      assert.deepEqual(fed.cache.slice(0, cut.length), [...cut]);
    }
    const short = [1, 2, 3];
    assert.equal(truncatePrompt(short, 512, 1), short);
    assert.throws(() => new ContextWindow(engine, 257), /keep must be an integer from 0 to half the context window \(256\)/);
  } finally {
    await kernels.close();
  }
});

test('generate(): steps past the window run them all; keep is checked', needsRefdata, async () => {
  const kernels = await createKernels({ kind: 'wasm', threads: 1 });
  try {
    const lm = await LanguageModel.load(ref('data', 'models', 'stories260K.bin'), { tokenizer: ref('data', 'models', 'tok512.bin'), kernels });
    const run = (options: GenerateOptions): GenerationResult => {
      const gen = generate(lm.transformer, lm.tokenizer, options);
      for (;;) {
        const r = gen.next();
        if (r.done) return r.value;
      }
    };
    const summary = run({ steps: 1100, stopAtBos: false, temperature: 0.9, seed: 11, keep: 100 });
    assert.equal(summary.positions, 1100);
    // full at 512, then every floor((512 - 100) / 2) = 206 positions
    assert.equal(summary.contextShifts, Math.ceil((1100 - 512) / 206));
    assert.throws(() => run({ steps: 10, keep: 300 }), /keep must be an integer from 0 to half the context window/);
    // the library's maxTokens runs past the window too
    const long = await lm.complete({ maxTokens: 700, temperature: 0, prompt: 'Once upon a time' });
    assert.ok(long.finishReason === 'stop' || long.positions > 512, `${long.finishReason} after ${long.positions} positions`);
  } finally {
    await kernels.close();
  }
});

test('the library: maxTokens past the window (a story cut at 450 tokens, 200 more) = llama2 run -n; a chat keeps its system prompt, as llama2 run -m chat', needsRefdata, async () => {
  const lm = await LanguageModel.load(ref('data', 'models', 'stories260K.bin'), { tokenizer: ref('data', 'models', 'tok512.bin'), threads: 1 });
  try {
    const tok = lm.tokenizer;
    const story = tok.encode(readStories(ref('data', 'tinystories', 'valid_first201.txt'))[189]!.trim(), { bos: true });
    const prompt = tok.decode(story.slice(1, 450));
    const done = await lm.complete({ prompt, maxTokens: 200, temperature: 0 });
    assert.equal(done.completionTokens, 200);
    assert.equal(done.contextShifts, 1);
    assert.equal(prompt + done.text, llama2Run(['-i', prompt, '-n', String(done.promptTokens - 1 + 200), '-t', '0']));
    const system = 'You tell stories.';
    const user = tok.decode(story.slice(1, 400));
    const answer = await lm.chatComplete([{ role: 'system', content: system }, { role: 'user', content: user }], { maxTokens: 300, temperature: 0 });
    assert.ok(answer.contextShifts > 0);
    const out = llama2Run(['-m', 'chat', '-y', system, '-i', user, '-n', String(answer.promptTokens - 1 + 300), '-t', '0']);
    assert.ok(out.startsWith(`Assistant: ${answer.text}\n`));
  } finally {
    await lm.close();
  }
});

test('chat past the window: every turn answered, BOS and the system prompt kept through the shifts', needsRefdata, async () => {
  const { kernels, engine, tokenizer } = await setup();
  try {
    const system = 'You are a storyteller who tells short stories about animals.';
    const users = Array.from({ length: 8 }, (_, i) => `Tell me a long story about a ${['cat', 'dog', 'bird', 'fish'][i % 4]} who likes to play in the park with friends.`);
    const messages: ChatMessage[] = [{ role: 'system', content: system }, { role: 'user', content: users[0]! }];
    const first = tokenizer.encode(renderUserTurn(users[0]!, system), { bos: true, eos: false });
    const keep = systemPromptTokens(tokenizer, messages, first, 512);
    assert.ok(tokenizer.decode(first.slice(0, keep)).includes(system), tokenizer.decode(first.slice(0, keep)));
    assert.equal(systemPromptTokens(tokenizer, [messages[1]!], first, 512), 1, 'no system prompt: BOS');

    const rec = new Recorder(engine);
    let out = '';
    const lines = users.slice(1);
    await chat(rec, tokenizer, {
      readLine: async () => lines.shift() ?? null,
      write: (text) => {
        out += text;
      },
    }, { systemPrompt: system, userPrompt: users[0]!, temperature: 0.8, seed: 9 });
    assert.equal(out.split('Assistant: ').length - 1, users.length, out);
    assert.ok(rec.shifts.length > 0, 'the conversation outgrew the window');
    for (const [k] of rec.shifts) assert.equal(k, keep);
    assert.deepEqual(rec.cache.slice(0, keep), first.slice(0, keep));
    assert.doesNotMatch(out, /limit of/);
  } finally {
    await kernels.close();
  }
});

test('ContextWindow.resume: a re-rendered sequence goes on from the first id the cache does not hold, through shifts', needsRefdata, async () => {
  const { kernels, engine } = await setup();
  try {
    const seq = Array.from({ length: 1300 }, (_, i) => (i === 0 ? 1 : 3 + ((i * 7919) % 500)));
    const rec = new Recorder(engine);
    const window = new ContextWindow(rec, 10);
    for (const id of seq.slice(0, 1000)) window.advance(id);
    assert.equal(window.shifts, 2);
    assert.deepEqual([...window.ids.subarray(0, window.length)], rec.cache);
    // the same beginning and more: nothing is fed again
    assert.equal(window.resume(seq), 1000);
    assert.equal(window.length, 1000 - window.dropped);
    // a difference inside the cache: rewound to it
    const changed = [...seq];
    changed[990] = 4;
    assert.equal(window.resume(changed), 990);
    assert.equal(window.length, 990 - window.dropped);
    // a difference among the dropped tokens is out of view: not a difference
    changed[20] = 4;
    assert.equal(window.resume(changed), 990);
    // a kept token that differs: from the start
    changed[5] = 4;
    assert.equal(window.resume(changed), 0);
    assert.equal(window.length, 0);
    // the last id is always run again
    const fresh = new ContextWindow(engine.session(), 1);
    for (const id of seq.slice(0, 10)) fresh.advance(id);
    assert.equal(fresh.resume(seq.slice(0, 10)), 9);
  } finally {
    await kernels.close();
  }
});

test('a chat template conversation slides too: every turn answered, the system prompt kept', needsRefdata, async () => {
  const kernels = await createKernels({ kind: 'wasm', threads: 1 });
  try {
    const folder = ref('golden', 'hf', 'hf_gqa_f32');
    const lm = await LanguageModel.load(folder, { kernels, contextLength: 64 });
    assert.equal(lm.config.seqLen, 64);
    const rec = new Recorder(lm.transformer);
    const system = 'Be brief.';
    const users = ['Hello', 'Tell me about a cat.', 'And a dog?', 'Why?', 'Thanks'];
    const lines = users.slice(1);
    let out = '';
    await templateChat(rec, lm.tokenizer, lm.chatFormat, { readLine: async () => lines.shift() ?? null, write: (t) => { out += t; } },
      { systemPrompt: system, userPrompt: users[0]!, temperature: 0.8, seed: 5 });
    assert.equal(out.split('Assistant: ').length - 1, users.length, out);
    assert.ok(rec.shifts.length > 2, `${rec.shifts.length} shifts`);
    const messages: ChatMessage[] = [{ role: 'system', content: system }, { role: 'user', content: users[0]! }];
    const first = encodeChat(lm.chatFormat, lm.tokenizer, messages);
    const keep = systemPromptTokens(lm.tokenizer, messages, first, 64, (m) => lm.chatFormat.parts(m, lm.tokenizer));
    assert.ok(keep > 3 && lm.tokenizer.decode(first.slice(0, keep)).includes(system));
    for (const [k] of rec.shifts) assert.equal(k, keep);
    assert.deepEqual(rec.cache.slice(0, keep), first.slice(0, keep));
  } finally {
    await kernels.close();
  }
});
