// llama2ts as a library in Node.js: a story, a completion cut at a stop string, and a chat answer
// from the model that ships with the package.
//
//   npm install llama2ts
//   node node.mjs

import { LanguageModel } from 'llama2ts';

// No path: the embedded model (models/default.bin). WebAssembly SIMD kernels on every core.
const lm = await LanguageModel.load();
const { dim, nLayers, vocabSize, seqLen } = lm.config;
console.log(`model: dim ${dim}, ${nLayers} layers, vocabulary ${vocabSize}, context ${seqLen}\n`);

// Streamed: pieces of text as the model writes them (the prompt is not repeated; echo: true would).
process.stdout.write('Once upon a time');
const stream = lm.stream({ prompt: 'Once upon a time', maxTokens: 60, temperature: 0.8, seed: 42 });
for await (const piece of stream) process.stdout.write(piece);
process.stdout.write('\n\n');

// Awaited: the whole text, why it ended and how fast it went.
const done = await lm.complete({ prompt: 'Lily and Ben went to the park.', maxTokens: 80, stop: ['.'], seed: 7 });
console.log(`${JSON.stringify(done.text)} (${done.completionTokens} tokens, finish: ${done.finishReason}, ${Math.round(done.tokensPerSecond)} tok/s)\n`);

// A chat: the assistant's next message, rendered with the model's chat template. (The embedded
// model learned stories, not conversations: expect a story.)
process.stdout.write('Assistant:');
for await (const piece of lm.chat([{ role: 'user', content: 'Tell me about a cat.' }], { maxTokens: 40, seed: 1 })) {
  process.stdout.write(piece);
}
process.stdout.write('\n');

await lm.close();
