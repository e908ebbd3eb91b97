// The WebGPU backend against the WebAssembly engine (in CI: on SwiftShader, see webgpu-env.ts):
// the logits at every position of a 64-token prompt within 1e-4 (float32) or the int8 tests'
// tolerance (Q8_0: mean KL < 1e-3, see Q8_MEAN_KL), the
// prompt fed in batches equal to token by token, and greedy text byte for byte — on stories260K
// (grouped-query attention, a shared classifier, Q8_0 groups straddling rows) and a tiny model of
// another shape (3 query heads per kv head, its own classifier, ε 1e-6, θ 500000). Both kernel
// variants run: subgroups (what GPUs get) and teams in workgroup memory.

import { openTestDevice } from './webgpu-env.js'; // first: it may re-run this file under SwiftShader
import { type WebGpuDevice, WebGpuEngine, loadWebGpuEngine } from '../src/backends/webgpu/engine.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { InferenceEngine } from '../src/infer/engine.js';
import { Transformer } from '../src/infer/forward.js';
import { generate } from '../src/infer/generate.js';
import { LanguageModel } from '../src/infer/model.js';
import { createKernels, type KernelSet } from '../src/kernels/kernel-set.js';
import { type Q8Weights, type QuantizedTensor, checkpointWeights, quantizeWeights, readCheckpoint, writeCheckpoint } from '../src/model/checkpoint.js';
import type { ModelConfig } from '../src/model/config.js';
import { type TransformerWeights, weightsView } from '../src/model/weights.js';
import { loadTokenizer } from '../src/tokenizer/index.js';
import { initWeights } from '../src/train/init.js';
import { cliPath, needsRefdata, ref } from './refdata.js';

const opened = await openTestDevice();
const skip = needsRefdata.skip || opened.skip;
const device = opened.device as WebGpuDevice;
let kernels: KernelSet;
after(async () => {
  await kernels?.close();
  await opened.device?.close();
});

/** The WebAssembly engine (one thread) over a copy of the weights in its memory, and the GPU engine over the weights. */
async function pair(weights: TransformerWeights | Q8Weights, gpu: WebGpuDevice = device): Promise<{ cpu: Transformer; gpu: WebGpuEngine }> {
  kernels ??= await createKernels({ kind: 'wasm', threads: 1 });
  const f32 = (a: Float32Array) => {
    const c = kernels.allocate(a.length);
    c.set(a);
    return c;
  };
  const i8 = (a: Int8Array) => {
    const c = kernels.allocateInt8(a.length);
    c.set(a);
    return c;
  };
  const copy = 'groupSize' in weights
    ? mapQ8(weights, (m) => ({ q: i8(m.q), s: f32(m.s) }), f32)
    : weightsView(weights.config, f32(weights.data));
  return { cpu: new Transformer(copy, kernels), gpu: WebGpuEngine.create(gpu, weights) };
}

/** Q8_0 weights with every tensor copied by `q` (matrices) and `f` (norms); a shared classifier stays shared. */
function mapQ8(w: Q8Weights, q: (m: QuantizedTensor) => QuantizedTensor, f: (a: Float32Array) => Float32Array): Q8Weights {
  const emb = q(w.tokenEmbedding);
  return {
    config: w.config, groupSize: w.groupSize, rmsAtt: f(w.rmsAtt), rmsFfn: f(w.rmsFfn), rmsFinal: f(w.rmsFinal), tokenEmbedding: emb,
    wq: w.wq.map(q), wk: w.wk.map(q), wv: w.wv.map(q), wo: w.wo.map(q), w1: w.w1.map(q), w2: w.w2.map(q), w3: w.w3.map(q),
    wcls: w.wcls === w.tokenEmbedding ? emb : q(w.wcls),
  };
}

function stories260K(): TransformerWeights {
  return checkpointWeights(readCheckpoint(ref('data', 'models', 'stories260K.bin')));
}

/** 64 prompt tokens: BOS and the start of a validation story. */
function prompt64(): number[] {
  const tok = loadTokenizer(ref('data', 'models', 'tok512.bin'), 512);
  const story = readFileSync(ref('data', 'tinystories', 'valid_first201.txt'), 'utf8').split('<|endoftext|>')[1]!.trim();
  const ids = tok.encode(story, { bos: true, eos: false });
  assert.ok(ids.length >= 64);
  return ids.slice(0, 64);
}

/**
 * Both engines fed token by token: the largest |a − b| over the logits at every position, and the
 * mean over positions of KL(softmax(a) ‖ softmax(b)) — the measure of the int8 tests (forward.test.ts).
 */
