// Chat templates: @huggingface/jinja renders every case of ../shared/golden/chat_templates.json
// exactly as transformers does (and raises where it raises); rendered special tokens become their
// ids; a model folder's template is what the library, `llama2 run -m chat` and the server's
// /v1/chat/completions use, and Llama 2's [INST] stays the default.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { LlamaError } from '../src/errors.js';
import { encodeConversation } from '../src/infer/chat.js';
import { ChatTemplate, encodeChat, LLAMA2_CHAT, splitSpecialTokens } from '../src/infer/chat-format.js';
import { templateChat } from '../src/infer/template-chat.js';
import { LanguageModel } from '../src/infer/model.js';
import { createKernels } from '../src/kernels/kernel-set.js';
import { startServer } from '../src/server/http.js';
import { loadServedModel } from '../src/server/served-model.js';
import { loadTokenizer } from '../src/tokenizer/index.js';
import { cliPath, needsRefdata, ref } from './refdata.js';

type Role = 'system' | 'user' | 'assistant';
interface Golden {
  templates: Record<string, string>;
  conversations: Record<string, Array<{ role: Role; content: string }>>;
  cases: Array<{ template: string; conversation: string; add_generation_prompt: boolean; rendered?: string; error?: string }>;
}

const golden = (): Golden => JSON.parse(readFileSync(ref('golden', 'chat_templates.json'), 'utf8')) as Golden;
const HF_GQA = () => ref('golden', 'hf', 'hf_gqa_f32');

test('every golden chat template case renders exactly as transformers renders it', needsRefdata, () => {
  const g = golden();
  assert.equal(g.cases.length, 24);
  for (const c of g.cases) {
    const t = new ChatTemplate({ template: g.templates[c.template]!, bosToken: '<s>', eosToken: '</s>', file: 'golden' });
    const what = `${c.template} ${c.conversation} ${c.add_generation_prompt}`;
    if (c.error !== undefined) {
      assert.throws(() => t.render(g.conversations[c.conversation]!, c.add_generation_prompt), (e: unknown) => {
        assert.ok(e instanceof LlamaError, what);
        assert.equal(e.message, `chat template: ${c.error}`);
        return true;
      });
    } else {
      assert.equal(t.render(g.conversations[c.conversation]!, c.add_generation_prompt), c.rendered, what);
    }
  }
  assert.throws(() => new ChatTemplate({ template: '{% for %}', bosToken: '<s>', eosToken: '</s>', file: 'x.json' }),
    (e: unknown) => e instanceof LlamaError && /^x\.json: the chat template does not parse/.test(e.message));
});

test('special tokens in rendered text become their ids; the Llama 2 template gives the default format\'s ids', needsRefdata, () => {
  const tok = loadTokenizer(ref('data', 'models', 'tok512.model'));
  assert.deepEqual(splitSpecialTokens('<s>[INST] hi [/INST] yo </s><s><unk>x', tok), [
    { text: '', bos: false, eos: false, special: 1 },
    { text: '[INST] hi [/INST] yo ', bos: false, eos: false },
    { text: '', bos: false, eos: false, special: 2 },
    { text: '', bos: false, eos: false, special: 1 },
    { text: '', bos: false, eos: false, special: 0 },
    { text: 'x', bos: false, eos: false },
  ]);
  const g = golden();
  const llama2 = new ChatTemplate({ template: g.templates['llama2']!, bosToken: '<s>', eosToken: '</s>', file: 'golden' });
  for (const name of ['system_user', 'unicode']) {
    const messages = g.conversations[name]!;
    assert.deepEqual(encodeChat(llama2, tok, messages), encodeConversation(tok, messages), name);
    assert.deepEqual(encodeChat(LLAMA2_CHAT, tok, messages), encodeConversation(tok, messages), name);
  }
});

test('a folder\'s chat template: the library and the server use it', needsRefdata, async () => {
  const messages = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'Tell me about a cat.' }];
  const lm = await LanguageModel.load(HF_GQA(), { kernels: 'js' });
  assert.ok(lm.chatFormat instanceof ChatTemplate);
  const ids = lm.encodeChat(messages);
  // zephyr: <|system|>\nBe brief.</s>\n<|user|>\nTell me about a cat.</s>\n<|assistant|>\n
  const tok = lm.tokenizer;
  const expected = [
    ...tok.encode('<|system|>\nBe brief.', { bos: false }), tok.eosId,
    ...tok.encode('\n<|user|>\nTell me about a cat.', { bos: false }), tok.eosId,
    ...tok.encode('\n<|assistant|>\n', { bos: false }),
  ];
  assert.deepEqual(ids, expected);
  // a folder without a template: Llama 2's [INST]
  assert.equal((await LanguageModel.load(ref('golden', 'hf', 'hf_stories260K'), { kernels: 'js' })).chatFormat, LLAMA2_CHAT);

  const kernels = await createKernels({ kind: 'js' });
  const model = loadServedModel({ modelPath: HF_GQA(), tokenizerPath: ref('golden', 'hf', 'hf_gqa_f32', 'tokenizer.model') }, kernels);
  assert.equal(model.id, 'hf_gqa_f32');
  assert.equal(model.modelFile, undefined, 'a folder is not offered to the playground');
  const { server, url } = await startServer(model, { port: 0 });
  try {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ messages, max_tokens: 3, temperature: 0 }),
    });
    const body = await res.json() as { usage: { prompt_tokens: number } };
    assert.equal(res.status, 200);
    assert.equal(body.usage.prompt_tokens, ids.length);
  } finally {
    await server.close(1000);
  }
});

