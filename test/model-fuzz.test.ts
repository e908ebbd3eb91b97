// Bad model folders: truncated or corrupt safetensors headers, pickles with foreign globals or
// opcodes, config.json / params.json with missing or unsupported fields — each a one-line error
// naming the file (and the field or tensor), nothing executed; then 200 randomly mutated files of
// each format (safetensors, .pth, config.json) load or fail with one line, never anything else.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LlamaError } from '../src/errors.js';
import { loadTransformer } from '../src/infer/load.js';
import { openModelSource, withModelSource } from '../src/model/open.js';
import { unpickle } from '../src/model/pickle.js';
import { cliPath } from './refdata.js';

const tmp = mkdtempSync(join(tmpdir(), 'llama2ts-model-fuzz-'));
const llama2 = (...args: string[]) => spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });

// a tiny model (dim 8, 2 layers, 4 heads / 2 kv heads, vocab 16), as a .bin, a Hugging Face folder and a 2-shard Meta folder
const BIN = join(tmp, 'tiny.bin');
const HF = join(tmp, 'tiny-hf');
const META = join(tmp, 'tiny-meta');
let made = false;
function makeTiny(): void {
  if (made) return;
  made = true;
  for (const args of [
    ['init', '-o', BIN, '--dim', '8', '--layers', '2', '--heads', '4', '--kv-heads', '2', '--hidden-dim', '12', '--vocab', '16', '--seq-len', '8', '--unshared'],
    ['export', BIN, '--format', 'hf', '--dtype', 'bf16', '-o', HF],
    ['export', BIN, '--format', 'meta', '--dtype', 'f16', '--shards', '2', '-o', META],
  ]) {
    const r = llama2(...args);
    assert.equal(r.status, 0, r.stderr);
  }
}

/** A copy of `folder` with `file` replaced by `bytes` (or JSON). */
function variant(folder: string, file: string, content: Uint8Array | object, name = `v-${Math.random().toString(36).slice(2)}`): string {
  const dir = join(tmp, name);
  cpSync(folder, dir, { recursive: true });
  writeFileSync(join(dir, file), content instanceof Uint8Array ? content : JSON.stringify(content));
  return dir;
}

