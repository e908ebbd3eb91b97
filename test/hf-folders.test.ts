// Hugging Face and Meta checkpoint folders against PyTorch (../shared/golden/hf): the logits of
// every prompt position within 1e-4 and the 40-token greedy continuation, through the library and
// through `llama2 run DIR -t 0`; hf_stories260K prints exactly what stories260K.bin prints and
// holds exactly its weights (the rotate-half rows of q_proj/k_proj undone).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { LanguageModel, StreamingDecoder } from '../src/index.js';
import { loadFloat32Weights, loadQ8Weights, loadTransformer, plainMemory } from '../src/infer/load.js';
import { createKernels } from '../src/kernels/kernel-set.js';
import { withModelSource } from '../src/model/open.js';
import { cliPath, needsRefdata, ref } from './refdata.js';

const FOLDERS = ['hf_gqa_f32', 'hf_gqa_bf16_sharded', 'hf_mha_f16_tied', 'hf_stories260K', 'meta_gqa_bf16'];
const FORMATS: Record<string, RegExp> = {
  hf_gqa_f32: /^Hugging Face safetensors \(F32\)$/,
  hf_gqa_bf16_sharded: /^Hugging Face safetensors \(BF16, 5 shards\)$/,
  hf_mha_f16_tied: /^Hugging Face safetensors \(F16\)$/,
  hf_stories260K: /^Hugging Face safetensors \(F32\)$/,
  meta_gqa_bf16: /^Meta consolidated\.pth \(BF16\)$/,
};

interface Golden {
  prompt_ids: number[];
  prompt_text: string;
  logits_shape: [number, number];
  greedy_ids: number[];
}

function golden(folder: string): { g: Golden; logits: Float32Array } {
  const dir = ref('golden', 'hf', folder);
  const g = JSON.parse(readFileSync(`${dir}/golden.json`, 'utf8')) as Golden;
  const b = readFileSync(`${dir}/golden_logits.f32`);
  return { g, logits: new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4) };
}

function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}

test('every folder through the library: logits of every prompt position within 1e-4, greedy ids equal', needsRefdata, async () => {
  for (const folder of FOLDERS) {
    const { g, logits } = golden(folder);
    const lm = await LanguageModel.load(ref('golden', 'hf', folder), { kernels: 'js' }); // tokenizer.model found in the folder
    assert.deepEqual(lm.encode(g.prompt_text), g.prompt_ids, `${folder}: prompt encoding`);
    const [T, V] = g.logits_shape;
    assert.equal(T, g.prompt_ids.length);
    let maxDiff = 0;
    const ids = [...g.prompt_ids];
    let out: Float32Array = new Float32Array(0);
    for (let pos = 0; pos < ids.length && ids.length < g.greedy_ids.length + 1; pos++) {
      out = lm.transformer.forward(ids[pos]!, pos);
      if (pos < T) for (let i = 0; i < V; i++) maxDiff = Math.max(maxDiff, Math.abs(out[i]! - logits[pos * V + i]!));
      if (pos === ids.length - 1 && ids.length < g.greedy_ids.length) ids.push(argmax(out));
    }
    assert.ok(maxDiff < 1e-4, `${folder}: max |logit diff| ${maxDiff}`);
    assert.deepEqual(ids, g.greedy_ids, `${folder}: greedy ids`);
  }
});

test('the WebAssembly kernels (2 threads) and Q8_0 load every folder; wasm logits within 1e-4', needsRefdata, async () => {
  const kernels = await createKernels({ kind: 'wasm', threads: 2 });
  try {
    for (const folder of FOLDERS) {
      const { g, logits } = golden(folder);
      const V = g.logits_shape[1];
      const t = loadTransformer(ref('golden', 'hf', folder), kernels);
      let maxDiff = 0;
      g.prompt_ids.forEach((tok, pos) => {
        const l = t.forward(tok, pos);
        for (let i = 0; i < V; i++) maxDiff = Math.max(maxDiff, Math.abs(l[i]! - logits[pos * V + i]!));
      });
      assert.ok(maxDiff < 1e-4, `${folder} wasm: ${maxDiff}`);
      const q = loadTransformer(ref('golden', 'hf', folder), kernels, { quantize: 'q8' });
      assert.ok(q.groupSize > 0);
      const l = q.forward(g.prompt_ids[0]!, 0);
      assert.ok(l.every((x) => Number.isFinite(x)));
    }
  } finally {
    await kernels.close();
  }
});

/** What `llama2 run` prints for these ids (prompt echoed, as run.c prints it; stops at BOS). */
function expectedStdout(lm: LanguageModel, ids: readonly number[]): string {
  const d = new StreamingDecoder(lm.tokenizer, { cCompatible: true });
  let text = '';
  for (let i = 1; i < ids.length && ids[i] !== lm.tokenizer.bosId; i++) text += d.push(ids[i - 1]!, ids[i]!);
  return text + d.flush() + '\n';
}

test('llama2 run DIR -t 0: the greedy continuation for every folder', needsRefdata, async () => {
  for (const folder of FOLDERS) {
    const { g } = golden(folder);
    const dir = ref('golden', 'hf', folder);
    const r = spawnSync(process.execPath, [cliPath, 'run', dir, '-t', '0', '-n', String(g.greedy_ids.length - 1), '-i', g.prompt_text], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${folder}: ${r.stderr}`);
    const lm = await LanguageModel.load(dir, { kernels: 'js' });
    assert.equal(r.stdout, expectedStdout(lm, g.greedy_ids), folder);
    const info = spawnSync(process.execPath, [cliPath, 'info', dir], { encoding: 'utf8' });
    assert.equal(info.status, 0, info.stderr);
    assert.match(info.stdout.split('\n').find((l) => l.startsWith('format'))!.replace(/^format\s+/, ''), FORMATS[folder]!);
  }
});

test('hf_stories260K: -t 0 prints exactly what stories260K.bin prints; its weights are stories260K.bin\'s bit for bit', needsRefdata, () => {
  const run = (model: string, extra: string[]) => spawnSync(process.execPath, [cliPath, 'run', model, '-t', '0', ...extra], { encoding: 'utf8' });
  for (const extra of [[], ['-i', 'Lily and Ben'], ['--quantize', 'q8']]) {
    const a = run(ref('golden', 'hf', 'hf_stories260K'), extra);
    const b = run(ref('data', 'models', 'stories260K.bin'), [...extra, '-z', ref('data', 'models', 'tok512.bin')]);
    assert.equal(a.status, 0, a.stderr);
    assert.ok(a.stdout.length > 100);
    assert.equal(a.stdout, b.stdout, `with ${extra.join(' ')}`);
  }
  const hf = withModelSource(ref('golden', 'hf', 'hf_stories260K'), (s) => loadFloat32Weights(s, plainMemory, 1000));
  const bin = withModelSource(ref('data', 'models', 'stories260K.bin'), (s) => loadFloat32Weights(s, plainMemory));
  assert.ok(Buffer.from(hf.data.buffer).equals(Buffer.from(bin.data.buffer)), 'float32 weights');
  const hq = withModelSource(ref('golden', 'hf', 'hf_stories260K'), (s) => loadQ8Weights(s, plainMemory, 64, 777));
  const bq = withModelSource(ref('data', 'models', 'stories260K.bin'), (s) => loadQ8Weights(s, plainMemory, 64));
  for (const name of ['wq', 'wk', 'w2'] as const) {
    hq[name].forEach((t, l) => assert.ok(Buffer.from(t.q.buffer).equals(Buffer.from(bq[name][l]!.q.buffer)), `${name} ${l} q8`));
  }
});
