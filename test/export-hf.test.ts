// `llama2 export --format hf|meta`: stories260K.bin exported as a Hugging Face folder holds, tensor
// for tensor, exactly the bytes of ../shared/golden/hf/hf_stories260K (q_proj/k_proj in rotate-half
// order) and reads back to the same weights; BF16/F16 are the round-to-nearest-even of the weights;
// the tokenizer and chat template travel with it; a Meta folder in 1, 2 or 4 model-parallel shards
// reads back to the same weights; llama2.c formats refuse what they cannot record.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChatTemplate } from '../src/infer/chat-format.js';
import { LanguageModel } from '../src/infer/model.js';
import { loadFloat32Weights, plainMemory } from '../src/infer/load.js';
import { FileReader } from '../src/model/file-reader.js';
import { decodeFloats, encodeFloats } from '../src/model/float-codecs.js';
import { withModelSource } from '../src/model/open.js';
import { readSafetensorsHeader } from '../src/model/safetensors.js';
import { loadTokenizer } from '../src/tokenizer/index.js';
import { cliPath, needsRefdata, ref } from './refdata.js';

const tmp = mkdtempSync(join(tmpdir(), 'llama2ts-export-hf-'));
const llama2 = (...args: string[]) => spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });
const weightsOf = (path: string) => withModelSource(path, (s) => loadFloat32Weights(s, plainMemory));
const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** name → raw bytes of every tensor of a safetensors file. */
function tensorBytes(path: string): Map<string, { dtype: string; shape: readonly number[]; data: Buffer }> {
  const f = new FileReader(path);
  try {
    return new Map([...readSafetensorsHeader(f)].map(([name, e]) => [name, { dtype: e.dtype, shape: e.shape, data: Buffer.from(f.bytes(e.offset, e.byteLength)) }]));
  } finally {
    f.close();
  }
}

test('export stories260K.bin --format hf: every tensor bit-identical to hf_stories260K, reads back to the same weights', needsRefdata, () => {
  const out = join(tmp, 'hf260K');
  const r = llama2('export', ref('data', 'models', 'stories260K.bin'), '--format', 'hf', '-o', out, '-z', ref('data', 'models', 'tok512.model'));
  assert.equal(r.status, 0, r.stderr);
  const ours = tensorBytes(join(out, 'model.safetensors'));
  const golden = tensorBytes(ref('golden', 'hf', 'hf_stories260K', 'model.safetensors'));
  assert.deepEqual([...ours.keys()].sort(), [...golden.keys()].sort());
  for (const [name, g] of golden) {
    const o = ours.get(name)!;
    assert.equal(o.dtype, g.dtype, name);
    assert.deepEqual(o.shape, g.shape, name);
    assert.ok(o.data.equals(g.data), `${name}: bytes differ`);
  }
  assert.ok(bytes(weightsOf(out).data).equals(bytes(weightsOf(ref('data', 'models', 'stories260K.bin')).data)));
  // config.json: the golden folder's fields, as transformers wrote them
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
  const goldenConfig = JSON.parse(readFileSync(ref('golden', 'hf', 'hf_stories260K', 'config.json'), 'utf8')) as Record<string, unknown>;
  for (const [k, v] of Object.entries(goldenConfig)) assert.deepEqual(config[k], v, `config.json ${k}`);
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'generation_config.json'), 'utf8')), { bos_token_id: 1, eos_token_id: 2 });
  // the tokenizer: tokenizer.model copied, tokenizer.json giving the same ids; the folder runs as the .bin does
  assert.ok(readFileSync(join(out, 'tokenizer.model')).equals(readFileSync(ref('data', 'models', 'tok512.model'))));
  const text = 'Once upon a time,  there was a   girl. 🙂';
  assert.deepEqual(loadTokenizer(join(out, 'tokenizer.json')).encode(text), loadTokenizer(ref('data', 'models', 'tok512.model')).encode(text));
  const a = llama2('run', out, '-t', '0', '-n', '64');
  const b = llama2('run', ref('data', 'models', 'stories260K.bin'), '-z', ref('data', 'models', 'tok512.bin'), '-t', '0', '-n', '64');
  assert.equal(a.stdout, b.stdout);
  // a second export into the same folder is refused (it exists and is not empty)
  const again = llama2('export', ref('data', 'models', 'stories260K.bin'), '--format', 'hf', '-o', out);
  assert.equal(again.status, 2);
  assert.match(again.stderr, /already exists and is not empty/);
});

