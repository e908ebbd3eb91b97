// GGUF models wherever a model is taken, and `llama2 export --format gguf`: the independent
// stories260K.f32.gguf runs as stories260K.bin does; what export writes reads back to the same
// weights (f32 bit for bit, f16 rounded, q8_0 as ggml quantizes); ε, θ, an untied classifier and GQA
// survive the trip; a hand-made model of every quantized block type reads as the reference decoders
// say and runs as int8; models llama2ts cannot run are refused with one line.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadFloat32Weights, loadQ8Weights, loadTransformer, plainMemory } from '../src/infer/load.js';
import { jsKernelSet } from '../src/kernels/kernel-set.js';
import { quantize } from '../src/kernels/q8-js.js';
import { checkpointWeights, readCheckpoint } from '../src/model/checkpoint.js';
import type { ModelConfig } from '../src/model/config.js';
import { GgmlType, type GgufValue, ValueType, readGgufHeader, writeGguf } from '../src/model/gguf.js';
import { encodeQ8_0, floatToHalf, halfToFloat } from '../src/model/gguf-blocks.js';
import { ggufTensorName, llamaMetadata, llamaTensorList, writeLlamaGguf } from '../src/model/gguf-llama.js';
import { GgufSource } from '../src/model/gguf-source.js';
import { openModelSource, withModelSource } from '../src/model/open.js';
import { type ModelSource, tensorShape } from '../src/model/source.js';
import { type TensorName, type TransformerWeights, allocateWeights, parameterTable } from '../src/model/weights.js';
import { loadTokenizer } from '../src/tokenizer/index.js';
import { fixture, floatFixture, refDecode, rng } from './gguf-fixtures.js';
import { cliPath, needsRefdata, ref } from './refdata.js';

