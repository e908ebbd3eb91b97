// The server under hostile load (issue 19's probes): huge prompts are refused without being
// tokenized and never stall the event loop; tokenizing counts under the concurrency limit;
// stalled uploads and idle connections are cut in seconds and their memory let go; the number of
// connections is capped; sessions are made at start-up, as many as fit, never failing at run
// time; malformed URIs are 400s; HEAD works; cross-origin pages, non-JSON bodies, foreign Host
// names and requests without the API key are refused.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request } from 'node:http';
import { type Socket, connect } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, test } from 'node:test';
import OpenAI from 'openai';
import { OutOfMemoryError } from '../src/errors.js';
import { jsKernels } from '../src/kernels/js.js';
import { encodeConversation } from '../src/infer/chat.js';
import type { ModelKernels } from '../src/infer/forward.js';
import { loadTransformer } from '../src/infer/load.js';
import { ApiServer, startServer } from '../src/server/http.js';
import { loadServedModel } from '../src/server/served-model.js';
import { SessionMemoryError } from '../src/server/sessions.js';
import { loadTokenizer } from '../src/tokenizer/index.js';
import { needsRefdata, ref } from './refdata.js';
import { JSON_HEADERS, MODEL, TOKENIZER, postJson, serve } from './server-fixtures.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** A raw TCP connection to the server's port. */
async function rawSocket(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await once(socket, 'connect');
  return socket;
}

/** Resolves with what the server sent when it closes the connection (or rejects after `ms`). */
function closedWithin(socket: Socket, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    socket.setEncoding('utf8').on('data', (d: string) => (data += d));
    socket.on('error', () => {});
    const timer = setTimeout(() => reject(new Error(`still open after ${ms} ms`)), ms);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(data);
    });
  });
}

