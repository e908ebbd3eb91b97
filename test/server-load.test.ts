// A bounded load test: 50 clients stream at once from a server with 8 sessions and a waiting line;
// every one of them must get exactly the text that the same request gets when it is alone.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { needsRefdata } from './refdata.js';
import { postStream, serve } from './server-fixtures.js';

const CLIENTS = 50;

test(`${CLIENTS} concurrent streaming clients each get the text of a lone request`, { ...needsRefdata, timeout: 60_000 }, async (t) => {
  const s = await serve({ maxConcurrent: 8, maxQueued: CLIENTS });
  try {
    const url = `${s.url}/v1/completions`;
    // 10 different requests (seeds, prompts, temperatures), 5 clients each
    const requests = Array.from({ length: 10 }, (_, i) => ({
      prompt: ['Once upon a time', 'The cat', 'Tom and Sue', 'One day', ''][i % 5],
      max_tokens: 64, temperature: i % 3 === 0 ? 0 : 0.9, top_p: 0.9, seed: 1000 + i,
    }));
    const alone: string[] = [];
    for (const r of requests) alone.push((await postStream(url, r)).text);
    assert.equal(new Set(alone).size, alone.length, 'the requests give different texts');

    const started = performance.now();
    const results = await Promise.all(Array.from({ length: CLIENTS }, (_, c) => postStream(url, { ...requests[c % requests.length]!, stream_options: { include_usage: true } })));
    const seconds = (performance.now() - started) / 1000;
    let tokens = 0;
    results.forEach((r, c) => {
      assert.equal(r.status, 200);
      assert.equal(r.text, alone[c % requests.length], `client ${c}`);
      tokens += r.chunks.at(-1)!.usage!.completion_tokens;
    });
    t.diagnostic(`${CLIENTS} clients, ${tokens} tokens in ${seconds.toFixed(2)} s: ${(tokens / seconds).toFixed(0)} tokens/s in total`);
    const health = await (await fetch(`${s.url}/health`)).json() as { sessions: { active: number; queued: number } };
    assert.deepEqual([health.sessions.active, health.sessions.queued], [0, 0]);
  } finally {
    await s.close();
  }
});
