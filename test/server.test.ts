// The OpenAI-compatible API over real HTTP on 127.0.0.1: the texts are `llama2 run`'s, streamed
// and not; every kind of bad request gets a 4xx with an OpenAI error object while the server keeps
// serving; the concurrency limit answers 429; a client that disconnects stops its generation; the
// CLI shuts down gracefully on SIGTERM.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { GenerationEvent } from '../src/server/http.js';
import { type Chunk, JSON_HEADERS, MODEL, TOKENIZER, type TestServer, llama2Run, postJson, postStream, serve, sseData } from './server-fixtures.js';
import { cliPath, needsRefdata, ref } from './refdata.js';
import { readStories } from '../src/data/stories.js';

const PROMPT = 'Once upon a time';
const PROMPT_TOKENS = 5; // BOS + 4 (tok512)

describe('llama2 serve API', needsRefdata, () => {
  let s: TestServer;
  before(async () => {
    s = await serve({ maxConcurrent: 4, maxQueued: 8, maxBodyBytes: 64 * 1024 });
  });
  after(async () => s?.close());

  test('health, models', async () => {
    const health = await (await fetch(`${s.url}/health`)).json();
    assert.deepEqual(health, { status: 'ok', model: 'stories260K', sessions: { active: 0, queued: 0, max_concurrent: 4, max_queued: 8 } });
    const models = await (await fetch(`${s.url}/v1/models`)).json() as { object: string; data: Array<{ id: string; object: string }> };
    assert.equal(models.object, 'list');
    assert.deepEqual(models.data.map((m) => [m.id, m.object]), [['stories260K', 'model']]);
    const one = await fetch(`${s.url}/v1/models/stories260K`);
    assert.equal(one.status, 200);
    const missing = await fetch(`${s.url}/v1/models/gpt-4`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'model_not_found');
  });

  test('completions: echo + text = llama2 run -i PROMPT -n (prompt_tokens - 1 + max_tokens), greedy and seeded', async () => {
    for (const [t, p, seed] of [[0, 0.9, 1], [0.8, 0.9, 42], [1, 0, 7], [1.3, 0.5, 12345]] as const) {
      const max = 60;
      const r = await postJson(`${s.url}/v1/completions`, { model: 'stories260K', prompt: PROMPT, max_tokens: max, temperature: t, top_p: p, seed, echo: true });
      assert.equal(r.status, 200);
      const choice = (r.body['choices'] as Array<{ text: string; finish_reason: string; index: number }>)[0]!;
      const expected = llama2Run(['-i', PROMPT, '-n', String(PROMPT_TOKENS - 1 + max), '-t', String(t), '-p', String(p), '-s', String(seed)]);
      assert.equal(choice.text, expected, `t=${t} p=${p} seed=${seed}`);
      assert.equal(r.body['object'], 'text_completion');
      assert.deepEqual(r.body['usage'], { prompt_tokens: PROMPT_TOKENS, completion_tokens: max, total_tokens: PROMPT_TOKENS + max });
      assert.equal(choice.finish_reason, 'length');
      // without echo: the same text after the prompt
      const plain = await postJson(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: max, temperature: t, top_p: p, seed });
      assert.equal(PROMPT + (plain.body['choices'] as Array<{ text: string }>)[0]!.text, expected);
    }
  });

  test('completions: no prompt = llama2 run without -i; without max_tokens it runs to BOS or the end of the context', async () => {
    const r = await postJson(`${s.url}/v1/completions`, { temperature: 0 });
    const choice = (r.body['choices'] as Array<{ text: string; finish_reason: string }>)[0]!;
    assert.equal(choice.text, llama2Run(['-t', '0', '-n', '0']));
    const usage = r.body['usage'] as { prompt_tokens: number; completion_tokens: number };
    assert.equal(usage.prompt_tokens, 1);
    // greedy, stories260K ends its story (samples BOS) after 345 tokens
    assert.equal(usage.completion_tokens, 345);
    assert.equal(choice.finish_reason, 'stop');
  });

  test('completions: a sampled BOS ends the text with finish_reason stop', async () => {
    // find a seed whose story ends within the window (the model emits BOS)
    for (let seed = 1; seed < 40; seed++) {
      const r = await postJson(`${s.url}/v1/completions`, { prompt: PROMPT, temperature: 1, top_p: 0.9, seed });
      const choice = (r.body['choices'] as Array<{ text: string; finish_reason: string }>)[0]!;
      if (choice.finish_reason !== 'stop') continue;
      const usage = r.body['usage'] as { completion_tokens: number };
      assert.ok(usage.completion_tokens < 512 - PROMPT_TOKENS);
      assert.equal(PROMPT + choice.text, llama2Run(['-i', PROMPT, '-n', '0', '-t', '1', '-p', '0.9', '-s', String(seed)]));
      return;
    }
    assert.fail('no seed in 1..39 ended its story');
  });

  test('streaming: server-sent events with the same text, a finish chunk, usage, then [DONE]', async () => {
    const body = { prompt: PROMPT, max_tokens: 50, temperature: 0.8, seed: 3, echo: true };
    const whole = await postJson(`${s.url}/v1/completions`, body);
    const streamed = await postStream(`${s.url}/v1/completions`, { ...body, stream_options: { include_usage: true } });
    assert.equal(streamed.status, 200);
    assert.match(streamed.contentType ?? '', /^text\/event-stream/);
    assert.equal(streamed.text, (whole.body['choices'] as Array<{ text: string }>)[0]!.text);
    assert.ok(streamed.chunks.length > 10, 'the text comes in many chunks');
    const last = streamed.chunks.at(-1)!;
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, whole.body['usage']);
    assert.equal(streamed.chunks.at(-2)!.choices[0]!.finish_reason, 'length');
    assert.ok(streamed.chunks.slice(0, -2).every((c) => c.choices[0]!.finish_reason === null));
  });

  test('past the context window: max_tokens beyond it = llama2 run -n beyond it (completions; a chat keeps its system prompt as run -m chat does); above the limit 400', async () => {
    // the first 450 tokens of a 1,082-token validation story: the continuation runs on past 512
    const tok = s.server.model.tokenizer;
    const story = tok.encode(readStories(ref('data', 'tinystories', 'valid_first201.txt'))[189]!.trim(), { bos: true });
    const prompt = tok.decode(story.slice(1, 450));
    const r = await postJson(`${s.url}/v1/completions`, { prompt, max_tokens: 200, temperature: 0 });
    assert.equal(r.status, 200);
    const usage = r.body['usage'] as { prompt_tokens: number; completion_tokens: number };
    assert.ok(usage.prompt_tokens + usage.completion_tokens > 512, JSON.stringify(usage));
    assert.equal(usage.completion_tokens, 200);
    const text = (r.body['choices'] as Array<{ text: string }>)[0]!.text;
    assert.equal(prompt + text, llama2Run(['-i', prompt, '-n', String(usage.prompt_tokens - 1 + 200), '-t', '0']));
    assert.equal((await postStream(`${s.url}/v1/completions`, { prompt, max_tokens: 200, temperature: 0 })).text, text);

    const system = 'You tell stories.';
    const user = tok.decode(story.slice(1, 400));
    const chat = await postJson(`${s.url}/v1/chat/completions`, { messages: [{ role: 'system', content: system }, { role: 'user', content: user }], max_tokens: 300, temperature: 0 });
    const cu = chat.body['usage'] as { prompt_tokens: number; completion_tokens: number };
    assert.ok(cu.prompt_tokens + cu.completion_tokens > 512 + 100, JSON.stringify(cu));
    const answer = (chat.body['choices'] as Array<{ message: { content: string } }>)[0]!.message.content;
    const out = llama2Run(['-m', 'chat', '-y', system, '-i', user, '-n', String(cu.prompt_tokens - 1 + 300), '-t', '0']);
    assert.ok(out.startsWith(`Assistant: ${answer}\n`), `${JSON.stringify(out.slice(0, 200))} vs ${JSON.stringify(answer.slice(0, 200))}`);

    const limited = await serve({ maxTokens: 600 });
    try {
      const over = await postJson(`${limited.url}/v1/completions`, { prompt: 'Hi', max_tokens: 601 });
      assert.equal(over.status, 400);
      assert.deepEqual(over.body['error'], { message: 'max_tokens: 601 is more than this server generates for a request (600)', type: 'invalid_request_error', param: 'max_tokens', code: 'invalid_value' });
      assert.equal((await postJson(`${limited.url}/v1/completions`, { prompt: 'Hi', max_tokens: 600, temperature: 0 })).status, 200);
    } finally {
      await limited.close();
    }
  });

  test('chat: the Llama 2 template; the answer is what llama2 run -m chat prints', async () => {
    const messages = [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Tell me about a cat.' }];
    for (const [t, seed] of [[0, 1], [0.9, 77]] as const) {
      const max = 40;
      const r = await postJson(`${s.url}/v1/chat/completions`, { model: 'stories260K', messages, max_tokens: max, temperature: t, top_p: 0.9, seed });
      assert.equal(r.status, 200);
      assert.equal(r.body['object'], 'chat.completion');
      const choice = (r.body['choices'] as Array<{ message: { role: string; content: string }; finish_reason: string }>)[0]!;
      assert.equal(choice.message.role, 'assistant');
      const usage = r.body['usage'] as { prompt_tokens: number; completion_tokens: number };
      const out = llama2Run(['-m', 'chat', '-y', 'You tell stories.', '-i', 'Tell me about a cat.', '-n', String(usage.prompt_tokens - 1 + max), '-t', String(t), '-p', '0.9', '-s', String(seed)]);
      assert.ok(out.startsWith(`Assistant: ${choice.message.content}\n`), `t=${t}: ${JSON.stringify(out)} vs ${JSON.stringify(choice.message.content)}`);
      // streamed: a role delta, content deltas, an empty delta with the finish reason
      const streamed = await postStream(`${s.url}/v1/chat/completions`, { messages, max_tokens: max, temperature: t, top_p: 0.9, seed });
      assert.equal(streamed.text, choice.message.content);
      assert.deepEqual(streamed.chunks[0]!.choices[0]!.delta, { role: 'assistant', content: '' });
      assert.deepEqual(streamed.chunks.at(-1)!.choices[0]!.delta, {});
      assert.equal(streamed.chunks.at(-1)!.choices[0]!.finish_reason, choice.finish_reason);
    }
  });

  test('stop strings: the text ends just before the first one, streamed or not', async () => {
    const body = { prompt: PROMPT, max_tokens: 100, temperature: 0 };
    const full = (await postJson(`${s.url}/v1/completions`, body)).body as { choices: Array<{ text: string }> };
    const text = full.choices[0]!.text;
    for (const stop of [' park', ['zzz', 'Lily. She'], 'e', '.']) {
      const first = Math.min(...(Array.isArray(stop) ? stop : [stop]).map((x) => text.indexOf(x)).filter((i) => i >= 0));
      const r = await postJson(`${s.url}/v1/completions`, { ...body, stop });
      const choice = (r.body['choices'] as Array<{ text: string; finish_reason: string }>)[0]!;
      assert.equal(choice.text, text.slice(0, first), JSON.stringify(stop));
      assert.equal(choice.finish_reason, 'stop');
      const streamed = await postStream(`${s.url}/v1/completions`, { ...body, stop });
      assert.equal(streamed.text, text.slice(0, first));
    }
    // a stop string that never comes changes nothing
    const none = await postJson(`${s.url}/v1/completions`, { ...body, stop: ['Lily!!!'] });
    assert.equal((none.body['choices'] as Array<{ text: string }>)[0]!.text, text);
  });

  const BAD: Array<[string, string, unknown, number, string | null, string | null]> = [
    // [what, endpoint, body, status, param, code]
    ['malformed JSON', 'completions', '{"prompt": "x"', 400, null, 'invalid_json'],
    ['a JSON array body', 'completions', '[1, 2]', 400, null, null],
    ['a JSON string body', 'completions', '"hello"', 400, null, null],
    ['prompt of the wrong type', 'completions', { prompt: 42 }, 400, 'prompt', 'invalid_value'],
    ['several prompts', 'completions', { prompt: ['a', 'b'] }, 400, 'prompt', 'invalid_value'],
    ['temperature as a string', 'completions', { temperature: 'hot' }, 400, 'temperature', 'invalid_value'],
    ['temperature out of range', 'completions', { temperature: 2.5 }, 400, 'temperature', 'invalid_value'],
    ['negative temperature', 'chat', { messages: [{ role: 'user', content: 'hi' }], temperature: -1 }, 400, 'temperature', 'invalid_value'],
    ['top_p out of range', 'completions', { top_p: 1.5 }, 400, 'top_p', 'invalid_value'],
    ['max_tokens 0', 'completions', { max_tokens: 0 }, 400, 'max_tokens', 'invalid_value'],
    ['fractional max_tokens', 'completions', { max_tokens: 2.5 }, 400, 'max_tokens', 'invalid_value'],
    ['max_tokens as a string', 'chat', { messages: [{ role: 'user', content: 'hi' }], max_tokens: '10' }, 400, 'max_tokens', 'invalid_value'],
    ['fractional seed', 'completions', { seed: 0.5 }, 400, 'seed', 'invalid_value'],
    ['stream not a boolean', 'completions', { stream: 'yes' }, 400, 'stream', 'invalid_value'],
    ['stop of the wrong type', 'completions', { stop: 5 }, 400, 'stop', 'invalid_value'],
    ['five stop strings', 'completions', { stop: ['a', 'b', 'c', 'd', 'e'] }, 400, 'stop', 'invalid_value'],
    ['an empty stop string', 'completions', { stop: '' }, 400, 'stop', 'invalid_value'],
    ['n = 17', 'completions', { n: 17 }, 400, 'n', 'invalid_value'],
    ['logprobs above 5', 'completions', { logprobs: 6 }, 400, 'logprobs', 'invalid_value'],
    ['an unknown field', 'completions', { promt: 'x' }, 400, 'promt', 'unknown_parameter'],
    ['JSON mode', 'chat', { messages: [{ role: 'user', content: 'hi' }], response_format: { type: 'json_object' } }, 400, 'response_format', 'unsupported_value'],
    ['model of the wrong type', 'completions', { model: 3 }, 400, 'model', 'invalid_value'],
    ['unknown model', 'completions', { model: 'gpt-4' }, 404, 'model', 'model_not_found'],
    ['unknown model (chat)', 'chat', { model: 'llama-70b', messages: [{ role: 'user', content: 'hi' }] }, 404, 'model', 'model_not_found'],
    ['stream_options not an object', 'completions', { stream_options: true }, 400, 'stream_options', 'invalid_value'],
    ['no messages', 'chat', {}, 400, 'messages', 'invalid_value'],
    ['empty messages', 'chat', { messages: [] }, 400, 'messages', 'invalid_value'],
    ['messages not an array', 'chat', { messages: 'hi' }, 400, 'messages', 'invalid_value'],
    ['a message that is not an object', 'chat', { messages: ['hi'] }, 400, 'messages[0]', 'invalid_value'],
    ['an unknown role', 'chat', { messages: [{ role: 'robot', content: 'hi' }] }, 400, 'messages[0].role', 'invalid_value'],
    ['content of the wrong type', 'chat', { messages: [{ role: 'user', content: 5 }] }, 400, 'messages[0].content', 'invalid_value'],
    ['an image part', 'chat', { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: 'x' }] }] }, 400, 'messages[0].content[0]', 'invalid_value'],
    ['ending with the assistant', 'chat', { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }] }, 400, 'messages', 'invalid_value'],
    ['a prompt longer than the context', 'completions', { prompt: 'The cat sat on the mat. '.repeat(120) }, 400, 'prompt', 'context_length_exceeded'],
    ['a chat longer than the context', 'chat', { messages: [{ role: 'user', content: 'The dog ran. '.repeat(200) }] }, 400, 'messages', 'context_length_exceeded'],
  ];

  test('bad requests: 4xx with an OpenAI error object, and the server keeps serving', async () => {
    for (const [what, endpoint, body, status, param, code] of BAD) {
      const url = `${s.url}/v1/${endpoint === 'chat' ? 'chat/completions' : 'completions'}`;
      const r = await postJson(url, body);
      assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
      const error = r.body['error'] as { message: string; type: string; param: string | null; code: string | null };
      assert.deepEqual(Object.keys(error).sort(), ['code', 'message', 'param', 'type'], what);
      assert.equal(error.type, 'invalid_request_error', what);
      assert.equal(error.param, param, what);
      assert.equal(error.code, code, what);
      assert.ok(error.message.length > 0 && !error.message.includes('\n'), what);
    }
    // wrong paths and methods
    const notFound = await fetch(`${s.url}/v1/engines`);
    assert.equal(notFound.status, 404);
    assert.equal(((await notFound.json()) as { error: { code: string } }).error.code, 'not_found');
    const wrongMethod = await fetch(`${s.url}/v1/completions`);
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.get('allow'), 'POST');
    // and the server still answers
    const ok = await postJson(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 5, temperature: 0 });
    assert.equal(ok.status, 200);
    assert.equal((await (await fetch(`${s.url}/health`)).json() as { sessions: { active: number } }).sessions.active, 0);
  });

  test('a body over the size limit: 413, whether its length is declared or not', async () => {
    const big = JSON.stringify({ prompt: 'x'.repeat(100 * 1024) });
    const declared = await postJson(`${s.url}/v1/completions`, big);
    assert.equal(declared.status, 413);
    assert.equal((declared.body['error'] as { code: string }).code, 'request_too_large');
    // chunked (no Content-Length): refused once the limit is passed
    const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(`${s.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' } }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      for (let i = 0; i < 10; i++) req.write(big.slice(i * 10_300, (i + 1) * 10_300));
      req.end(big.slice(103_000));
    });
    assert.equal(chunked.status, 413);
    assert.equal((JSON.parse(chunked.body) as { error: { code: string } }).error.code, 'request_too_large');
    assert.equal((await postJson(`${s.url}/v1/completions`, { max_tokens: 3 })).status, 200);
  });

  test('CORS: without --cors, pages of other origins are refused; the same origin (the playground) is not', async () => {
    const evil = { Origin: 'http://evil.example', 'Content-Type': 'application/json' };
    const preflight = await fetch(`${s.url}/v1/chat/completions`, { method: 'OPTIONS', headers: { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'POST' } });
    assert.equal(preflight.status, 403);
    assert.equal(preflight.headers.get('access-control-allow-origin'), null);
    const post = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: evil, body: JSON.stringify({ max_tokens: 2 }) });
    assert.equal(post.status, 403);
    assert.equal(((await post.json()) as { error: { code: string } }).error.code, 'forbidden_origin');
    const same = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { ...evil, Origin: s.url }, body: JSON.stringify({ max_tokens: 2 }) });
    assert.equal(same.status, 200);
    assert.equal(same.headers.get('access-control-allow-origin'), null);
  });

  test('a client that disconnects mid-stream stops its generation at once', async (t) => {
    const events: GenerationEvent[] = [];
    const onGeneration = (e: GenerationEvent): void => void events.push(e);
    s.server.on('generation', onGeneration);
    try {
      // greedy from BOS runs 345 tokens unless stopped
      await new Promise<void>((resolve, reject) => {
        const req = request(`${s.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' } }, (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', () => {}); // the destroy
        req.on('response', (res) => res.on('error', () => {}));
        req.end(JSON.stringify({ temperature: 0, stream: true }));
        setTimeout(() => reject(new Error('no first chunk')), 5000);
      });
        const deadline = Date.now() + 5000;
      while (events.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      assert.equal(events.length, 1);
      const { result } = events[0]!;
      assert.equal(result.finishReason, 'aborted');
      assert.ok(result.completionTokens < 100, `stopped after ${result.completionTokens} of 345 tokens`);
      t.diagnostic(`stopped after ${result.completionTokens} of 345 tokens`);
      assert.equal((await (await fetch(`${s.url}/health`)).json() as { sessions: { active: number } }).sessions.active, 0);
    } finally {
      s.server.off('generation', onGeneration);
    }
  });
});