describe('server hardening', needsRefdata, () => {
  test('a 1 MiB prompt is refused from a cheap bound, never tokenized; /health stays responsive', async () => {
    const s = await serve({ maxConcurrent: 2, maxQueued: 16 });
    const tok = s.server.model.tokenizer;
    let encoded = 0;
    const encodeAsync = tok.encodeAsync.bind(tok);
    tok.encodeAsync = (...args: Parameters<typeof encodeAsync>) => {
      encoded++;
      return encodeAsync(...args);
    };
    try {
      const huge = 'Once upon a time there was a cat. '.repeat(30_000); // ~1 MB
      const started = performance.now();
      const requests = Array.from({ length: 10 }, (_, i) => i % 2 === 0
        ? postJson(`${s.url}/v1/completions`, { prompt: huge })
        : postJson(`${s.url}/v1/chat/completions`, { messages: [{ role: 'user', content: huge }] }));
      // the event loop keeps answering meanwhile
      let worst = 0;
      const health = (async () => {
        for (let i = 0; i < 10; i++) {
          const t = performance.now();
          assert.equal((await fetch(`${s.url}/health`)).status, 200);
          worst = Math.max(worst, performance.now() - t);
        }
      })();
      for (const r of await Promise.all(requests)) {
        assert.equal(r.status, 400);
        const error = r.body['error'] as { code: string; message: string };
        assert.equal(error.code, 'context_length_exceeded');
        assert.match(error.message, /^the prompt is at least \d+ tokens, longer than the model's context window of 512 tokens$/);
      }
      await health;
      const ms = performance.now() - started;
      assert.equal(encoded, 0, 'nothing was tokenized');
      assert.ok(worst < 1000, `/health took up to ${worst.toFixed(0)} ms`);
      assert.ok(ms < 5000, `the ten refusals took ${ms.toFixed(0)} ms`);
    } finally {
      await s.close();
    }
  });

  test('the tokenizer\'s tables are built at start-up, not in the first request (which would block the event loop)', async () => {
    const model = loadServedModel({ modelPath: MODEL, tokenizerPath: TOKENIZER }, jsKernels);
    const encoder = (): unknown => (model.tokenizer as unknown as { encoder?: unknown }).encoder;
    assert.equal(encoder(), undefined, 'loading does not build them');
    const server = new ApiServer(model, {});
    assert.notEqual(encoder(), undefined);
    await server.close(100);
  });

  test('tokenizing counts under the concurrency limit: a request that finds no session is not tokenized', async () => {
    const s = await serve({ maxConcurrent: 1, maxQueued: 0 });
    const tok = s.server.model.tokenizer;
    let encoded = 0;
    const encodeAsync = tok.encodeAsync.bind(tok);
    tok.encodeAsync = (...args: Parameters<typeof encodeAsync>) => {
      encoded++;
      return encodeAsync(...args);
    };
    try {
      const first = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ temperature: 0, stream: true }) });
      const reader = first.body!.getReader();
      await reader.read();
      assert.equal(encoded, 1);
      const busy = await postJson(`${s.url}/v1/completions`, { prompt: 'The cat sat. '.repeat(30), max_tokens: 2 });
      assert.equal(busy.status, 429);
      assert.equal(encoded, 1, 'the refused request was not tokenized');
      // a prompt that only the exact count shows to be too long: tokenized (holding the session), then 400
      await reader.cancel();
      let tooLong = { status: 429, body: {} as Record<string, unknown> };
      for (let i = 0; i < 100 && tooLong.status === 429; i++) tooLong = await postJson(`${s.url}/v1/completions`, { prompt: 'The cat sat. '.repeat(120) });
      assert.equal(tooLong.status, 400);
      assert.equal((tooLong.body['error'] as { code: string }).code, 'context_length_exceeded');
      assert.match((tooLong.body['error'] as { message: string }).message, /^the prompt is \d+ tokens/);
      assert.equal((await postJson(`${s.url}/v1/completions`, { max_tokens: 2 })).status, 200, 'the session was given back');
    } finally {
      await s.close();
    }
  });

  test('a chat message of 200,000 tokens: encodeConversation does not overflow the stack; the server answers 400', async () => {
    const tok = loadTokenizer(TOKENIZER, 512);
    const content = '😀'.repeat(50_000); // not in tok512: 4 byte tokens each
    const ids = encodeConversation(tok, [{ role: 'user', content }]);
    assert.ok(ids.length > 200_000, `${ids.length} tokens`);
    const s = await serve();
    try {
      const r = await postJson(`${s.url}/v1/chat/completions`, { messages: [{ role: 'system', content: 'x' }, { role: 'user', content }] });
      assert.equal(r.status, 400);
      assert.equal((r.body['error'] as { code: string }).code, 'context_length_exceeded');
    } finally {
      await s.close();
    }
  });

  test('stalled uploads and silent connections are cut within a second or two, and their memory is let go', async () => {
    const s = await serve({ headersTimeoutMs: 300, bodyTimeoutMs: 300, requestTimeoutMs: 3000 });
    try {
      gc();
      const before = process.memoryUsage().arrayBuffers;
      const sockets: Socket[] = [];
      const closed: Array<Promise<string>> = [];
      const chunk = Buffer.alloc(256 * 1024, 0x20);
      for (let i = 0; i < 20; i++) {
        const socket = await rawSocket(s.url);
        closed.push(closedWithin(socket, 2500));
        socket.write(`POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${1 << 20}\r\n\r\n`);
        socket.write('{"prompt": "');
        for (let k = 0; k < 3; k++) socket.write(chunk); // 768 KiB of the 1 MiB, then nothing
        sockets.push(socket);
      }
      // and a client that never finishes its headers
      const slow = await rawSocket(s.url);
      const slowClosed = closedWithin(slow, 2500);
      slow.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      const answers = await Promise.all(closed);
      for (const a of answers) assert.match(a, /^HTTP\/1\.1 408 /);
      assert.match(answers[0]!, /"code":"request_timeout"/);
      assert.match(await slowClosed, /^(HTTP\/1\.1 408 [^]*|)$/);
      gc();
      await new Promise((r) => setTimeout(r, 50));
      gc();
      const after = process.memoryUsage().arrayBuffers;
      assert.ok(after - before < 4 << 20, `${((after - before) / 2 ** 20).toFixed(1)} MiB still held after 15 MiB of stalled bodies`);
      assert.equal((await fetch(`${s.url}/health`)).status, 200);
    } finally {
      await s.close();
    }
  });

  test('connections beyond maxConnections are closed at once', async () => {
    const s = await serve({ maxConnections: 4 });
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 4; i++) sockets.push(await rawSocket(s.url));
      await new Promise((r) => setTimeout(r, 50));
      const extra = await rawSocket(s.url);
      assert.equal(await closedWithin(extra, 1000), '');
      for (const k of sockets) k.destroy();
      await new Promise((r) => setTimeout(r, 50));
      assert.equal((await fetch(`${s.url}/health`)).status, 200, 'served again once the others left');
    } finally {
      for (const k of sockets) k.destroy();
      await s.close();
    }
  });

  test('malformed URIs are 400; HEAD gets the headers of GET', async () => {
    const s = await serve();
    try {
      const bad = await fetch(`${s.url}/v1/models/%ZZ`);
      assert.equal(bad.status, 400);
      assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'invalid_request');
      assert.equal((await fetch(`${s.url}/v1/models/%E0%A4%A`)).status, 400);
      for (const path of ['/health', '/v1/models', '/v1/models/stories260K']) {
        const get = await fetch(`${s.url}${path}`);
        const head = await fetch(`${s.url}${path}`, { method: 'HEAD' });
        assert.equal(head.status, 200, path);
        assert.equal(head.headers.get('content-type'), get.headers.get('content-type'), path);
        assert.equal(head.headers.get('content-length'), String((await get.arrayBuffer()).byteLength), path);
        assert.equal((await head.arrayBuffer()).byteLength, 0, path);
      }
      const post = await fetch(`${s.url}/v1/completions`, { method: 'HEAD' });
      assert.equal(post.status, 405);
      assert.equal(post.headers.get('allow'), 'POST');
      assert.equal((await fetch(`${s.url}/health`, { method: 'DELETE' })).headers.get('allow'), 'GET, HEAD');
    } finally {
      await s.close();
    }
  });

  test('API bodies must be application/json; a foreign Host name is refused on loopback', async () => {
    const s = await serve();
    try {
      for (const type of [undefined, 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
        const r = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: type === undefined ? {} : { 'Content-Type': type }, body: '{"max_tokens": 2}' });
        assert.equal(r.status, 415, String(type));
        assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'unsupported_media_type');
      }
      const ok = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'Application/JSON; charset=utf-8' }, body: '{"max_tokens": 2}' });
      assert.equal(ok.status, 200);
      // DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1
      const { port } = new URL(s.url);
      const rebound = await new Promise<number>((resolve, reject) => {
        request({ host: '127.0.0.1', port, path: '/v1/models', headers: { Host: `evil.example:${port}` } }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        }).on('error', reject).end();
      });
      assert.equal(rebound, 403);
      for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, 'localhost']) {
        const status = await new Promise<number>((resolve, reject) => {
          request({ host: '127.0.0.1', port, path: '/health', headers: { Host: host } }, (res) => {
            res.resume();
            resolve(res.statusCode!);
          }).on('error', reject).end();
        });
        assert.equal(status, 200, host);
      }
    } finally {
      await s.close();
    }
  });

  test('--cors ORIGIN: that origin gets the CORS headers, others are refused', async () => {
    const s = await serve({ corsOrigins: ['http://localhost:3000'] });
    try {
      const pre = await fetch(`${s.url}/v1/chat/completions`, { method: 'OPTIONS', headers: { Origin: 'http://localhost:3000', 'Access-Control-Request-Method': 'POST' } });
      assert.equal(pre.status, 204);
      assert.equal(pre.headers.get('access-control-allow-origin'), 'http://localhost:3000');
      assert.match(pre.headers.get('access-control-allow-headers') ?? '', /Authorization/);
      const post = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { ...JSON_HEADERS, Origin: 'http://localhost:3000' }, body: '{"max_tokens": 2}' });
      assert.equal(post.status, 200);
      assert.equal(post.headers.get('access-control-allow-origin'), 'http://localhost:3000');
      const other = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { ...JSON_HEADERS, Origin: 'http://localhost:4000' }, body: '{"max_tokens": 2}' });
      assert.equal(other.status, 403);
    } finally {
      await s.close();
    }
    const any = await serve({ corsOrigins: ['*'] });
    try {
      const r = await fetch(`${any.url}/v1/models`, { headers: { Origin: 'https://example.org' } });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('access-control-allow-origin'), '*');
    } finally {
      await any.close();
    }
  });

  test('--api-key: /v1/ needs Authorization: Bearer KEY (the openai client sends it); /health and the page do not', async () => {
    const s = await serve({ apiKey: 'sk-test-123' });
    try {
      const none = await postJson(`${s.url}/v1/completions`, { max_tokens: 2 });
      assert.equal(none.status, 401);
      assert.equal(none.headers.get('www-authenticate'), 'Bearer');
      assert.equal((none.body['error'] as { code: string }).code, 'invalid_api_key');
      const wrong = await fetch(`${s.url}/v1/models`, { headers: { Authorization: 'Bearer sk-test-124' } });
      assert.equal(wrong.status, 401);
      assert.equal((await fetch(`${s.url}/health`)).status, 200);
      const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'sk-test-123', maxRetries: 0 });
      assert.deepEqual((await client.models.list()).data.map((m) => m.id), ['stories260K']);
      const c = await client.completions.create({ model: 'stories260K', prompt: 'Once', max_tokens: 3, temperature: 0 });
      assert.equal(c.usage!.completion_tokens, 3);
      const bad = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'nope', maxRetries: 0 });
      await assert.rejects(bad.models.list(), OpenAI.AuthenticationError);
    } finally {
      await s.close();
    }
  });
});

