// Does text stay text past the context window? Generates N tokens from BOS through the context
// shift (ContextWindow, as `llama2 run -n N --ignore-bos` does) for several seeds and compares
// the share of repeated 4-grams late in the text with that early on: a model whose context
// shifts badly degenerates into loops, and the late share climbs.
//
//   share(span) = 1 − distinct 4-grams / 4-grams, over the token ids of the span
//
//   node dist/bench/context-shift.js [--model FILE -z TOKENIZER] [-n 2000] [--seeds 10] [-t 0.8] [-p 0.9] [--keep 1]

import { join } from 'node:path';
import { intFlag, numberFlag, parseFlags, stringFlag } from '../src/cli/flags.js';
import { ContextWindow } from '../src/infer/generate.js';
import { loadTransformer } from '../src/infer/load.js';
import { Sampler } from '../src/infer/sampler.js';
import { createKernels } from '../src/kernels/kernel-set.js';
import { loadTokenizer } from '../src/tokenizer/index.js';

/** 1 − distinct / total over the 4-grams of `ids`. */
function repeatedShare(ids: readonly number[]): number {
  const seen = new Set<string>();
  let total = 0;
  for (let i = 0; i + 4 <= ids.length; i++, total++) seen.add(ids.slice(i, i + 4).join(','));
  return total === 0 ? 0 : 1 - seen.size / total;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function main(): Promise<void> {
  const { values } = parseFlags(process.argv.slice(2), {
    model: { type: 'string' }, tokenizer: { type: 'string', short: 'z' }, steps: { type: 'string', short: 'n' },
    seeds: { type: 'string' }, temperature: { type: 'string', short: 't' }, 'top-p': { type: 'string', short: 'p' }, keep: { type: 'string' },
  });
  const shared = process.env['LLAMA2_REFDATA'] ?? '../shared';
  const modelPath = stringFlag(values, 'model', join(shared, 'data', 'models', 'stories260K.bin'));
  const tokenizerPath = stringFlag(values, 'tokenizer', join(shared, 'data', 'models', 'tok512.bin'));
  const n = intFlag(values, 'steps', 2000, 8);
  const seeds = intFlag(values, 'seeds', 10, 1);
  const temperature = numberFlag(values, 'temperature', 0.8);
  const topp = numberFlag(values, 'top-p', 0.9);
  const keep = intFlag(values, 'keep', 1, 0);

  const kernels = await createKernels({ kind: 'wasm', threads: 1 });
  const engine = loadTransformer(modelPath, kernels);
  const tokenizer = loadTokenizer(tokenizerPath, engine.config.vocabSize);
  const early = [0, Math.floor(n / 4)] as const;
  const late = [Math.floor(n / 2), n] as const;
  console.log(`${modelPath}: ${n} tokens from BOS (context ${engine.config.seqLen}), -t ${temperature} -p ${topp}, keep ${keep}; repeated 4-gram share`);
  console.log(`| seed | shifts | tokens ${early[0]}–${early[1]} | tokens ${late[0]}–${late[1]} | tokens ${n - (early[1] - early[0])}–${n} |`);
  console.log('|---|---|---|---|---|');
  const rows: number[][] = [];
  for (let seed = 1; seed <= seeds; seed++) {
    const window = new ContextWindow(engine.session(), keep);
    const sampler = new Sampler(engine.config.vocabSize, { temperature, topp, seed });
    const ids: number[] = [];
    let token = tokenizer.bosId;
    for (let i = 0; i < n; i++) {
      token = sampler.sample(window.forward(token));
      ids.push(token);
    }
    const row = [repeatedShare(ids.slice(...early)), repeatedShare(ids.slice(...late)), repeatedShare(ids.slice(n - (early[1] - early[0])))];
    rows.push(row);
    console.log(`| ${seed} | ${window.shifts} | ${row.map((x) => x.toFixed(3)).join(' | ')} |`);
  }
  const med = [0, 1, 2].map((i) => median(rows.map((r) => r[i]!)));
  console.log(`| median | | ${med.map((x) => x.toFixed(3)).join(' | ')} |`);
  console.log(`\nlate / early: ${(med[1]! / med[0]!).toFixed(2)}× (tokens ${late[0]}–${late[1]} vs ${early[0]}–${early[1]}); ` +
    `${(med[2]! / med[0]!).toFixed(2)}× for spans of equal length`);
  await kernels.close();
}

await main();
