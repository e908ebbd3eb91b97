// The llama2ts server through OpenAI's official client (`npm install openai`): the models it
// serves, a completion, and a chat answer streamed as it is generated.
//
//   npx llama2 serve --port 8080        (in another terminal)
//   node openai-client.mjs [BASE_URL]   (default http://127.0.0.1:8080/v1)

import OpenAI from 'openai';

const baseURL = process.argv[2] ?? process.env.LLAMA2_BASE_URL ?? 'http://127.0.0.1:8080/v1';
// llama2 serve asks for a key only when started with --api-key
const client = new OpenAI({ baseURL, apiKey: process.env.LLAMA2_API_KEY ?? 'unused' });

const models = await client.models.list();
const model = models.data[0].id;
console.log(`model: ${model}`);

const completion = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 40, temperature: 0.8, seed: 42 });
console.log(`completion: ${JSON.stringify(completion.choices[0].text)} (${completion.usage.completion_tokens} tokens, finish: ${completion.choices[0].finish_reason})`);

const stream = await client.chat.completions.create({
  model, messages: [{ role: 'user', content: 'Tell me a story.' }], max_tokens: 40, seed: 1, stream: true,
});
process.stdout.write('chat: ');
for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta.content ?? '');
process.stdout.write('\n');