describe('sessions and memory', needsRefdata, () => {
  /** The TypeScript kernels with a memory budget: an allocation past it fails as WebAssembly memory does. */
  function budgetKernels(budgetBytes: number): ModelKernels & { used: number } {
    const k = {
      ...jsKernels,
      used: 0,
      allocate(floats: number): Float32Array {
        if (k.used + floats * 4 > budgetBytes) throw new OutOfMemoryError(`out of memory: ${k.used + floats * 4} > ${budgetBytes} bytes`);
        k.used += floats * 4;
        return new Float32Array(floats);
      },
    };
    return k;
  }

  test('--max-concurrent beyond memory: refused (or capped) at start-up, never a 500 at run time, nothing leaked', async () => {
    const probe = budgetKernels(Infinity);
    const weights = loadTransformer(MODEL, probe);
    const modelBytes = probe.used;
    weights.session();
    const sessionBytes = probe.used - modelBytes;
    // room for the model's own session, 9 more, and half of another
    const kernels = budgetKernels(modelBytes + 9.5 * sessionBytes);
    const model = loadServedModel({ modelPath: MODEL, tokenizerPath: TOKENIZER }, kernels);
    assert.throws(() => new ApiServer(model, { maxConcurrent: 200 }), (err: unknown) => {
      assert.ok(err instanceof SessionMemoryError);
      assert.equal(err.fitting, 10);
      assert.match(err.message, /^only 10 of 200 sessions fit in memory/);
      return true;
    });
    assert.equal(kernels.used, modelBytes + 9 * sessionBytes, 'the session that did not fit took nothing');
    // (a fresh model: the first pool's sessions hold their memory)
    const capped = budgetKernels(modelBytes + 9.5 * sessionBytes);
    const { server, url } = await startServer(loadServedModel({ modelPath: MODEL, tokenizerPath: TOKENIZER }, capped), { port: 0, maxConcurrent: 200, fitSessions: 'cap', maxQueued: 200 });
    try {
      assert.equal(server.sessions.maxConcurrent, 10);
      const used = capped.used;
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => postJson(`${url}/v1/completions`, { prompt: 'Once', max_tokens: 2, seed: i + 1 })));
      assert.deepEqual([...new Set(results.map((r) => r.status))], [200]);
      assert.equal(capped.used, used, 'no allocation at run time');
    } finally {
      await server.close(1000);
    }
  });
});