function compareEveryPosition(a: InferenceEngine, b: InferenceEngine, tokens: readonly number[]): { maxDiff: number; meanKl: number } {
  let maxDiff = 0;
  let kl = 0;
  tokens.forEach((tok, pos) => {
    const la = a.forward(tok, pos);
    const lb = b.forward(tok, pos);
    for (let i = 0; i < la.length; i++) maxDiff = Math.max(maxDiff, Math.abs(la[i]! - lb[i]!));
    const p = logSoftmax(la);
    const q = logSoftmax(lb);
    for (let i = 0; i < p.length; i++) kl += Math.exp(p[i]!) * (p[i]! - q[i]!);
  });
  return { maxDiff, meanKl: kl / tokens.length };
}

function logSoftmax(l: Float32Array): number[] {
  let max = -Infinity;
  for (const v of l) max = Math.max(max, v);
  let sum = 0;
  for (const v of l) sum += Math.exp(v - max);
  return Array.from(l, (v) => v - max - Math.log(sum));
}

/** The int8 tests' tolerance (forward.test.ts): mean KL < 1e-3. The quantized activations of the
 * two engines can round the other way where a value is within an ulp of a tie (the GPU's division
 * is not correctly rounded, its sums run in another order): each such flip moves some logits by
 * up to ~0.1 on stories260K. */
const Q8_MEAN_KL = 1e-3;

/** Largest |a − b| of the last position's logits, the prompt fed to `b` with advance() (batched on the GPU). */
function maxDiffBatched(a: InferenceEngine, b: InferenceEngine, tokens: readonly number[]): number {
  const last = tokens.length - 1;
  for (let pos = 0; pos < last; pos++) {
    a.advance(tokens[pos]!, pos);
    b.advance(tokens[pos]!, pos);
  }
  const la = a.forward(tokens[last]!, last);
  const lb = b.forward(tokens[last]!, last);
  let max = 0;
  for (let i = 0; i < la.length; i++) max = Math.max(max, Math.abs(la[i]! - lb[i]!));
  return max;
}

function greedy(engine: InferenceEngine, prompt: string, steps: number, tokenizer = loadTokenizer(ref('data', 'models', 'tok512.bin'), 512)): string {
  let text = '';
  for (const piece of generate(engine, tokenizer, { prompt, steps, temperature: 0 })) text += piece;
  return text;
}

test('webgpu float32: stories260K logits within 1e-4 of WebAssembly at every position of a 64-token prompt, batched prompt too', { skip }, async (t) => {
  const weights = stories260K();
  const tokens = prompt64();
  const { cpu, gpu } = await pair(weights);
  const every = compareEveryPosition(cpu, gpu, tokens).maxDiff;
  t.diagnostic(`${gpu.backend}: max |Δlogit| ${every.toExponential(2)} over 64 positions`);
  assert.ok(every < 1e-4, `max |logit diff| ${every}`);
  const batched = maxDiffBatched(cpu.session(), gpu.session(), tokens);
  assert.ok(batched < 1e-4, `batched prompt: max |logit diff| ${batched}`);
});

test('webgpu float32: stories260K greedy, 200 steps, is llama2.c\'s text; with a prompt, WebAssembly\'s', { skip }, async () => {
  const weights = stories260K();
  const { cpu, gpu } = await pair(weights);
  const golden = readFileSync(ref('golden', 'stories260K_expected_greedy_n200.txt'), 'utf8');
  assert.equal(greedy(gpu, '', 200), golden);
  assert.equal(greedy(gpu.session(), 'Once upon a time, Lily and Ben', 60), greedy(cpu, 'Once upon a time, Lily and Ben', 60));
});

test('webgpu Q8_0: stories260K logits within the int8 tolerance of WebAssembly int8 at every position, greedy text identical', { skip }, async (t) => {
  const q8 = quantizeWeights(stories260K(), 64);
  const { cpu, gpu } = await pair(q8);
  const { maxDiff, meanKl } = compareEveryPosition(cpu, gpu, prompt64());
  t.diagnostic(`Q8_0: max |Δlogit| ${maxDiff.toExponential(2)}, mean KL ${meanKl.toExponential(2)} over 64 positions`);
  assert.ok(meanKl < Q8_MEAN_KL, `mean KL ${meanKl}`);
  assert.equal(greedy(gpu.session(), 'Once upon a time', 60), greedy(cpu.session(), 'Once upon a time', 60));
});