describe('llama2 serve concurrency limit', needsRefdata, () => {
  test('one session, no queue: a second request gets 429 with Retry-After; a queued client that leaves frees its place', async () => {
    const s = await serve({ maxConcurrent: 1, maxQueued: 0 });
    try {
      const body = JSON.stringify({ temperature: 0, stream: true });
      // hold the only session with a long stream, read slowly
      const first = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: JSON_HEADERS, body });
      const reader = first.body!.getReader();
      await reader.read();
      const busy = await postJson(`${s.url}/v1/completions`, { max_tokens: 5 });
      assert.equal(busy.status, 429);
      assert.equal(busy.headers.get('retry-after'), '1');
      assert.deepEqual(busy.body['error'], {
        message: (busy.body['error'] as { message: string }).message, type: 'rate_limit_error', param: null, code: 'rate_limit_exceeded',
      });
      let rest = '';
      for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value);
      assert.ok(rest.endsWith('data: [DONE]\n\n'));
      assert.equal((await postJson(`${s.url}/v1/completions`, { max_tokens: 5 })).status, 200);
    } finally {
      await s.close();
    }
    const q = await serve({ maxConcurrent: 1, maxQueued: 1 });
    try {
      const first = await fetch(`${q.url}/v1/completions`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ temperature: 0, stream: true }) });
      const reader = first.body!.getReader();
      await reader.read();
      // a second request waits in line; it gives up
      const waiting = new AbortController();
      const second = fetch(`${q.url}/v1/completions`, { method: 'POST', headers: JSON_HEADERS, body: '{"max_tokens": 3}', signal: waiting.signal }).catch((e: Error) => e.name);
      let health = { sessions: { queued: 0 } };
      for (let i = 0; i < 200 && health.sessions.queued === 0; i++) health = await (await fetch(`${q.url}/health`)).json() as typeof health;
      assert.equal(health.sessions.queued, 1);
      assert.equal((await postJson(`${q.url}/v1/completions`, { max_tokens: 3 })).status, 429, 'the line is full');
      waiting.abort();
      assert.equal(await second, 'AbortError');
      for (let i = 0; i < 200 && health.sessions.queued !== 0; i++) health = await (await fetch(`${q.url}/health`)).json() as typeof health;
      assert.equal(health.sessions.queued, 0);
      await reader.cancel();
      // with the session free again, requests are served
      let ok = 0;
      for (let i = 0; i < 100 && ok !== 200; i++) ok = (await postJson(`${q.url}/v1/completions`, { max_tokens: 3 })).status;
      assert.equal(ok, 200);
    } finally {
      await q.close();
    }
  });
});