const tmp = mkdtempSync(join(tmpdir(), 'llama2ts-ggufmodel-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const golden = (): string => ref('golden', 'gguf', 'stories260K.f32.gguf');
const bytes = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function llama2(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function assertOneLineError(r: ReturnType<typeof llama2>, pattern: RegExp): void {
  assert.notEqual(r.status, 0);
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, pattern);
}

/** Weights in memory as a ModelSource (what export reads from). */
class WeightsSource implements ModelSource {
  readonly path = '<memory>';
  readonly format = 'in memory';
  readonly config: ModelConfig;
  constructor(readonly weights: TransformerWeights) {
    this.config = weights.config;
  }
  storage(name: TensorName): string | undefined {
    return name === 'wcls' && this.config.sharedClassifier ? undefined : 'F32';
  }
  read(name: TensorName, layer: number, row: number, rows: number, dst: Float32Array): void {
    const { rows: total, cols } = tensorShape(this.config, name);
    const start = (layer * total + row) * cols;
    dst.set(this.weights[name].subarray(start, start + rows * cols));
  }
  close(): void {}
}

test('the independent stories260K.f32.gguf loads as stories260K.bin, bit for bit, and runs with the tokenizer it carries', needsRefdata, () => {
  const reference = checkpointWeights(readCheckpoint(ref('data', 'models', 'stories260K.bin')));
  withModelSource(golden(), (s) => {
    assert.equal(s.format, 'GGUF v3 (F32)');
    assert.deepEqual(s.config, reference.config);
    assert.equal(s.tokenizer?.path, golden());
    assert.ok(bytes(loadFloat32Weights(s, plainMemory).data).equals(bytes(reference.data)));
  });
  const r = llama2(['run', golden(), '-t', '0', '-n', '200']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, readFileSync(ref('golden', 'stories260K_expected_greedy_n200.txt'), 'utf8') + '\n');
  // and exported to llama2.c's v1, it is the reference v1 file byte for byte
  const v1 = join(tmp, 'from-gguf.v1.bin');
  assert.equal(llama2(['export', golden(), '--format', 'v1', '-o', v1]).status, 0);
  assert.ok(readFileSync(v1).equals(readFileSync(ref('data', 'models', 'stories260K.v1.bin'))));
});

test('export --format gguf: f32 reads back bit for bit, f16 rounded to halves, q8_0 as ggml quantizes', needsRefdata, () => {
  const bin = ref('data', 'models', 'stories260K.bin');
  const reference = checkpointWeights(readCheckpoint(bin));
  const out = (d: string) => join(tmp, `s260.${d}.gguf`);
  for (const dtype of ['f32', 'f16', 'q8_0']) {
    const r = llama2(['export', bin, '-z', ref('data', 'models', 'tok512.bin'), '--format', 'gguf', '--dtype', dtype, '-o', out(dtype)]);
    assert.equal(r.status, 0, r.stderr);
  }
  const h = readGgufHeader(out('q8_0'));
  const meta = (k: string) => (h.metadata.get(k) as { value: unknown } | undefined)?.value;
  assert.equal(meta('general.architecture'), 'llama');
  assert.equal(meta('general.file_type'), 7);
  assert.equal(meta('llama.attention.head_count_kv'), 4);
  assert.equal(meta('llama.rope.dimension_count'), 8);
  assert.equal(meta('llama.attention.layer_norm_rms_epsilon'), Math.fround(1e-5));
  assert.equal(meta('tokenizer.ggml.model'), 'llama');
  assert.equal(h.tensorByName.get('blk.0.ffn_down.weight')!.type.name, 'F16', 'rows of 172: not whole Q8_0 blocks');
  assert.equal(h.tensorByName.get('blk.0.ffn_up.weight')!.type.name, 'Q8_0');
  assert.equal(h.tensorByName.get('blk.0.attn_norm.weight')!.type.name, 'F32');
  assert.equal(h.tensorByName.has('output.weight'), false, 'tied classifier');

  const f32 = withModelSource(out('f32'), (s) => loadFloat32Weights(s, plainMemory));
  assert.ok(bytes(f32.data).equals(bytes(reference.data)));
  const f16 = withModelSource(out('f16'), (s) => loadFloat32Weights(s, plainMemory));
  for (const t of parameterTable(reference.config)) {
    const matrix = tensorShape(reference.config, t.name).rows > 1;
    const a = reference[t.name], b = f16[t.name];
    for (let i = 0; i < a.length; i++) {
      assert.equal(b[i], matrix ? halfToFloat(floatToHalf(a[i]!)) : a[i], `${t.name} ${i}`);
    }
  }
  // q8_0: the int8 values and scales handed to the engine are ggml's quantization of each row
  withModelSource(out('q8_0'), (s) => {
    assert.equal(s.q8GroupSize, 32);
    const cols = reference.config.dim;
    const wq = reference.wq.subarray(0, cols * cols);
    const ggml = new Uint8Array((wq.length / 32) * 34);
    encodeQ8_0(wq, ggml);
    const q = new Int8Array(wq.length), sc = new Float32Array(wq.length / 32);
    s.readQ8!('wq', 0, 0, wq.length, q, sc);
    for (let b = 0; b < sc.length; b++) {
      assert.equal(sc[b], halfToFloat(ggml[34 * b]! | (ggml[34 * b + 1]! << 8)));
      for (let j = 0; j < 32; j++) assert.equal(q[32 * b + j], (ggml[34 * b + 2 + j]! << 24) >> 24);
    }
    const values = new Float32Array(wq.length);
    s.read('wq', 0, 0, cols, values);
    for (let i = 0; i < values.length; i++) assert.equal(values[i], Math.fround(q[i]! * sc[Math.floor(i / 32)]!));
  });
  // the tokenizer inside gives SentencePiece's ids
  const tok = loadTokenizer(out('q8_0'), 512);
  const g = JSON.parse(readFileSync(ref('golden', 'tok512_sentencepiece.json'), 'utf8')) as { cases: Array<{ text: string; ids: number[] }> };
  for (const c of g.cases) assert.deepEqual(tok.encode(c.text), c.ids);
});

test('GGUF keeps ε, θ, grouped-query heads and an untied classifier', () => {
  const c: ModelConfig = {
    dim: 64, hiddenDim: 96, nLayers: 2, nHeads: 8, nKvHeads: 2, vocabSize: 100, seqLen: 32, sharedClassifier: false,
    normEps: 1e-6, ropeTheta: 500000,
  };
  const w = allocateWeights(c);
  const next = rng(7);
  for (let i = 0; i < w.data.length; i++) w.data[i] = (next() - 128) / 256;
  const path = join(tmp, 'gqa-untied.gguf');
  writeLlamaGguf(path, new WeightsSource(w), [], 'f32', 'test');
  withModelSource(path, (s) => {
    assert.deepEqual(s.config, c);
    assert.equal(s.tokenizer, undefined);
    assert.equal(s.storage('wcls'), 'F32');
    assert.ok(bytes(loadFloat32Weights(s, plainMemory).data).equals(bytes(w.data)));
  });
  const h = readGgufHeader(path);
  assert.deepEqual(h.tensorByName.get('output.weight')!.dims, [64, 100]);
  assert.deepEqual(h.tensorByName.get('blk.1.attn_k.weight')!.dims, [64, 16]);
});

/** A one-layer model whose matrices use every block type, written from hand-made blocks. */
function quantizedModel(path: string): { config: ModelConfig; data: Map<string, { type: number; bytes: Uint8Array }> } {
  const config: ModelConfig = { dim: 256, hiddenDim: 512, nLayers: 1, nHeads: 4, nKvHeads: 2, vocabSize: 64, seqLen: 16, sharedClassifier: false };
  const types: Record<TensorName, number> = {
    tokenEmbedding: GgmlType.Q4_K, wq: GgmlType.Q5_K, wk: GgmlType.Q6_K, wv: GgmlType.Q4_0, wo: GgmlType.Q8_0,
    w1: GgmlType.BF16, w2: GgmlType.Q6_K, w3: GgmlType.F16, wcls: GgmlType.Q4_K, rmsAtt: GgmlType.F32, rmsFfn: GgmlType.F32, rmsFinal: GgmlType.F32,
  };
  const data = new Map<string, { type: number; bytes: Uint8Array }>();
  const tensors = llamaTensorList(config).map(([name, layer], i) => {
    const { rows, cols } = tensorShape(config, name);
    const type = types[name];
    const n = rows * cols;
    const b = type === GgmlType.F32 || type === GgmlType.F16 || type === GgmlType.BF16
      ? floatFixture(type, n, 100 + i)
      : fixture(type, n / (type === GgmlType.Q8_0 || type === GgmlType.Q4_0 ? 32 : 256), 100 + i);
    const gname = ggufTensorName(name, layer);
    data.set(gname, { type, bytes: b });
    return { name: gname, type, dims: rows === 1 ? [cols] : [cols, rows], data: () => [b] };
  });
  writeGguf(path, new Map(llamaMetadata(config, 'blocks', 'q8_0')), tensors);
  return { config, data };
}

test('a model of Q4_0, Q4_K, Q5_K, Q6_K, Q8_0, F16, BF16 tensors reads as the reference decoders say and runs as int8', () => {
  const path = join(tmp, 'blocks.gguf');
  const { config, data } = quantizedModel(path);
  const s = new GgufSource(path);
  try {
    assert.deepEqual(s.config, config);
    assert.equal(s.q8GroupSize, 32);
    assert.match(s.format, /as int8, Q8_0 in groups of 32: .*Q4_K dequantized and requantized.*Q4_0 as stored.*Q8_0 as stored.*BF16 quantized/);
    for (const [name, layer] of llamaTensorList(config)) {
      const { rows, cols } = tensorShape(config, name);
      const { type, bytes: raw } = data.get(ggufTensorName(name, layer))!;
      const want = refDecode(type, raw, rows * cols);
      // a row range inside the tensor, as the loader asks
      const r0 = Math.min(1, rows - 1), n = rows - r0;
      const got = new Float32Array(n * cols);
      s.read(name, layer, r0, n, got);
      assert.ok(bytes(got).equals(bytes(want.subarray(r0 * cols))), `${name}`);
      if (rows === 1) continue;
      // int8: Q8_0/Q4_0 blocks as they are; anything else quantized in groups of 32 from its values
      const first = 96, count = rows * cols - 96 - 32; // not aligned to the 256-value K-quant blocks
      const q = new Int8Array(count), sc = new Float32Array(count / 32);
      s.readQ8!(name, layer, first, count, q, sc);
      const wq = new Int8Array(count), ws = new Float32Array(count / 32);
      quantize(wq, ws, want.subarray(first, first + count), count, 32);
      for (let i = 0; i < count; i++) {
        assert.equal(Math.fround(q[i]! * sc[Math.floor(i / 32)]!), type === GgmlType.Q8_0 || type === GgmlType.Q4_0 ? want[first + i] : Math.fround(wq[i]! * ws[Math.floor(i / 32)]!), `${name} int8 ${i}`);
      }
    }
    // the whole model loads as int8 and runs
    const q8 = loadQ8Weights(s, plainMemory);
    assert.equal(q8.groupSize, 32);
  } finally {
    s.close();
  }
  const t = loadTransformer(path, jsKernelSet, { quantize: 'q8' });
  const logits = t.forward(3, 0);
  assert.ok(logits.every(Number.isFinite));
  const info = llama2(['info', path]);
  assert.equal(info.status, 0, info.stderr);
  assert.match(info.stdout, /format +GGUF v3 \(.*\); as int8, Q8_0 in groups of 32: .*dequantized and requantized/);
});

test('GGUF models llama2ts cannot run are refused with one line by run and info', () => {
  const base = (): Map<string, GgufValue> => new Map(llamaMetadata({ dim: 64, hiddenDim: 64, nLayers: 1, nHeads: 4, nKvHeads: 4, vocabSize: 32, seqLen: 8, sharedClassifier: true }, 'x', 'f32'));
  const c: ModelConfig = { dim: 64, hiddenDim: 64, nLayers: 1, nHeads: 4, nKvHeads: 4, vocabSize: 32, seqLen: 8, sharedClassifier: true };
  const tensors = (skip = '', type: number = GgmlType.F32, dims?: number[]) => llamaTensorList(c).filter(([n, l]) => ggufTensorName(n, l) !== skip).map(([n, l]) => {
    const { rows, cols } = tensorShape(c, n);
    const name = ggufTensorName(n, l);
    const t = name === 'blk.0.attn_q.weight' ? type : GgmlType.F32;
    const d = name === 'blk.0.attn_q.weight' && dims ? dims : rows === 1 ? [cols] : [cols, rows];
    const count = d.reduce((a, b) => a * b, 1);
    return { name, type: t, dims: d, data: () => [t === GgmlType.F32 ? new Uint8Array(4 * count) : new Uint8Array(66 * count / 256)] };
  });
  const cases: Array<[string, Map<string, GgufValue>, ReturnType<typeof tensors>, RegExp]> = [
    ['arch', new Map([...base(), ['general.architecture', { type: ValueType.STRING, value: 'gpt2' }]]), tensors(), /architecture 'gpt2' is not supported/],
    ['missing', base(), tensors('blk.0.ffn_up.weight'), /has no tensor blk\.0\.ffn_up\.weight/],
    ['dims', base(), tensors('', GgmlType.F32, [64, 32]), /tensor blk\.0\.attn_q\.weight has dimensions \[64, 32\], the model's shape needs \[64, 64\]/],
    ['iq2', base(), tensors('', 16, [256, 64].slice(0, 1).concat([16])), /is IQ2_XXS, which llama2ts does not read/],
    ['rope', new Map([...base(), ['llama.rope.dimension_count', { type: ValueType.UINT32, value: 8 }]]), tensors(), /RoPE over 8 of each head's 16 dimensions is not supported/],
    ['heads', new Map([...base(), ['llama.attention.head_count', { type: ValueType.UINT32, value: 0 }]]), tensors(), /n_heads = 0/],
  ];
  for (const [name, meta, ts, pattern] of cases) {
    const path = join(tmp, `bad-${name}.gguf`);
    writeGguf(path, meta, ts);
    assertOneLineError(llama2(['info', path]), pattern);
    assertOneLineError(llama2(['run', path, '-z', ref('data', 'models', 'tok512.bin')]), pattern);
    assert.throws(() => openModelSource(path), pattern);
  }
});

test('a Hugging Face folder exported to GGUF keeps its weights (rotate-half undone once), tokenizer and chat template', needsRefdata, () => {
  const dir = ref('golden', 'hf', 'hf_gqa_f32');
  const path = join(tmp, 'hf_gqa_f32.gguf');
  const r = llama2(['export', dir, '--format', 'gguf', '-o', path]);
  assert.equal(r.status, 0, r.stderr);
  const [folderWeights, template] = withModelSource(dir, (s) => [loadFloat32Weights(s, plainMemory), s.chatTemplate!] as const);
  withModelSource(path, (s) => {
    const { normEps: e, ropeTheta: th, ...shape } = folderWeights.config;
    assert.deepEqual(s.config, shape, 'ε and θ are the defaults, left implicit');
    assert.deepEqual([e, th], [1e-5, 10000]);
    assert.equal(s.config.sharedClassifier, false);
    assert.ok(bytes(loadFloat32Weights(s, plainMemory).data).equals(bytes(folderWeights.data)));
    assert.equal(s.chatTemplate?.template, template.template);
    assert.equal(s.chatTemplate?.bosToken, '<s>');
    assert.equal(s.chatTemplate?.eosToken, '</s>');
  });
  const g = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8')) as { prompt_text: string; prompt_ids: number[] };
  assert.deepEqual(loadTokenizer(path).encode(g.prompt_text), g.prompt_ids);
});