test('webgpu float32: a tiny model of another shape (kv heads 2 of 6, own classifier, ε 1e-6, θ 500000) within 1e-4, greedy identical', { skip }, async (t) => {
  const config: ModelConfig = {
    dim: 48, hiddenDim: 128, nLayers: 2, nHeads: 6, nKvHeads: 2, vocabSize: 512, seqLen: 128, sharedClassifier: false,
    normEps: 1e-6, ropeTheta: 500000,
  };
  const weights = initWeights(config, 7);
  for (let i = 0; i < weights.data.length; i++) weights.data[i]! *= 20; // peaked distributions: no near-ties for greedy
  weights.rmsAtt.fill(1);
  weights.rmsFfn.fill(1);
  weights.rmsFinal.fill(1);
  const { cpu, gpu } = await pair(weights);
  const every = compareEveryPosition(cpu, gpu, prompt64()).maxDiff;
  t.diagnostic(`tiny model: max |Δlogit| ${every.toExponential(2)}`);
  assert.ok(every < 1e-4, `max |logit diff| ${every}`);
  assert.equal(greedy(gpu.session(), 'Once upon a time', 60), greedy(cpu.session(), 'Once upon a time', 60));
});

test('webgpu: the other kernel variants (subgroups; teams of 4 in workgroup memory) agree too, float32 and Q8_0', { skip }, async () => {
  const weights = stories260K();
  const q8 = quantizeWeights(weights, 64);
  const tokens = prompt64().slice(0, 16);
  for (const tuning of [{ subgroups: true, teamSize: 4 }, { subgroups: false, teamSize: 4 }]) {
    const other = await openTestDevice({ tuning });
    try {
      for (const w of [weights, q8] as const) {
        const { cpu, gpu } = await pair(w, other.device!);
        const what = `${JSON.stringify(tuning)} ${'groupSize' in w ? 'Q8_0' : 'float32'}`;
        const { maxDiff, meanKl } = compareEveryPosition(cpu, gpu, tokens);
        if ('groupSize' in w) assert.ok(meanKl < Q8_MEAN_KL, `${what}: mean KL ${meanKl}`);
        else assert.ok(maxDiff < 1e-4, `${what}: max |logit diff| ${maxDiff}`);
        const batched = maxDiffBatched(cpu.session(), gpu.session(), tokens);
        assert.ok(batched < ('groupSize' in w ? 0.5 : 1e-4), `${what}, batched prompt: max |logit diff| ${batched}`);
      }
    } finally {
      await other.device?.close();
    }
  }
});

test('webgpu prefill: every prompt token\'s logits (batched, read back per batch) as WebAssembly computes them token by token, float32 and Q8_0', { skip }, async (t) => {
  const weights = stories260K();
  const ids = prompt64().slice(0, 55); // 5 fed first, then 50: a whole batch of 32 and a part of one
  for (const w of [weights, quantizeWeights(weights, 64)] as const) {
    const { cpu, gpu } = await pair(w);
    const what = 'groupSize' in w ? 'Q8_0' : 'float32';
    gpu.prefill(ids.slice(0, 5), 0);
    ids.slice(0, 5).forEach((id, pos) => cpu.advance(id, pos));
    const seen: number[] = [];
    let maxDiff = 0;
    let kl = 0;
    gpu.prefill(ids.slice(5), 5, (i, logits) => {
      seen.push(i);
      const a = cpu.forward(ids[5 + i]!, 5 + i);
      for (let k = 0; k < a.length; k++) maxDiff = Math.max(maxDiff, Math.abs(a[k]! - logits[k]!));
      const p = logSoftmax(a);
      const q = logSoftmax(logits);
      for (let k = 0; k < p.length; k++) kl += Math.exp(p[k]!) * (p[k]! - q[k]!);
    });
    assert.deepEqual(seen, Array.from({ length: 50 }, (_, i) => i));
    t.diagnostic(`prefill with logits, ${what}: max |Δlogit| ${maxDiff.toExponential(2)}, mean KL ${(kl / 50).toExponential(2)}`);
    if ('groupSize' in w) assert.ok(kl / 50 < Q8_MEAN_KL, `${what}: mean KL ${kl / 50}`);
    else assert.ok(maxDiff < 1e-4, `${what}: max |logit diff| ${maxDiff}`);
    // the cache holds all 55: the next token's logits agree too
    const a = cpu.forward(ids[0]!, 55);
    const b = gpu.forward(ids[0]!, 55);
    const next = Math.max(...Array.from(a, (v, k) => Math.abs(v - b[k]!)));
    assert.ok(next < ('groupSize' in w ? 0.5 : 1e-4), `${what}: the next token's max |logit diff| ${next}`);
    gpu.free();
  }
});

