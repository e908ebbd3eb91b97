// The server's request fields, each implemented or refused: OpenAI's whole list of completion and
// chat fields (a 200 where the value asks for nothing this server cannot do, a 400 in OpenAI's
// shape naming the field otherwise, and unknown fields refused as OpenAI refuses them);
// logit_bias and the penalties checked against the logits; logprobs (completions and chat, plain
// and streamed, with echo) equal to the log-softmax of the library's logits; n > 1 and best_of;
// llama.cpp's /tokenize and /detokenize; the official openai client reading logprobs.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { LanguageModel } from '../src/infer/model.js';
import { needsRefdata } from './refdata.js';
import { MODEL, TOKENIZER, postJson, postStream, serve, type TestServer } from './server-fixtures.js';

const PROMPT = 'Once upon a time';
const USER = [{ role: 'user', content: 'Tell me about a cat.' }];

interface LogprobsObject { tokens: string[]; token_logprobs: number[]; top_logprobs: Array<Record<string, number>>; text_offset: number[] }
interface CompletionChoice { index: number; text: string; logprobs: LogprobsObject | null; finish_reason: string }
interface ChatLogprob { token: string; logprob: number; bytes: number[]; top_logprobs: Array<{ token: string; logprob: number; bytes: number[] }> }
interface ChatChoice { index: number; message: { content: string }; logprobs: { content: ChatLogprob[] } | null; finish_reason: string }

/** log-softmax of logits, in float64. */
function logSoftmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const x of logits) max = Math.max(max, x);
  let sum = 0;
  for (const x of logits) sum += Math.exp(x - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(logits, (x) => x - lse);
}