test('--dtype bf16 and f16: the weights rounded to nearest even; the chat template travels in tokenizer_config.json', needsRefdata, async () => {
  const src = ref('golden', 'hf', 'hf_gqa_f32');
  const w = weightsOf(src);
  for (const [flag, dtype] of [['bf16', 'BF16'], ['f16', 'F16']] as const) {
    const out = join(tmp, `gqa-${flag}`);
    const r = llama2('export', src, '--format', 'hf', '--dtype', flag, '-o', out);
    assert.equal(r.status, 0, r.stderr);
    const rounded = new Float32Array(w.data.length);
    const enc = new Uint8Array(w.data.length * 2);
    encodeFloats(dtype, w.data, enc, w.data.length);
    decodeFloats(dtype, enc, rounded, w.data.length);
    assert.ok(bytes(weightsOf(out).data).equals(bytes(rounded)), flag);
    assert.equal(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).torch_dtype, flag === 'bf16' ? 'bfloat16' : 'float16');
    const lm = await LanguageModel.load(out, { kernels: 'js' });
    const original = (await LanguageModel.load(src, { kernels: 'js' })).chatFormat;
    assert.ok(lm.chatFormat instanceof ChatTemplate && original instanceof ChatTemplate, 'chat template found in the exported folder');
    assert.equal(lm.chatFormat.ref.template, original.ref.template);
  }
});

test('--format meta in 1, 2 and 4 model-parallel shards reads back to the same weights', needsRefdata, () => {
  for (const [src, dtype] of [[ref('golden', 'hf', 'meta_gqa_bf16'), 'bf16'], [ref('golden', 'hf', 'hf_gqa_f32'), 'f32']] as const) {
    const w = weightsOf(src);
    for (const shards of [1, 2, 4]) {
      const out = join(tmp, `meta-${dtype}-${shards}`);
      const r = llama2('export', src, '--format', 'meta', '--dtype', dtype, '--shards', String(shards), '-o', out);
      assert.equal(r.status, 0, r.stderr);
      const back = weightsOf(out);
      assert.ok(bytes(back.data).equals(bytes(w.data)), `${src} in ${shards} shards`);
      const info = llama2('info', out);
      assert.match(info.stdout, new RegExp(`format\\s+Meta consolidated\\.pth \\(${dtype.toUpperCase()}${shards > 1 ? `, ${shards} shards` : ''}\\)`));
    }
  }
});

test('llama2.c formats refuse a rope_theta or norm eps they cannot record; bad export flags are usage errors', needsRefdata, () => {
  const r = llama2('export', ref('golden', 'hf', 'hf_mha_f16_tied'), '--format', 'v1', '-o', join(tmp, 'x.bin'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /cannot record this model's norm epsilon 0\.00001 and rope theta 100000/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  const bad = llama2('export', ref('golden', 'hf', 'hf_gqa_f32'), '--format', 'hf', '--dtype', 'q8_0', '-o', join(tmp, 'y'));
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--dtype must be f32, bf16 or f16/);
  const file = join(tmp, 'a-file');
  writeFileSync(file, 'x');
  assert.match(llama2('export', ref('golden', 'hf', 'hf_gqa_f32'), '--format', 'hf', '-o', file).stderr, /already exists: export --format hf writes a new folder/);
  const empty = join(tmp, 'empty');
  mkdirSync(empty);
  assert.equal(llama2('export', ref('golden', 'hf', 'hf_gqa_f32'), '--format', 'hf', '-o', empty).status, 0, 'an empty folder is fine');
});