test('Tokenizer.encodeAsync: the ids of encode(), with the event loop turning meanwhile; aborted by its signal', needsRefdata, async () => {
  const tok = loadTokenizer(ref('data', 'tokenizers', 'tokenizer.bin'), 32000);
  const { readFileSync } = await import('node:fs');
  const text = readFileSync(ref('data', 'tinystories', 'valid_next781_heuristic_boundaries.txt'), 'utf8').slice(0, 400_000);
  const expected = tok.encode(text);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const t0 = performance.now();
  const [a, b] = await Promise.all([tok.encodeAsync(text), tok.encodeAsync(text.slice(1000))]);
  const ms = performance.now() - t0;
  clearInterval(timer);
  assert.deepEqual(a, expected);
  assert.deepEqual(b, tok.encode(text.slice(1000)));
  // (a plain encode() would let no timer run at all; the machine may be loaded, so only a few are required)
  assert.ok(ticks >= 5, `${ticks} timer turns in ${ms.toFixed(0)} ms`);
  const controller = new AbortController();
  const aborted = tok.encodeAsync(text, {}, controller.signal);
  setImmediate(() => controller.abort(new Error('stop')));
  await assert.rejects(aborted, /stop/);
  assert.deepEqual(tok.encode(text.slice(0, 5000)), expected.slice(0, tok.encode(text.slice(0, 5000)).length));
});

