// The library API: what a program gets from `import … from 'llama2ts'` gives the same text as the
// C program (golden cases) through the async iterator and the callback forms.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { LanguageModel, createKernels } from '../src/index.js';
import { needsRefdata, ref } from './refdata.js';

interface RunCase { name: string; model: string; tokenizer: string; args: string[]; stdout: string }

/** The C program's flags of a golden case as generate() options. */
function optionsOf(args: string[]): { temperature: number; topp: number; seed: number; steps: number; prompt: string } {
  const o = { temperature: 1, topp: 0.9, seed: 0, steps: 256, prompt: '' };
  for (let i = 0; i < args.length; i += 2) {
    const v = args[i + 1]!;
    if (args[i] === '-t') o.temperature = Number(v);
    else if (args[i] === '-p') o.topp = Number(v);
    else if (args[i] === '-s') o.seed = Number(v);
    else if (args[i] === '-n') o.steps = Number(v);
    else if (args[i] === '-i') o.prompt = v;
  }
  return o;
}

test('LanguageModel.stream and complete reproduce every golden case', needsRefdata, async () => {
  const cases = JSON.parse(readFileSync(ref('golden', 'runc_public.json'), 'utf8')) as RunCase[];
  const kernels = await createKernels({ kind: 'wasm', threads: 1 });
  for (const c of cases) {
    const lm = LanguageModel.load(ref(c.model), { tokenizer: ref(c.tokenizer), kernels });
    let streamed = '';
    const it = lm.stream(optionsOf(c.args));
    for await (const piece of it) streamed += piece;
    assert.equal(streamed + '\n', c.stdout, c.name);
    const pieces: string[] = [];
    const { text, summary } = lm.complete(optionsOf(c.args), (p) => pieces.push(p));
    assert.equal(text, streamed);
    assert.equal(pieces.join(''), text);
    assert.ok(summary.positions > 0);
  }
  await kernels.close();
});

test('LanguageModel.logits equals the PyTorch logits of the last token', needsRefdata, () => {
  const meta = JSON.parse(readFileSync(ref('golden', 'logits_260K_public.json'), 'utf8')) as { tokens: number[]; shape: [number, number] };
  const bytes = readFileSync(ref('golden', 'logits_260K_public.f32'));
  const golden = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const lm = LanguageModel.load(ref('data', 'models', 'stories260K.bin'), { tokenizer: ref('data', 'models', 'tok512.bin') });
  const [T, V] = meta.shape;
  const logits = lm.logits(meta.tokens);
  for (let i = 0; i < V; i++) assert.ok(Math.abs(logits[i]! - golden[(T - 1) * V + i]!) < 1e-4);
  assert.deepEqual(lm.encode('Once upon a time').slice(0, 1), [1]);
  assert.equal(lm.decode(lm.encode('Once upon a time', { bos: false })), 'Once upon a time');
  assert.throws(() => lm.logits([]), /logits needs 1 to 512 tokens/);
});

test('a tokenizer of the wrong size is refused when loading', needsRefdata, () => {
  assert.throws(
    () => LanguageModel.load(ref('data', 'models', 'stories260K.bin'), { tokenizer: ref('data', 'tokenizers', 'tokenizer.bin') }),
    /512|32000/,
  );
});

test('generation can be aborted between tokens', needsRefdata, async () => {
  const lm = LanguageModel.load(ref('data', 'models', 'stories260K.bin'), { tokenizer: ref('data', 'models', 'tok512.bin') });
  const ac = new AbortController();
  const it = lm.stream({ temperature: 0, steps: 200, signal: ac.signal });
  let n = 0;
  let r = await it.next();
  while (!r.done) {
    if (++n === 5) ac.abort();
    r = await it.next();
  }
  assert.equal(r.value.finishReason, 'aborted');
  assert.ok(r.value.positions <= 7, `positions ${r.value.positions}`);
});
