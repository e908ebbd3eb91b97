// The official `openai` npm client against `llama2 serve`: completions, streamed chat, the model
// list, and errors surfacing as the client's typed exceptions.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import OpenAI from 'openai';
import { needsRefdata } from './refdata.js';
import { llama2Run, serve } from './server-fixtures.js';

test('the openai client works against the server', needsRefdata, async () => {
  const s = await serve();
  try {
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 });

    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), ['stories260K']);

    const completion = await client.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 40, temperature: 0.8, top_p: 0.9, seed: 42 });
    const expected = llama2Run(['-i', 'Once upon a time', '-n', String(completion.usage!.prompt_tokens - 1 + 40), '-t', '0.8', '-p', '0.9', '-s', '42']);
    assert.equal('Once upon a time' + completion.choices[0]!.text, expected);
    assert.equal(completion.usage!.completion_tokens, 40);

    const messages = [{ role: 'user' as const, content: 'Tell me a story.' }];
    const chat = await client.chat.completions.create({ model: 'stories260K', messages, max_tokens: 30, temperature: 0 });
    const stream = await client.chat.completions.create({ model: 'stories260K', messages, max_tokens: 30, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let streamed = '';
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      streamed += chunk.choices[0]?.delta.content ?? '';
      usage ??= chunk.usage;
    }
    assert.equal(streamed, chat.choices[0]!.message.content);
    assert.deepEqual(usage, chat.usage);

    await assert.rejects(client.completions.create({ model: 'stories260K', prompt: 'x', temperature: 5 }), (err: unknown) => {
      assert.ok(err instanceof OpenAI.BadRequestError);
      assert.equal(err.param, 'temperature');
      return true;
    });
    await assert.rejects(client.completions.create({ model: 'gpt-4', prompt: 'x' }), OpenAI.NotFoundError);
  } finally {
    await s.close();
  }
});
