// The library API: what a program gets from `import … from 'llama2ts'`. LanguageModel.load() with
// no path is the embedded model on the WebAssembly kernels; a path, a file:/http: URL or the bytes
// load the same model; stream() and complete() are asynchronous (the event loop keeps running),
// give the C program's text for the golden cases, and take maxTokens, stop, temperature, topP,
// seed and echo; chat() answers what `llama2 run -m chat` answers.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { LanguageModel, UsageError, createKernels } from '../src/index.js';
import { DEFAULT_MODEL_PATH } from '../src/model/default-model.js';
import { cliPath, needsRefdata, ref } from './refdata.js';

interface RunCase { name: string; model: string; tokenizer: string; args: string[]; stdout: string }

/** The C program's flags of a golden case as library options (echo: run.c prints the prompt). */
function optionsOf(args: string[], promptTokens: (p: string) => number): { temperature: number; topP: number; seed: number; maxTokens: number; prompt: string; echo: true } {
  const o = { temperature: 1, topP: 0.9, seed: 0, steps: 256, prompt: '' };
  for (let i = 0; i < args.length; i += 2) {
    const v = args[i + 1]!;
    if (args[i] === '-t') o.temperature = Number(v);
    else if (args[i] === '-p') o.topP = Number(v);
    else if (args[i] === '-s') o.seed = Number(v);
    else if (args[i] === '-n') o.steps = Number(v);
    else if (args[i] === '-i') o.prompt = v;
  }
  // run.c's -n counts positions, the prompt's included (0 or past the context: all of it)
  const positions = o.steps === 0 || o.steps > 512 ? 512 : o.steps;
  return { temperature: o.temperature, topP: o.topP, seed: o.seed, prompt: o.prompt, maxTokens: Math.max(0, positions - (promptTokens(o.prompt) - 1)), echo: true };
}

const MODEL = ref('data', 'models', 'stories260K.bin');
const TOKENIZER = ref('data', 'models', 'tok512.bin');

test('stream and complete reproduce every golden case', needsRefdata, async () => {
  const cases = JSON.parse(readFileSync(ref('golden', 'runc_public.json'), 'utf8')) as RunCase[];
  const kernels = await createKernels({ kind: 'wasm', threads: 1 });
  for (const c of cases) {
    const lm = await LanguageModel.load(ref(c.model), { tokenizer: ref(c.tokenizer), kernels });
    const options = optionsOf(c.args, (p) => lm.encode(p).length);
    let streamed = '';
    for await (const piece of lm.stream(options)) streamed += piece;
    assert.equal(streamed + '\n', c.stdout, c.name);
    const done = await lm.complete(options);
    assert.equal(done.text, streamed);
    assert.ok(done.positions > 0);
  }
  await kernels.close();
});

test('load() with no path: the embedded model, on the WebAssembly kernels', async () => {
  const lm = await LanguageModel.load();
  try {
    assert.equal(lm.config.vocabSize, 512);
    assert.match(lm.transformer.backend, /^wasm/);
    const { text, completionTokens, finishReason } = await lm.complete({ prompt: 'Once upon a time', maxTokens: 20, temperature: 0 });
    assert.equal(completionTokens, 20);
    assert.equal(finishReason, 'length');
    // the prompt is not echoed by default, and is with echo: true
    assert.ok(!text.startsWith('Once upon a time'));
    const echoed = await lm.complete({ prompt: 'Once upon a time', maxTokens: 20, temperature: 0, echo: true });
    assert.equal(echoed.text, 'Once upon a time' + text);
    // the text is what `llama2 run` prints after the prompt (run's -n counts the prompt's positions)
    const P = lm.encode('Once upon a time').length;
    const run = execFileSync(process.execPath, [cliPath, 'run', '-i', 'Once upon a time', '-t', '0', '-n', String(P - 1 + 20)], { encoding: 'utf8' });
    assert.equal(run, echoed.text + '\n');
  } finally {
    await lm.close();
  }
});

test('complete() is asynchronous: the event loop runs while it generates', async () => {
  const lm = await LanguageModel.load(undefined, { kernels: 'js' });
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const started = performance.now();
  const pending = lm.complete({ prompt: 'Once upon a time', temperature: 0 }); // to the end of the context
  let settled = false;
  void pending.then(() => (settled = true));
  assert.equal(settled, false, 'complete() returns before generating');
  const done = await pending;
  const ms = performance.now() - started;
  clearInterval(timer);
  assert.ok(done.positions > 100, `positions ${done.positions}`);
  // at least one timer tick per ~20 ms of generation: the loop yields every 8 ms
  assert.ok(ticks >= Math.floor(ms / 20), `${ticks} timer ticks in ${ms.toFixed(0)} ms`);
});