describe('llama2 serve request fields', { skip: needsRefdata.skip }, () => {
  let s: TestServer;
  let lm: LanguageModel;
  before(async () => {
    s = await serve();
    lm = await LanguageModel.load(MODEL, { tokenizer: TOKENIZER, kernels: 'js' });
  });
  after(async () => {
    await s?.close();
  });
  const completions = (body: Record<string, unknown>): Promise<{ status: number; body: Record<string, unknown> }> => postJson(`${s.url}/v1/completions`, body);
  const chat = (body: Record<string, unknown>): Promise<{ status: number; body: Record<string, unknown> }> => postJson(`${s.url}/v1/chat/completions`, body);

  test('every OpenAI field: implemented (200) or refused with a 400 naming it; unknown fields refused', async () => {
    const base = { prompt: PROMPT, max_tokens: 4, temperature: 0 };
    const chatBase = { messages: USER, max_tokens: 4, temperature: 0 };
    // [endpoint, extra fields, expected status, param, code]
    const cases: Array<['c' | 'chat', Record<string, unknown>, number, string?, string?]> = [
      ['c', { model: 'stories260K', best_of: 2, echo: true, frequency_penalty: 0.5, logit_bias: { 1: -100 }, logprobs: 2, n: 2, presence_penalty: 0.5, seed: 3, stop: ['zz'], stream: false, stream_options: null, suffix: '', top_p: 0.9, user: 'u1' }, 200],
      ['c', { suffix: 'the end' }, 400, 'suffix', 'unsupported_value'],
      ['c', { best_of: 1, n: 2 }, 400, 'best_of', 'invalid_value'],
      ['c', { best_of: 3, stream: true }, 400, 'best_of', 'invalid_value'],
      ['c', { logit_bias: { abc: 1 } }, 400, 'logit_bias', 'invalid_value'],
      ['c', { logit_bias: { 5: 101 } }, 400, 'logit_bias', 'invalid_value'],
      ['c', { logit_bias: { 512: 1 } }, 400, 'logit_bias', 'invalid_value'],
      ['c', { presence_penalty: 2.5 }, 400, 'presence_penalty', 'invalid_value'],
      ['c', { frequency_penalty: -3 }, 400, 'frequency_penalty', 'invalid_value'],
      ['c', { logprobs: true }, 400, 'logprobs', 'invalid_value'],
      ['c', { stream_options: { include_obfuscation: true } }, 400, 'stream_options.include_obfuscation', 'unsupported_value'],
      ['c', { messages: USER }, 400, 'messages', 'unknown_parameter'],
      ['c', { top_logprobs: 2 }, 400, 'top_logprobs', 'unknown_parameter'],
      ['chat', {
        model: 'stories260K', frequency_penalty: 0, function_call: 'none', functions: [], logit_bias: {}, logprobs: true, top_logprobs: 3,
        max_completion_tokens: 4, metadata: { k: 'v' }, modalities: ['text'], n: 2, parallel_tool_calls: false, presence_penalty: 0,
        prompt_cache_key: 'k', response_format: { type: 'text' }, safety_identifier: 'x', seed: 1, service_tier: 'auto', stop: null,
        store: false, stream: false, tool_choice: 'none', tools: [], top_p: 1, user: 'u',
      }, 200],
      ['chat', { messages: [{ role: 'system', content: 'Be kind.', name: 'rules' }, { role: 'user', content: 'Hi', name: 'ann' }] }, 200],
      ['chat', { response_format: { type: 'json_object' } }, 400, 'response_format', 'unsupported_value'],
      ['chat', { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: {} } } }, 400, 'response_format', 'unsupported_value'],
      ['chat', { tools: [{ type: 'function', function: { name: 'f' } }] }, 400, 'tools', 'unsupported_value'],
      ['chat', { tool_choice: 'auto' }, 400, 'tool_choice', 'unsupported_value'],
      ['chat', { functions: [{ name: 'f' }] }, 400, 'functions', 'unsupported_value'],
      ['chat', { function_call: 'auto' }, 400, 'function_call', 'unsupported_value'],
      ['chat', { audio: { voice: 'alloy', format: 'wav' } }, 400, 'audio', 'unsupported_value'],
      ['chat', { modalities: ['text', 'audio'] }, 400, 'modalities', 'unsupported_value'],
      ['chat', { prediction: { type: 'content', content: 'x' } }, 400, 'prediction', 'unsupported_value'],
      ['chat', { reasoning_effort: 'low' }, 400, 'reasoning_effort', 'unsupported_value'],
      ['chat', { verbosity: 'low' }, 400, 'verbosity', 'unsupported_value'],
      ['chat', { web_search_options: {} }, 400, 'web_search_options', 'unsupported_value'],
      ['chat', { store: true }, 400, 'store', 'unsupported_value'],
      ['chat', { service_tier: 'flex' }, 400, 'service_tier', 'unsupported_value'],
      ['chat', { top_logprobs: 2 }, 400, 'top_logprobs', 'invalid_value'],
      ['chat', { logprobs: true, top_logprobs: 21 }, 400, 'top_logprobs', 'invalid_value'],
      ['chat', { metadata: { k: 1 } }, 400, 'metadata', 'invalid_value'],
      ['chat', { user: 5 }, 400, 'user', 'invalid_value'],
      ['chat', { echo: true }, 400, 'echo', 'unknown_parameter'],
      ['chat', { best_of: 2 }, 400, 'best_of', 'unknown_parameter'],
      ['chat', { messages: [{ role: 'user', content: 'hi', tool_call_id: 'x' }] }, 400, 'messages[0].tool_call_id', 'unsupported_value'],
    ];
    for (const [endpoint, extra, status, param, code] of cases) {
      const what = `${endpoint} ${JSON.stringify(extra).slice(0, 80)}`;
      const r = endpoint === 'c' ? await completions({ ...base, ...extra }) : await chat({ ...chatBase, ...extra });
      assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body).slice(0, 200)}`);
      if (status === 200) continue;
      const error = r.body['error'] as Record<string, unknown>;
      assert.deepEqual(Object.keys(error).sort(), ['code', 'message', 'param', 'type'], what);
      assert.equal(error['type'], 'invalid_request_error', what);
      assert.equal(error['param'], param, what);
      assert.equal(error['code'], code, what);
    }
    const unknown = await completions({ ...base, foo: 1 });
    assert.equal((unknown.body['error'] as { message: string }).message, 'Unrecognized request argument supplied: foo');
  });

  test('logit_bias: +100 makes a token certain, -100 rules it out', async () => {
    const greedy = (await completions({ prompt: PROMPT, max_tokens: 8, temperature: 0 })).body['choices'] as CompletionChoice[];
    const first = lm.encode(PROMPT + greedy[0]!.text, { bos: true })[lm.encode(PROMPT).length]!;
    const banned = (await completions({ prompt: PROMPT, max_tokens: 8, temperature: 0, logit_bias: { [first]: -100 } })).body['choices'] as CompletionChoice[];
    assert.notEqual(lm.encode(PROMPT + banned[0]!.text)[lm.encode(PROMPT).length], first);
    const word = [' the', ' a', ' and', ' cat'].find((w) => lm.encode(w, { bos: false }).length === 1)!;
    const id = lm.encode(word, { bos: false })[0]!;
    const forced = (await completions({ prompt: PROMPT, max_tokens: 5, temperature: 1, seed: 7, logit_bias: { [id]: 100 } })).body['choices'] as CompletionChoice[];
    assert.equal(forced[0]!.text, word.repeat(5));
  });

  test('presence and frequency penalties: OpenAI\'s formula on the tokens generated so far', async () => {
    const body = { prompt: PROMPT, max_tokens: 40, temperature: 0 };
    const plain = (await completions(body)).body['choices'] as CompletionChoice[];
    const penalised = (await completions({ ...body, frequency_penalty: 2, presence_penalty: 2 })).body['choices'] as CompletionChoice[];
    // replay: greedy over the library's logits with the penalty applied by hand
    const ids = lm.encode(PROMPT);
    const counts = new Map<number, number>();
    const out: number[] = [];
    for (let i = 0; i < 40; i++) {
      const logits = lm.logits([...ids, ...out]);
      for (const [id, c] of counts) logits[id]! -= 2 * c + 2;
      let best = 0;
      for (let j = 1; j < logits.length; j++) if (logits[j]! > logits[best]!) best = j;
      out.push(best);
      counts.set(best, (counts.get(best) ?? 0) + 1);
    }
    assert.equal(penalised[0]!.text, lm.decode([...ids.slice(1), ...out]).slice(PROMPT.length));
    assert.notEqual(penalised[0]!.text, plain[0]!.text);
  });

  test('completions logprobs: the log-softmax of the logits, the top N, text offsets; echo scores the prompt; streamed = whole', async () => {
    const body = { prompt: PROMPT, max_tokens: 10, temperature: 0.9, seed: 5, logprobs: 3 };
    const r = await completions(body);
    assert.equal(r.status, 200);
    const choice = (r.body['choices'] as CompletionChoice[])[0]!;
    const lp = choice.logprobs!;
    assert.equal(lp.tokens.length, 10);
    assert.equal(lp.tokens.join(''), choice.text);
    const ids = lm.encode(PROMPT);
    const generated = lm.encode(PROMPT + choice.text).slice(ids.length);
    assert.equal(generated.length, 10, 'the text re-encodes to the same tokens');
    for (let i = 0; i < 10; i++) {
      const expected = logSoftmax(lm.logits([...ids, ...generated.slice(0, i)]));
      assert.ok(Math.abs(lp.token_logprobs[i]! - expected[generated[i]!]!) < 1e-4, `token ${i}: ${lp.token_logprobs[i]} vs ${expected[generated[i]!]}`);
      const top = Object.values(lp.top_logprobs[i]!);
      assert.ok(top.length >= 1 && top.length <= 3);
      const sorted = [...expected].sort((a, b) => b - a);
      assert.ok(Math.abs(Math.max(...top) - sorted[0]!) < 1e-4, 'the best alternative is the most likely token');
      assert.equal(lp.text_offset[i], lp.tokens.slice(0, i).join('').length);
    }
    // echo: the prompt's tokens first, scored under the logits before them
    const echoed = ((await completions({ ...body, echo: true })).body['choices'] as CompletionChoice[])[0]!;
    assert.equal(echoed.text, PROMPT + choice.text);
    assert.equal(echoed.logprobs!.tokens.length, ids.length - 1 + 10);
    assert.equal(echoed.logprobs!.tokens.join(''), echoed.text);
    const firstPrompt = logSoftmax(lm.logits([ids[0]!]))[ids[1]!]!;
    assert.ok(Math.abs(echoed.logprobs!.token_logprobs[0]! - firstPrompt) < 1e-4);
    // (the answer's: as without echo, within float rounding — the prompt went in one token at a time, not as one prefill block)
    echoed.logprobs!.token_logprobs.slice(ids.length - 1).forEach((x, i) => assert.ok(Math.abs(x - lp.token_logprobs[i]!) < 1e-4, `${x} vs ${lp.token_logprobs[i]}`));
    // streamed: the chunks' logprobs put together are the whole response's
    const streamed = await postStream(`${s.url}/v1/completions`, { ...body, echo: true });
    const parts = streamed.chunks.map((c) => (c.choices[0] as unknown as { logprobs: LogprobsObject | null }).logprobs).filter((x) => x !== null);
    assert.deepEqual(parts.flatMap((p) => p!.tokens), echoed.logprobs!.tokens);
    assert.deepEqual(parts.flatMap((p) => p!.token_logprobs), echoed.logprobs!.token_logprobs);
    assert.deepEqual(parts.flatMap((p) => p!.text_offset), echoed.logprobs!.text_offset);
    assert.equal(streamed.text, echoed.text);
  });

  test('chat logprobs: { content: [{ token, logprob, bytes, top_logprobs }] }, streamed = whole', async () => {
    const body = { messages: USER, max_tokens: 12, temperature: 0.8, seed: 9, logprobs: true, top_logprobs: 2 };
    const choice = ((await chat(body)).body['choices'] as ChatChoice[])[0]!;
    const content = choice.logprobs!.content;
    assert.ok(content.length > 0 && content.length <= 12);
    assert.equal(content.map((c) => c.token).join(''), choice.message.content);
    for (const c of content) {
      assert.equal(Buffer.from(c.bytes).toString('utf8'), c.token);
      assert.equal(c.top_logprobs.length, 2);
      assert.ok(c.top_logprobs[0]!.logprob >= c.top_logprobs[1]!.logprob && c.top_logprobs[0]!.logprob >= c.logprob - 1e-9);
      assert.ok(c.logprob <= 0);
    }
    const ids = lm.encodeChat(USER as never);
    const expected = logSoftmax(lm.logits(ids))[lm.encode(choice.message.content, { bos: false })[0]!]!;
    assert.ok(Math.abs(content[0]!.logprob - expected) < 1e-4, `${content[0]!.logprob} vs ${expected}`);
    const streamed = await postStream(`${s.url}/v1/chat/completions`, body);
    const parts = streamed.chunks.flatMap((c) => (c.choices[0] as unknown as { logprobs: { content: ChatLogprob[] } | null } | undefined)?.logprobs?.content ?? []);
    assert.deepEqual(parts, content);
    const plain = ((await chat({ messages: USER, max_tokens: 12, temperature: 0.8, seed: 9 })).body['choices'] as ChatChoice[])[0]!;
    assert.equal(plain.logprobs, null);
    assert.equal(plain.message.content, choice.message.content, 'asking for logprobs changes no token');
  });

  test('n > 1: n choices (choice i sampled with seed + i), streamed by index; best_of keeps the most likely', async () => {
    const body = { prompt: PROMPT, max_tokens: 20, temperature: 1, seed: 40 };
    const three = await completions({ ...body, n: 3 });
    const choices = three.body['choices'] as CompletionChoice[];
    assert.deepEqual(choices.map((c) => c.index), [0, 1, 2]);
    for (let i = 0; i < 3; i++) {
      const alone = ((await completions({ ...body, seed: 40 + i })).body['choices'] as CompletionChoice[])[0]!;
      assert.equal(choices[i]!.text, alone.text, `choice ${i}`);
    }
    assert.equal(new Set(choices.map((c) => c.text)).size, 3);
    const used = three.body['usage'] as { prompt_tokens: number; completion_tokens: number };
    assert.equal(used.prompt_tokens, lm.encode(PROMPT).length);
    assert.equal(used.completion_tokens, 60);
    // streamed: chunks carry their choice's index
    const streamed = await postStream(`${s.url}/v1/chat/completions`, { messages: USER, max_tokens: 15, temperature: 1, seed: 3, n: 2 });
    const whole = ((await chat({ messages: USER, max_tokens: 15, temperature: 1, seed: 3, n: 2 })).body['choices'] as ChatChoice[]);
    for (const i of [0, 1]) {
      const mine = streamed.chunks.flatMap((c) => c.choices.filter((ch) => (ch as unknown as { index: number }).index === i));
      assert.equal(mine.map((ch) => ch.delta?.content ?? '').join(''), whole[i]!.message.content);
      assert.equal(mine.filter((ch) => ch.finish_reason !== null).length, 1);
    }
    // best_of 3, n 1: the candidate (of the n = 3 ones) with the highest mean token logprob
    const scored = ((await completions({ ...body, n: 3, logprobs: 0 })).body['choices'] as CompletionChoice[]);
    const mean = (c: CompletionChoice): number => c.logprobs!.token_logprobs.reduce((a, b) => a + b, 0) / c.logprobs!.token_logprobs.length;
    const best = [...scored].sort((a, b) => mean(b) - mean(a))[0]!;
    const picked = await completions({ ...body, best_of: 3 });
    const pickedChoices = picked.body['choices'] as CompletionChoice[];
    assert.equal(pickedChoices.length, 1);
    assert.equal(pickedChoices[0]!.text, best.text);
    assert.equal(pickedChoices[0]!.logprobs, null);
    assert.equal((picked.body['usage'] as { completion_tokens: number }).completion_tokens, 60, 'every candidate counts');
  });

  test('/tokenize and /detokenize, in llama.cpp server\'s shapes', async () => {
    const text = 'Lily saw a cat. <s> ☀';
    const t = await postJson(`${s.url}/tokenize`, { content: text });
    assert.equal(t.status, 200);
    const ids = t.body['tokens'] as number[];
    // parse_special (default): "<s>" is the BOS token
    assert.ok(ids.includes(lm.tokenizer.bosId));
    assert.deepEqual((await postJson(`${s.url}/tokenize`, { content: 'Lily saw a cat.' })).body['tokens'], lm.encode('Lily saw a cat.', { bos: false }));
    assert.deepEqual((await postJson(`${s.url}/tokenize`, { content: 'Lily saw a cat.', add_special: true })).body['tokens'], lm.encode('Lily saw a cat.', { bos: true }));
    assert.deepEqual((await postJson(`${s.url}/tokenize`, { content: '<s>', parse_special: false })).body['tokens'], lm.encode('<s>', { bos: false }));
    const pieces = (await postJson(`${s.url}/tokenize`, { content: 'a cat ☀', with_pieces: true })).body['tokens'] as Array<{ id: number; piece: string | number[] }>;
    assert.deepEqual(pieces.map((p) => p.id), lm.encode('a cat ☀', { bos: false }));
    assert.equal(pieces[0]!.piece, ' a');
    assert.ok(pieces.some((p) => Array.isArray(p.piece)), 'a byte token of ☀ is listed as its bytes');
    const d = await postJson(`${s.url}/detokenize`, { tokens: lm.encode('Lily saw a cat.', { bos: true }) });
    assert.deepEqual(d.body, { content: 'Lily saw a cat.' });
    for (const [path, body, param] of [
      ['/tokenize', {}, 'content'], ['/tokenize', { content: 5 }, 'content'], ['/tokenize', { content: 'x', extra: 1 }, 'extra'],
      ['/detokenize', { tokens: [1, 512] }, 'tokens'], ['/detokenize', { tokens: ['a'] }, 'tokens'], ['/detokenize', { tokens: 'x' }, 'tokens'],
    ] as const) {
      const r = await postJson(`${s.url}${path}`, body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal((r.body['error'] as { param: string }).param, param);
    }
    const get = await fetch(`${s.url}/tokenize`);
    assert.equal(get.status, 405);
    // the API's protections hold for them too: the key, JSON bodies
    const keyed = await serve({ apiKey: 'k' });
    try {
      assert.equal((await postJson(`${keyed.url}/tokenize`, { content: 'x' })).status, 401);
      const ok = await fetch(`${keyed.url}/detokenize`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: 'Bearer k' }, body: '{"tokens":[1]}' });
      assert.equal(ok.status, 200);
      const form = await fetch(`${keyed.url}/tokenize`, { method: 'POST', headers: { 'Content-Type': 'text/plain', Authorization: 'Bearer k' }, body: 'x' });
      assert.equal(form.status, 415);
    } finally {
      await keyed.close();
    }
  });

  test('the openai client reads logprobs and n choices', async () => {
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const c = await client.completions.create({ model: 'stories260K', prompt: PROMPT, max_tokens: 5, logprobs: 2, n: 2, seed: 1 });
    assert.equal(c.choices.length, 2);
    assert.equal(c.choices[1]!.logprobs!.tokens!.length, 5);
    const chatted = await client.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, logprobs: true, top_logprobs: 1 });
    assert.ok(chatted.choices[0]!.logprobs!.content!.length > 0);
    await assert.rejects(client.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }], response_format: { type: 'json_object' } }), (err: unknown) => {
      assert.ok(err instanceof OpenAI.BadRequestError);
      assert.equal(err.param, 'response_format');
      return true;
    });
  });
});