test('llama2 run -m chat with a folder\'s template runs', needsRefdata, () => {
  const r = spawnSync(process.execPath, [cliPath, 'run', HF_GQA(), '-m', 'chat', '-y', 'Be brief.', '-t', '0', '-n', '80', '--kernels', 'js'], { input: 'Hello\n', encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^User: Assistant: /);
});

test('templateChat: each turn feeds only what the KV cache does not hold; answers end at EOS', needsRefdata, async () => {
  const tok = loadTokenizer(ref('golden', 'hf', 'hf_gqa_f32', 'tokenizer.model'));
  const format = (await LanguageModel.load(HF_GQA(), { kernels: 'js' })).chatFormat;
  const config = { dim: 8, hiddenDim: 8, nLayers: 1, nHeads: 1, nKvHeads: 1, vocabSize: tok.vocabSize, seqLen: 200, sharedClassifier: true };
  // a model that answers "▁a ▁b" then EOS, whatever it is asked (greedy)
  const fed: Array<[number, number]> = [];
  let answered = 0;
  const logits = new Float32Array(tok.vocabSize);
  const answer = [...tok.encode('a b', { bos: false }), tok.eosId];
  const engine = {
    config, backend: 'stub',
    forward(token: number, pos: number) {
      fed.push([token, pos]);
      logits.fill(0);
      logits[answer[answered++ % answer.length]!] = 1;
      return logits;
    },
    advance(token: number, pos: number) { fed.push([token, pos]); },
    prefill(tokens: ArrayLike<number>, pos: number) { for (let i = 0; i < tokens.length; i++) fed.push([tokens[i]!, pos + i]); },
    session() { return engine; },
    shift() { throw new Error('unused'); },
  };
  const out: string[] = [];
  const inputs = ['Hi', 'More'];
  await templateChat(engine as never, tok, format, { readLine: async () => inputs.shift() ?? null, write: (t) => out.push(t) }, { temperature: 0, systemPrompt: '' });
  // the answer follows the prompt's last token, not BOS: its leading space stays, as in run.c's chat
  assert.equal(out.join(''), 'Assistant:  a b\nAssistant:  a b\n');
  const turn1 = encodeChat(format, tok, [{ role: 'user', content: 'Hi' }]);
  const turn2 = encodeChat(format, tok, [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'a b' }, { role: 'user', content: 'More' }]);
  // turn 1: its prompt, the answer, EOS, at positions 0, 1, 2, …
  const held = [...turn1, ...answer];
  assert.deepEqual(fed.slice(0, held.length), held.map((t, i) => [t, i]));
  // turn 2: from the first position where its ids differ from those held (at least past turn 1's prompt)
  let k = 0;
  while (held[k] === turn2[k]) k++;
  assert.ok(k >= turn1.length, `the cache keeps turn 1's prompt (${k} of ${turn1.length})`);
  assert.deepEqual(fed.slice(held.length, held.length + turn2.length - k), turn2.slice(k).map((t, i) => [t, k + i]));
});

test('a hostile template is a one-line error, quickly, not a crash or a hang; range() is still Python\'s', () => {
  const render = (template: string): string =>
    new ChatTemplate({ template, bosToken: '<s>', eosToken: '</s>', file: 'evil.json' }).render([{ role: 'user', content: 'hi' }]);
  const refused = (template: string, why: RegExp): void => {
    const t0 = performance.now();
    assert.throws(() => render(template), (e: unknown) => e instanceof LlamaError && why.test(e.message) && !e.message.includes('\n'));
    assert.ok(performance.now() - t0 < 5000, `${template}: refused in ${(performance.now() - t0).toFixed(0)} ms`);
  };
  // range(1e11) built a 1e11-item array in @huggingface/jinja: the heap ran out and the process died
  refused('{% for i in range(100000000000) %}x{% endfor %}', /^chat template: range\(\) of 100000000000 items \(the limit is 100000\)$/);
  refused('{% for i in range(0, 10, 0) %}x{% endfor %}', /step that is not zero/);
  // nested loops within range's limit: bounded by the interpreter's steps
  refused('{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}', /^chat template: the template takes more than 200000 steps$/);
  // text that doubles each round
  refused('{% set ns = namespace(s="xxxxxxxx") %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}', /^chat template: /);
  // Python's range() semantics for what templates really do
  assert.equal(render('{% for i in range(3) %}{{ i }}{% endfor %}|{% for i in range(1, 10, 3) %}{{ i }}{% endfor %}|{% for i in range(5, 0, -2) %}{{ i }}{% endfor %}|{% for i in range(0) %}x{% endfor %}|{{ range(2, 2) | length }}'),
    '012|147|531||0');
  // a template after a refused one renders normally
  assert.equal(render('{% for m in messages %}[{{ m.role }}: {{ m.content }}]{% endfor %}'), '[user: hi]');
});
