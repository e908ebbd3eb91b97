// Does batched prefill change what a model writes? Generates 100 tokens after prompts cut from the
// validation stories (their first 5 to 44 words), greedily and with run's sampler (temperature 1,
// top-p 0.9, a seed per prompt), once with the prompt fed as blocks (prefill: matrix × matrix
// products, another summation order) and once token by token, and counts the texts that differ.
// A difference can only come from a near-tie that float32 rounding tips the other way.
//
//   node dist/bench/prefill-parity.js [--model FILE] [--tokenizer FILE] [--prompts N] [--threads N]

import { readFileSync } from 'node:fs';
import { intFlag, parseFlags, stringFlag } from '../src/cli/flags.js';
import { generateFromIds, type GenerationRequest } from '../src/infer/generate.js';
import type { InferenceEngine } from '../src/infer/engine.js';
import { loadTransformer } from '../src/infer/load.js';
import { createKernels } from '../src/kernels/kernel-set.js';
import { loadTokenizer, type Tokenizer } from '../src/tokenizer/index.js';

const { values } = parseFlags(process.argv.slice(2), {
  model: { type: 'string' }, tokenizer: { type: 'string' }, prompts: { type: 'string' }, threads: { type: 'string' }, stories: { type: 'string' },
});
const refdata = process.env['LLAMA2_REFDATA'] ?? '../shared';
const modelPath = stringFlag(values, 'model', `${refdata}/data/models/stories260K.bin`);
const tokenizerPath = stringFlag(values, 'tokenizer', `${refdata}/data/models/tok512.bin`);
const storiesPath = stringFlag(values, 'stories', `${refdata}/data/tinystories/valid_first201.txt`);
const prompts = intFlag(values, 'prompts', 200, 1);
const kernels = await createKernels({ kind: 'wasm', threads: intFlag(values, 'threads', 1, 1, 256) });
const model = loadTransformer(modelPath, kernels);
const tokenizer = loadTokenizer(tokenizerPath, model.config.vocabSize);

/** The model with prefill done token by token. */
function tokenByToken(engine: InferenceEngine): InferenceEngine {
  return {
    config: engine.config, backend: engine.backend,
    forward: (token, pos) => engine.forward(token, pos),
    advance: (token, pos) => engine.advance(token, pos),
    prefill(tokens, pos, visit) {
      for (let i = 0; i < tokens.length; i++) {
        if (visit === undefined) engine.advance(tokens[i]!, pos + i);
        else visit(i, engine.forward(tokens[i]!, pos + i));
      }
    },
    shift: (keep, drop, length) => engine.shift(keep, drop, length),
    session: () => tokenByToken(engine.session()),
  };
}

function text(engine: InferenceEngine, tok: Tokenizer, request: GenerationRequest): string {
  let out = '';
  const gen = generateFromIds(engine, tok, request);
  for (let r = gen.next(); r.done !== true; r = gen.next()) out += r.value;
  return out;
}

const stories = readFileSync(storiesPath, 'utf8').split('<|endoftext|>').map((s) => s.trim()).filter((s) => s.length > 0);
let same = 0, different = 0;
for (let i = 0; i < prompts; i++) {
  const words = stories[i % stories.length]!.split(/\s+/);
  const promptIds = tokenizer.encode(words.slice(0, 5 + ((i * 7) % 40)).join(' '), { bos: true, eos: false });
  for (const sampling of [{ temperature: 0 }, { temperature: 1, topp: 0.9, seed: 1000 + i }]) {
    const request = { promptIds, maxTokens: 100, ...sampling };
    if (text(model.session(), tokenizer, request) === text(tokenByToken(model.session()), tokenizer, request)) same++;
    else different++;
  }
}
console.log(`${modelPath}: ${same} of ${same + different} generations identical with batched and token-by-token prefill (${prompts} prompts, greedy and top-p 0.9, 100 tokens each; ${kernels.name})`);
await kernels.close();