test('sampling options: maxTokens, stop, temperature, topP, seed', needsRefdata, async () => {
  const lm = await LanguageModel.load(MODEL, { tokenizer: TOKENIZER, threads: 1 });
  const base = { prompt: 'Lily and Ben', maxTokens: 60 };
  const greedy = await lm.complete({ ...base, temperature: 0 });
  assert.equal(greedy.completionTokens, 60);
  // stop strings: the text ends just before the first one
  const cut = greedy.text.indexOf('.');
  assert.ok(cut > 0);
  const stopped = await lm.complete({ ...base, temperature: 0, stop: ['zzz', '.'] });
  assert.equal(stopped.text, greedy.text.slice(0, cut));
  assert.equal(stopped.finishReason, 'stop');
  assert.equal((await lm.complete({ ...base, temperature: 0, stop: '.' })).text, stopped.text);
  // a seed fixes the text; temperature and topP change it
  const a = await lm.complete({ ...base, temperature: 0.9, topP: 0.8, seed: 5 });
  assert.equal((await lm.complete({ ...base, temperature: 0.9, topP: 0.8, seed: 5 })).text, a.text);
  assert.notEqual((await lm.complete({ ...base, temperature: 0.9, topP: 0.8, seed: 6 })).text, a.text);
  assert.notEqual((await lm.complete({ ...base, temperature: 1.5, topP: 1, seed: 5 })).text, a.text);
  assert.notEqual(a.text, greedy.text);
  // the same text as llama2 run (no echo: what follows the prompt)
  const P = lm.encode(base.prompt).length;
  const run = execFileSync(process.execPath, [cliPath, 'run', MODEL, '-z', TOKENIZER, '-i', base.prompt, '-t', '0.9', '-p', '0.8', '-s', '5', '-n', String(P - 1 + 60)], { encoding: 'utf8' });
  assert.equal(run, base.prompt + a.text + '\n');
  // calls on one model run one after the other, each as if alone
  const [x, y] = await Promise.all([lm.complete({ ...base, temperature: 0.9, topP: 0.8, seed: 5 }), lm.complete({ ...base, temperature: 0 })]);
  assert.equal(x.text, a.text);
  assert.equal(y.text, greedy.text);
  // bad options are usage errors, before anything runs
  for (const bad of [{ maxTokens: -1 }, { maxTokens: 1.5 }, { temperature: -1 }, { topP: -0.1 }, { topP: 1.5 }, { stop: [''] }, { seed: 0.5 }]) {
    await assert.rejects(lm.complete({ ...base, ...bad }), UsageError, JSON.stringify(bad));
  }
  // a prompt longer than the context window is cut as the window's shifts would cut it
  const long = await lm.complete({ prompt: 'x '.repeat(600), maxTokens: 5, temperature: 0 });
  assert.ok(long.truncatedTokens > 0 && long.promptTokens > 512, `${long.promptTokens} prompt tokens, ${long.truncatedTokens} cut`);
  await lm.close();
});

