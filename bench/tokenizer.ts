// Tokenizer throughput: MB/s and tokens/s of encode (the whole text as one string, and story by
// story as the data pipeline does), decode, and streaming decode, for each tokenizer given.
//
//   node dist/bench/tokenizer.js [--text FILE] [--tokenizer FILE]... [--ms 1000]
//
// Defaults: ../shared/data/tinystories/train_first2316.txt (2.1 MB) with tok512.model and the
// Llama 2 tokenizer.model. The machine is shared: figures vary from run to run by 10–30 %.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { intFlag, parseFlags, stringFlag } from '../src/cli/flags.js';
import { StreamingDecoder, loadTokenizer } from '../src/tokenizer/index.js';
import { msPerCall } from './timing.js';

const refdata = resolve(process.env['LLAMA2_REFDATA'] ?? '../shared');
const { values } = parseFlags(process.argv.slice(2), {
  text: { type: 'string' }, tokenizer: { type: 'string', multiple: true }, ms: { type: 'string' },
});
const textPath = stringFlag(values, 'text', `${refdata}/data/tinystories/train_first2316.txt`);
const tokenizers = (values['tokenizer'] as string[] | undefined) ?? [
  `${refdata}/data/models/tok512.model`,
  `${refdata}/data/tokenizers/tokenizer.model`,
];
const budgetMs = intFlag(values, 'ms', 1000, 10);

/** Milliseconds per call of fn, over about budgetMs. */
function time(fn: () => void): number {
  return msPerCall(fn, budgetMs);
}

const text = readFileSync(textPath, 'utf8');
const mb = Buffer.byteLength(text) / 1e6;
const stories = text.split(/^<\|endoftext\|>$/m).map((s) => s.trim()).filter((s) => s !== '');
console.log(`text: ${textPath} (${mb.toFixed(2)} MB, ${stories.length} stories)`);

for (const path of tokenizers) {
  const t0 = performance.now();
  const tok = loadTokenizer(path);
  const loadMs = performance.now() - t0;
  const t1 = performance.now();
  const ids = tok.encode(text);
  const firstMs = performance.now() - t1;
  const whole = time(() => tok.encode(text));
  let storyTokens = 0;
  const perStory = time(() => {
    storyTokens = 0;
    for (const s of stories) storyTokens += tok.encode(s).length;
  });
  const dec = time(() => tok.decode(ids));
  const streaming = time(() => {
    const d = new StreamingDecoder(tok);
    for (let i = 1; i < ids.length; i++) d.push(ids[i - 1]!, ids[i]!);
    d.flush();
  });
  const rate = (ms: number): string => `${(mb / (ms / 1000)).toFixed(1)} MB/s`;
  console.log(`\n${path}: ${tok.vocabSize} tokens, load ${loadMs.toFixed(0)} ms, first encode (builds merge table) ${firstMs.toFixed(0)} ms`);
  console.log(`  encode whole text   ${whole.toFixed(0).padStart(6)} ms  ${rate(whole)}  ${(ids.length / whole / 1000).toFixed(2)} M tokens/s  (${ids.length} tokens)`);
  console.log(`  encode per story    ${perStory.toFixed(0).padStart(6)} ms  ${rate(perStory)}  (${storyTokens} tokens, BOS each)`);
  console.log(`  decode              ${dec.toFixed(0).padStart(6)} ms  ${rate(dec)}`);
  console.log(`  streaming decode    ${streaming.toFixed(0).padStart(6)} ms  ${(ids.length / streaming / 1000).toFixed(2)} M tokens/s`);
}