describe('llama2 serve shutdown', needsRefdata, () => {
  test('past the grace period a stream in progress is cut with an error event; waiting requests get 503', async () => {
    const s = await serve({ maxConcurrent: 1, maxQueued: 4 }, 'js'); // ~1000 tokens/s: the 345 tokens take a while
    const res = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ temperature: 0, stream: true }) });
    const reader = res.body!.getReader();
    let text = new TextDecoder().decode((await reader.read()).value);
    const queued = postJson(`${s.url}/v1/completions`, { max_tokens: 3 });
    for (let i = 0; i < 200 && s.server.sessions.queued === 0; i++) await new Promise((r) => setTimeout(r, 5));
    const closed = s.server.close(0); // no grace
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += new TextDecoder().decode(r.value);
    await closed;
    await s.close();
    const data = sseData(text);
    assert.notEqual(data.at(-1), '[DONE]');
    assert.deepEqual(JSON.parse(data.at(-1)!), { error: { message: 'the server is shutting down', type: 'server_error', param: null, code: 'shutting_down' } });
    const refused = await queued;
    assert.equal(refused.status, 503);
    assert.equal((refused.body['error'] as { code: string }).code, 'shutting_down');
  });
});

describe('llama2 serve (CLI)', needsRefdata, () => {
  function start(args: string[]): { child: ChildProcess; url: Promise<string>; stderr: () => string } {
    const child = spawn(process.execPath, [cliPath, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    const url = new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        const m = /listening on (http:\/\/\S+)\n/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.once('exit', (code) => reject(new Error(`serve exited (${code}): ${err}`)));
    });
    return { child, url, stderr: () => err };
  }

  test('SIGTERM: the stream in progress finishes, then the server stops (exit 0)', async () => {
    const { child, url, stderr } = start([MODEL, '-z', TOKENIZER, '--port', '0', '--kernels', 'js', '-q']);
    const base = await url;
    const res = await fetch(`${base}/v1/completions`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ temperature: 0, stream: true }) });
    const reader = res.body!.getReader();
    let text = new TextDecoder().decode((await reader.read()).value);
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += new TextDecoder().decode(r.value);
    const data = sseData(text);
    assert.equal(data.at(-1), '[DONE]');
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d) as Chunk);
    assert.equal(chunks.map((c) => c.choices[0]!.text).join(''), llama2Run(['-t', '0', '-n', '0']));
    const [code] = await exited;
    assert.equal(code, 0, stderr());
    assert.match(stderr(), /SIGTERM: shutting down/);
    await assert.rejects(fetch(`${base}/health`), 'no longer listening');
  });

  test('usage errors: one line, exit 2', async () => {
    for (const args of [[MODEL, MODEL], [MODEL, '-z', TOKENIZER, '--port', '70000'], [MODEL, '-z', TOKENIZER, '--max-concurrent', '0'], ['/nonexistent.bin', '-z', TOKENIZER]]) {
      // (a server that wrongly starts is killed after 20 s instead of hanging the suite)
      const child = spawn(process.execPath, [cliPath, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
      let err = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      const [code] = await once(child, 'exit');
      assert.notEqual(code, 0, args.join(' '));
      assert.equal(err.trim().split('\n').length, 1, err);
    }
  });
});