test('chat(messages) streams the answer llama2 run -m chat gives', needsRefdata, async () => {
  const lm = await LanguageModel.load(MODEL, { tokenizer: TOKENIZER, threads: 1 });
  const messages = [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Tell me about a cat.' }] as const;
  let streamed = '';
  const it = lm.chat(messages, { maxTokens: 40, temperature: 0.9, topP: 0.9, seed: 77 });
  let r = await it.next();
  while (!r.done) {
    streamed += r.value;
    r = await it.next();
  }
  const summary = r.value;
  const out = execFileSync(process.execPath, [cliPath, 'run', MODEL, '-z', TOKENIZER, '-m', 'chat', '-y', 'You tell stories.', '-i', 'Tell me about a cat.',
    '-n', String(summary.promptTokens - 1 + 40), '-t', '0.9', '-p', '0.9', '-s', '77'], { encoding: 'utf8', input: '' });
  assert.ok(out.startsWith(`Assistant: ${streamed}\n`), `${JSON.stringify(out)} vs ${JSON.stringify(streamed)}`);
  assert.equal((await lm.chatComplete(messages, { maxTokens: 40, temperature: 0.9, topP: 0.9, seed: 77 })).text, streamed);
  await assert.rejects(async () => {
    for await (const _ of lm.chat([{ role: 'assistant', content: 'hi' }])) { /* nothing */ }
  }, /must end with a user message/);
  await lm.close();
});

test('a model and tokenizer load from a path, a file: URL, an http: URL or bytes alike', needsRefdata, async () => {
  const files: Record<string, Buffer> = { '/m/stories260K.bin': readFileSync(MODEL), '/m/tokenizer.bin': readFileSync(TOKENIZER) };
  const host = createServer((req, res) => {
    const body = files[req.url ?? ''];
    if (body === undefined) res.writeHead(404).end();
    else res.writeHead(200, { 'Content-Length': body.length }).end(body);
  });
  await new Promise<void>((resolve) => host.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(host.address() as AddressInfo).port}/m/`;
  try {
    const request = { prompt: 'Once upon a time', maxTokens: 30, temperature: 0.8, seed: 3 };
    const texts: string[] = [];
    for (const [model, tokenizer] of [
      [MODEL, TOKENIZER],
      [pathToFileURL(MODEL), pathToFileURL(TOKENIZER)],
      [`${base}stories260K.bin`, undefined], // tokenizer.bin beside the URL
      [new URL(`${base}stories260K.bin`), `${base}tokenizer.bin`],
      [new Uint8Array(readFileSync(MODEL)), readFileSync(TOKENIZER)],
      [readFileSync(MODEL).buffer.slice(0) as ArrayBuffer, new Uint8Array(readFileSync(TOKENIZER))],
    ] as const) {
      const lm = await LanguageModel.load(model, { ...(tokenizer !== undefined ? { tokenizer } : {}), kernels: 'js' });
      texts.push((await lm.complete(request)).text);
    }
    assert.ok(texts.every((t) => t === texts[0]), JSON.stringify(texts));
    await assert.rejects(LanguageModel.load(`${base}missing.bin`, { kernels: 'js' }), /cannot fetch the model .*missing\.bin: HTTP 404/);
    await assert.rejects(LanguageModel.load(new Uint8Array(readFileSync(MODEL)), { kernels: 'js' }), /no tokenizer found with model bytes; pass \{ tokenizer \}/);
    await assert.rejects(LanguageModel.load(new Uint8Array(100), { tokenizer: TOKENIZER, kernels: 'js' }), /model bytes/);
    await assert.rejects(LanguageModel.load(MODEL, { tokenizer: ref('data', 'tokenizers', 'tokenizer.bin'), kernels: 'js' }), /512|32000/);
    await assert.rejects(LanguageModel.load('ftp://example.com/m.bin'), /only file:, http: and https: URLs/);
  } finally {
    await new Promise((resolve) => host.close(resolve));
  }
});

test('LanguageModel.logits equals the PyTorch logits of the last token', needsRefdata, async () => {
  const meta = JSON.parse(readFileSync(ref('golden', 'logits_260K_public.json'), 'utf8')) as { tokens: number[]; shape: [number, number] };
  const bytes = readFileSync(ref('golden', 'logits_260K_public.f32'));
  const golden = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const lm = await LanguageModel.load(MODEL, { tokenizer: TOKENIZER, kernels: 'js' });
  const [T, V] = meta.shape;
  const logits = lm.logits(meta.tokens);
  for (let i = 0; i < V; i++) assert.ok(Math.abs(logits[i]! - golden[(T - 1) * V + i]!) < 1e-4);
  assert.deepEqual(lm.encode('Once upon a time').slice(0, 1), [1]);
  assert.equal(lm.decode(lm.encode('Once upon a time', { bos: false })), 'Once upon a time');
  assert.throws(() => lm.logits([]), /logits needs 1 to 512 tokens/);
});

test('generation can be aborted between tokens', async () => {
  const lm = await LanguageModel.load(DEFAULT_MODEL_PATH, { kernels: 'js' });
  const ac = new AbortController();
  const it = lm.stream({ temperature: 0, signal: ac.signal });
  let n = 0;
  let r = await it.next();
  while (!r.done) {
    if (++n === 5) ac.abort();
    r = await it.next();
  }
  assert.equal(r.value.finishReason, 'aborted');
  assert.ok(r.value.completionTokens < 40, `completion tokens ${r.value.completionTokens}`);
});