test('webgpu: the context shift moves and re-rotates the cache as the WebAssembly engine does', { skip }, async () => {
  const { cpu, gpu } = await pair(stories260K());
  const ids = prompt64();
  for (let pos = 0; pos < 64; pos++) {
    cpu.advance(ids[pos]!, pos);
    gpu.advance(ids[pos]!, pos);
  }
  cpu.shift(5, 29, 64);
  gpu.shift(5, 29, 64);
  let max = 0;
  for (let j = 0; j < 4; j++) {
    const a = cpu.forward(ids[j + 10]!, 35 + j);
    const b = gpu.forward(ids[j + 10]!, 35 + j);
    for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  }
  assert.ok(max < 1e-4, `max |logit diff| after the shift ${max}`);
  assert.throws(() => gpu.shift(5, 60, 64), /cannot shift/);
});

test('webgpu: positions and tokens out of range are refused', { skip }, async () => {
  const { gpu } = await pair(stories260K());
  assert.throws(() => gpu.forward(1, 512), /outside the context window/);
  assert.throws(() => gpu.forward(512, 0), /outside the vocabulary/);
});

test('webgpu: a model loads as on the CPU — stored Q8_0 stays int8 unless dequantized, --quantize q8, the context length', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'llama2ts-webgpu-'));
  try {
    const bin = ref('data', 'models', 'stories260K.bin');
    const v2 = join(dir, 'stories260K.v2.bin');
    writeCheckpoint(v2, stories260K(), 'v2', 32);
    const opened: WebGpuEngine[] = [];
    const load = (path: string, options: Parameters<typeof loadWebGpuEngine>[2] = {}) => {
      const e = loadWebGpuEngine(device, path, options);
      opened.push(e);
      return e;
    };
    assert.equal(load(v2).groupSize, 32);
    assert.equal(load(v2, { dequantize: true }).groupSize, 0);
    assert.equal(load(bin).groupSize, 0);
    assert.equal(load(bin, { quantize: 'q8' }).groupSize, 64);
    // a KV cache of 16 positions: the same logits up to there, position 16 refused
    const full = load(bin);
    const short = load(bin, { contextLength: 16 });
    assert.equal(full.config.seqLen, 512);
    assert.equal(short.config.seqLen, 16);
    const ids = prompt64().slice(0, 16);
    const last = ids.length - 1;
    ids.slice(0, last).forEach((id, pos) => { full.advance(id, pos); short.advance(id, pos); });
    const a = Array.from(full.forward(ids[last]!, last));
    const b = Array.from(short.forward(ids[last]!, last));
    assert.ok(a.every((v, i) => Math.abs(v - b[i]!) < 1e-6), 'logits of the 16-position cache differ');
    assert.throws(() => short.forward(1, 16), /outside the context window \(16\)/);
    for (const e of opened) e.free();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('library: LanguageModel.load(model, { kernels: \'webgpu\' }) completes as the WebAssembly engine does', { skip }, async () => {
  const model = ref('data', 'models', 'stories260K.bin');
  const tokenizer = ref('data', 'models', 'tok512.bin');
  const gpu = await LanguageModel.load(model, { tokenizer, kernels: 'webgpu' });
  const cpu = await LanguageModel.load(model, { tokenizer, kernels: 'wasm', threads: 1 });
  try {
    assert.match(gpu.transformer.backend, /^webgpu \(/);
    const request = { prompt: 'Once upon a time', maxTokens: 40, temperature: 0 };
    assert.equal((await gpu.complete(request)).text, (await cpu.complete(request)).text);
  } finally {
    await gpu.close();
    await cpu.close();
  }
});

test('llama2 run --backend webgpu prints what --backend wasm prints; no adapter is a one-line error', { skip }, () => {
  const run = (backend: string, env: NodeJS.ProcessEnv = process.env) => spawnSync(process.execPath, [
    cliPath, 'run', ref('data', 'models', 'stories260K.bin'), '-z', ref('data', 'models', 'tok512.bin'), '-t', '0.8', '-s', '42', '-n', '40', '-i', 'Lily and Ben', '--backend', backend,
  ], { encoding: 'utf8', env });
  const gpu = run('webgpu');
  assert.equal(gpu.status, 0, gpu.stderr);
  assert.equal(gpu.stdout, run('wasm').stdout);
  const { VK_ICD_FILENAMES: _icd, VK_DRIVER_FILES: _drivers, LD_LIBRARY_PATH: _ld, ...bare } = process.env;
  const none = run('webgpu', { ...bare, VK_ICD_FILENAMES: '/nonexistent.json' });
  assert.equal(none.status, 1);
  assert.match(none.stderr, /^llama2: --backend webgpu: no WebGPU adapter found[^\n]*\n$/);
  const bad = run('cuda');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--backend must be wasm, webgpu or js/);
});