/** Loading `dir` fails with one line that starts with a path inside it and matches `pattern`. */
function expectRefused(dir: string, pattern: RegExp): void {
  assert.throws(() => loadTransformer(dir), (e: unknown) => {
    assert.ok(e instanceof LlamaError, `expected a LlamaError, got ${(e as Error).stack}`);
    assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
    assert.ok(e.message.startsWith(dir), `names the file: ${e.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

/** The safetensors file with its JSON header replaced (length prefix recomputed, data kept). */
function withHeader(bytes: Uint8Array, edit: (h: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>) => void): Uint8Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset);
  const n = Number(dv.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  edit(header);
  const json = new TextEncoder().encode(JSON.stringify(header).padEnd(n, ' '));
  assert.ok(json.length <= n, 'the edited header fits the old one');
  const out = new Uint8Array(bytes);
  out.set(json, 8);
  return out;
}

test('corrupt safetensors headers: one line naming the file and the tensor', () => {
  makeTiny();
  const st = new Uint8Array(readFileSync(join(HF, 'model.safetensors')));
  const q = 'model.layers.0.self_attn.q_proj.weight';
  const k = 'model.layers.0.self_attn.k_proj.weight';
  expectRefused(variant(HF, 'model.safetensors', st.subarray(0, 5)), /too short for a safetensors file/);
  expectRefused(variant(HF, 'model.safetensors', st.subarray(0, 200)), /header length \d+ does not fit the file/);
  expectRefused(variant(HF, 'model.safetensors', st.subarray(0, st.length - 10)), /lies outside the \d+ bytes of data/);
  expectRefused(variant(HF, 'model.safetensors', withHeader(st, (h) => { h[q]!.data_offsets = [0, 10_000_000]; })), /outside the \d+ bytes of data/);
  expectRefused(variant(HF, 'model.safetensors', withHeader(st, (h) => { const size = h[k]!.data_offsets[1]! - h[k]!.data_offsets[0]!; h[k]!.data_offsets = [h[q]!.data_offsets[0]!, h[q]!.data_offsets[0]! + size]; })), /overlap/);
  expectRefused(variant(HF, 'model.safetensors', withHeader(st, (h) => { h[q]!.dtype = 'F32'; })), /needs \d+ bytes, data_offsets give \d+/);
  expectRefused(variant(HF, 'model.safetensors', withHeader(st, (h) => { h[q]!.dtype = 'Q4'; })), /unknown dtype "Q4"/);
  expectRefused(variant(HF, 'model.safetensors', withHeader(st, (h) => { h[q]!.dtype = 'I16'; })), /q_proj.weight: dtype I16 is not supported/);
  expectRefused(variant(HF, 'model.safetensors', withHeader(st, (h) => { h[q]!.shape = [4, 16]; })), /q_proj.weight has shape \[4, 16\], config.json implies \[8, 8\]/);
  expectRefused(variant(HF, 'model.safetensors', withHeader(st, (h) => { h[`${q.slice(0, -7)}.bias`] = h[q]!; delete h[q]; })), /q_proj.bias: biases are not supported/);
  expectRefused(variant(HF, 'model.safetensors', withHeader(st, (h) => { h['model.layers.0.mlp.extra.weight'] = h[q]!; delete h[q]; })), /mlp.extra.weight is not part of a LlamaForCausalLM model/);
  expectRefused(variant(HF, 'model.safetensors', withHeader(st, (h) => { delete h[q]; })), /missing tensor model\.layers\.0\.self_attn\.q_proj\.weight/);
  const notJson = new Uint8Array(st);
  notJson[8] = 0x7b + 1;
  expectRefused(variant(HF, 'model.safetensors', notJson), /not valid UTF-8 JSON/);
});

test('config.json and params.json: missing or unsupported fields are named', () => {
  makeTiny();
  const config = JSON.parse(readFileSync(join(HF, 'config.json'), 'utf8')) as Record<string, unknown>;
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ ...config, hidden_size: undefined }, /field "hidden_size": missing/],
    [{ ...config, num_hidden_layers: 2.5 }, /field "num_hidden_layers": 2\.5 is not a positive integer/],
    [{ ...config, rope_scaling: { type: 'linear', factor: 2 } }, /field "rope_scaling": .*RoPE scaling is not supported/],
    [{ ...config, attention_bias: true }, /field "attention_bias": true: biases are not supported/],
    [{ ...config, architectures: ['MistralForCausalLM'] }, /field "architectures": \["MistralForCausalLM"\] is not LlamaForCausalLM/],
    [{ ...config, model_type: 'gpt2' }, /field "model_type": "gpt2" is not "llama"/],
    [{ ...config, hidden_act: 'gelu' }, /field "hidden_act": "gelu" is not "silu"/],
    [{ ...config, num_key_value_heads: 3 }, /n_heads 4 is not divisible by n_kv_heads 3/],
    [{ ...config, tie_word_embeddings: 'yes' }, /field "tie_word_embeddings"/],
  ];
  for (const [c, pattern] of cases) expectRefused(variant(HF, 'config.json', JSON.parse(JSON.stringify(c)) as object), pattern);
  expectRefused(variant(HF, 'config.json', new TextEncoder().encode('{"hidden_size": 8,')), /config\.json: not valid JSON/);
  const params = JSON.parse(readFileSync(join(META, 'params.json'), 'utf8')) as Record<string, unknown>;
  expectRefused(variant(META, 'params.json', { ...params, dim: undefined }), /params\.json: field "dim": missing/);
  expectRefused(variant(META, 'params.json', { ...params, vocab_size: 17 }), /field "vocab_size": 17, but tok_embeddings has 16 rows/);
});

test('pickles: a foreign global or opcode is refused by name, and nothing runs', () => {
  const marker = join(tmp, 'pwned');
  // pickle.dumps of os.system('touch …'), protocol 2: GLOBAL 'posix system', the argument, REDUCE
  const cmd = `touch ${marker}`;
  const evil = new Uint8Array([0x80, 2, 0x63, ...new TextEncoder().encode('posix\nsystem\n'), 0x71, 0, 0x58, cmd.length, 0, 0, 0, ...new TextEncoder().encode(cmd), 0x85, 0x52, 0x2e]);
  assert.throws(() => unpickle(evil, 'evil.pkl'), /^FormatError: evil\.pkl: pickle refused: global posix system is not one torch's tensor rebuild uses$/m);
  assert.ok(!existsSync(marker));
  for (const [bytes, pattern] of [
    [[0x80, 2, 0x63, ...new TextEncoder().encode('builtins\neval\n'), 0x2e], /global builtins eval/],
    [[0x80, 2, 0x28, 0x69, ...new TextEncoder().encode('os\nsystem\n'), 0x2e], /opcode 0x69 at byte 3/], // INST
    [[0x80, 2, 0x7d, 0x28, 0x58, 1, 0, 0, 0, 0x61, 0x4b, 1, 0x75], /truncated at byte 13/],
    [[0x80, 2, 0x63, ...new TextEncoder().encode('collections\nOrderedDict\n'), 0x4b, 1, 0x85, 0x52, 0x2e], /OrderedDict called with arguments/],
    [[0x80, 2, 0x68, 9, 0x2e], /memo 9 is empty/],
  ] as const) {
    assert.throws(() => unpickle(Uint8Array.from(bytes), 'x.pkl'), (e: unknown) => e instanceof LlamaError && pattern.test(e.message) && !e.message.includes('\n'));
  }
});

/** 200 mutations of `file` in `folder`: each loads (and runs a token) or fails with one line. */
function fuzz(folder: string, file: string, seed: number): { loaded: number; refused: number } {
  const good = readFileSync(join(folder, file));
  let s = seed;
  const rand = (n: number) => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 8) % n;
  const dir = join(tmp, `fuzz-${file}-${seed}`);
  cpSync(folder, dir, { recursive: true });
  let loaded = 0, refused = 0;
  for (let trial = 0; trial < 200; trial++) {
    const b = Buffer.from(good);
    const kind = trial % 4;
    if (kind === 0) {
      b.subarray(0, rand(b.length)).copy(b); // truncated (below)
    }
    const edits = 1 + rand(6);
    // most edits in the first KiB (headers, the pickle) where they change structure, some anywhere
    for (let e = 0; e < edits; e++) b[kind === 3 ? rand(b.length) : rand(Math.min(b.length, 1024))] = rand(256);
    const bytes = kind === 0 ? b.subarray(0, rand(b.length)) : b;
    writeFileSync(join(dir, file), bytes);
    try {
      const t = loadTransformer(dir);
      t.forward(1, 0);
      loaded++;
    } catch (e) {
      assert.ok(e instanceof LlamaError, `${file} trial ${trial}: ${(e as Error).stack}`);
      assert.ok(!e.message.includes('\n'), `${file} trial ${trial}: one line: ${e.message}`);
      refused++;
    }
  }
  return { loaded, refused };
}

test('200 mutated files of each format (safetensors, .pth, config.json): a model or one line, never anything else', (t) => {
  makeTiny();
  const results = [
    fuzz(HF, 'model.safetensors', 1),
    fuzz(META, 'consolidated.01.pth', 2),
    fuzz(HF, 'config.json', 3),
  ];
  t.diagnostic(`loaded/refused: safetensors ${results[0]!.loaded}/${results[0]!.refused}, .pth ${results[1]!.loaded}/${results[1]!.refused}, config.json ${results[2]!.loaded}/${results[2]!.refused}`);
  for (const r of results) assert.ok(r.refused > 50, `mutations are caught: ${JSON.stringify(r)}`);
  // the unmutated folders load
  for (const dir of [HF, META]) withModelSource(dir, (src) => assert.equal(src.config.vocabSize, 16));
  mkdirSync(join(tmp, 'not-a-model'));
  assert.throws(() => openModelSource(join(tmp, 'not-a-model')), /not a model folder/);
});