test('Tokenizer.minTokens is a lower bound of the token count', needsRefdata, () => {
  const tokenizers = [
    loadTokenizer(TOKENIZER, 512), loadTokenizer(ref('data', 'models', 'tok512.model'), 512),
    loadTokenizer(ref('data', 'tokenizers', 'tokenizer.model'), 32000),
  ];
  let seed = 7;
  const rand = (n: number): number => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed % n;
  };
  const alphabet = ['a', 'b', 'the', ' ', '  ', '\n', '\t', '€', '😀', '\ud800', '\udc00', '▁', 'Once upon', '<s>', '0', '中'];
  for (const tok of tokenizers) {
    for (let i = 0; i < 300; i++) {
      let text = '';
      for (let k = rand(40); k > 0; k--) text += alphabet[rand(alphabet.length)]!;
      const n = tok.encode(text, { bos: true, eos: true }).length;
      const bound = tok.minTokens(text, { bos: true, eos: true });
      assert.ok(bound <= n, `${JSON.stringify(text)}: bound ${bound} > ${n} tokens`);
    }
    const story = 'Once upon a time, there was a little girl named Lily. '.repeat(50);
    assert.ok(tok.minTokens(story) >= tok.encode(story).length / 8, 'not a trivial bound');
  }
});

test('temperature 1e-38 (logits / T overflow) gives the greedy text, through the API and the CLI', needsRefdata, async () => {
  const s = await serve();
  try {
    const greedy = await postJson(`${s.url}/v1/completions`, { prompt: 'Once upon', max_tokens: 30, temperature: 0 });
    const tiny = await postJson(`${s.url}/v1/completions`, { prompt: 'Once upon', max_tokens: 30, temperature: 1e-38, seed: 3 });
    const text = (r: { body: Record<string, unknown> }): string => (r.body['choices'] as Array<{ text: string }>)[0]!.text;
    assert.equal(text(tiny), text(greedy));
    assert.ok(text(greedy).length > 20);
  } finally {
    await s.close();
  }
  const { spawnSync } = await import('node:child_process');
  const { cliPath } = await import('./refdata.js');
  const run = (t: string): string => spawnSync(process.execPath, [cliPath, 'run', MODEL, '-z', TOKENIZER, '-n', '40', '-i', 'Once upon', '-t', t, '-s', '5'], { encoding: 'utf8' }).stdout;
  const greedy = run('0');
  assert.match(greedy, /^Once upon a time/);
  for (const t of ['1e-38', '1e-45', '3e-39']) assert.equal(run(t), greedy, `-t ${t}`);
});
