// The ModelSource seam and the loader: a llama2.c file read through its source gives exactly the
// weights the whole-file readers give, row range by row range; the streaming loader (float32 and
// Q8_0, with chunks small enough to cross every boundary) gives bit-identical weights; the
// rotate-half row map is transformers' permute; format detection and bad paths give one line.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LlamaError } from '../src/errors.js';
import { engineWeights } from '../src/infer/forward.js';
import { loadFloat32Weights, loadQ8Weights, loadWeights, plainMemory } from '../src/infer/load.js';
import { jsKernelSet } from '../src/kernels/kernel-set.js';
import { checkpointWeights, readCheckpoint, readCheckpointAsQ8 } from '../src/model/checkpoint.js';
import { openModelSource, withModelSource } from '../src/model/open.js';
import { hfRotateHalfRow, MATRIX_TENSORS, tensorShape } from '../src/model/source.js';
import { parameterTable } from '../src/model/weights.js';
import { needsRefdata, ref } from './refdata.js';

const tmp = mkdtempSync(join(tmpdir(), 'llama2ts-source-'));
const model = (f: string) => ref('data', 'models', f);
const bytes = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

test('llama2.c sources: every row range of every tensor equals the whole-file reader (v0, v1, v2 dequantized)', needsRefdata, () => {
  const reference = checkpointWeights(readCheckpoint(model('stories260K.bin')));
  const v2 = checkpointWeights(readCheckpoint(model('stories260K.v2.bin')));
  for (const [file, expected, format] of [
    ['stories260K.bin', reference, 'llama2.c v0 (legacy, float32)'],
    ['stories260K.v1.bin', reference, 'llama2.c v1 (float32)'],
    ['stories260K.v2.bin', v2, 'llama2.c v2 (Q8_0, group size 64)'],
  ] as const) {
    withModelSource(model(file), (s) => {
      assert.equal(s.format, format);
      assert.deepEqual(s.config, reference.config);
      assert.equal(s.tokenizer?.path, model('tok512.bin'), 'tok<vocab>.bin beside the model');
      for (const t of parameterTable(s.config)) {
        const { layers, rows, cols } = tensorShape(s.config, t.name);
        for (const l of [0, layers - 1]) {
          // an odd range that starts and ends inside Q8_0 groups
          const r0 = Math.min(3, rows - 1), n = Math.max(1, Math.min(7, rows - r0));
          const got = new Float32Array(n * cols);
          s.read(t.name, l, r0, n, got);
          const want = expected[t.name].subarray((l * rows + r0) * cols, (l * rows + r0 + n) * cols);
          assert.ok(bytes(got).equals(bytes(want)), `${file} ${t.name} layer ${l}`);
        }
      }
    });
  }
});

test('loader: float32 and Q8_0 streamed in small chunks equal the whole-file readers bit for bit', needsRefdata, () => {
  const reference = checkpointWeights(readCheckpoint(model('stories260K.v1.bin')));
  const refQ8 = readCheckpointAsQ8(model('stories260K.v1.bin'), 64);
  const v2 = readCheckpoint(model('stories260K.v2.bin'));
  assert.equal(v2.format, 'v2');
  if (v2.format !== 'v2') return;
  for (const chunk of [1 << 20, 1000, 1]) {
    for (const file of ['stories260K.bin', 'stories260K.v1.bin']) {
      const w = withModelSource(model(file), (s) => loadFloat32Weights(s, plainMemory, chunk));
      assert.ok(bytes(w.data).equals(bytes(reference.data)), `${file} float32, chunk ${chunk}`);
      const q = withModelSource(model(file), (s) => loadQ8Weights(s, plainMemory, 64, chunk));
      for (const name of ['wq', 'wk', 'w2'] as const) {
        q[name].forEach((t, l) => assert.ok(bytes(t.q).equals(bytes(refQ8[name][l]!.q)) && bytes(t.s).equals(bytes(refQ8[name][l]!.s)), `${file} ${name} ${l} q8 chunk ${chunk}`));
      }
      assert.ok(bytes(q.tokenEmbedding.q).equals(bytes(refQ8.tokenEmbedding.q)));
    }
    // v2 as it is (native Q8_0), and dequantized
    const q = withModelSource(model('stories260K.v2.bin'), (s) => loadQ8Weights(s, plainMemory, 32, chunk));
    assert.equal(q.groupSize, 64, 'a Q8_0 file keeps its own group size');
    for (const name of ['wq', 'w1', 'w2'] as const) {
      q[name].forEach((t, l) => assert.ok(bytes(t.q).equals(bytes(v2.q8[name][l]!.q)) && bytes(t.s).equals(bytes(v2.q8[name][l]!.s))));
    }
    const deq = withModelSource(model('stories260K.v2.bin'), (s) => loadFloat32Weights(s, plainMemory, chunk));
    assert.ok(bytes(deq.data).equals(bytes(checkpointWeights(v2).data)));
  }
  // the kernels' memory: loadWeights allocates through the kernels, layer by layer
  const w = withModelSource(model('stories260K.v1.bin'), (s) => loadWeights(s, jsKernelSet));
  assert.deepStrictEqual(w, engineWeights(reference));
});

test('rotate-half row map is transformers\' permute: w.view(heads, hs/2, 2, cols).transpose(1, 2)', () => {
  for (const [heads, hs] of [[8, 8], [4, 16], [1, 2], [3, 64]] as const) {
    // permute(W) row p = W row src(p): index p = (h, j, i) in the permuted (heads, 2, hs/2) view
    // comes from (h, i, j) of the original (heads, hs/2, 2) view
    const seen = new Set<number>();
    for (let h = 0; h < heads; h++) {
      for (let j = 0; j < 2; j++) {
        for (let i = 0; i < hs / 2; i++) {
          const permutedRow = h * hs + j * (hs / 2) + i;
          const originalRow = h * hs + i * 2 + j;
          assert.equal(hfRotateHalfRow(originalRow, hs), permutedRow);
          seen.add(permutedRow);
        }
      }
    }
    assert.equal(seen.size, heads * hs, 'a permutation');
  }
});

test('loader: a non-finite weight is a one-line error naming the tensor, layer and row', needsRefdata, () => {
  const v1 = Buffer.from(readFileSync(model('stories260K.v1.bin')));
  const c = readCheckpoint(model('stories260K.v1.bin')).config;
  const wq = parameterTable(c).find((t) => t.name === 'wq')!;
  // layer 2, row 5, column 9 of wq; then the last value of the last layer's wq
  const last = c.nLayers * c.dim * c.dim - 1;
  for (const [value, at, where] of [[Infinity, (2 * c.dim + 5) * c.dim + 9, 'layer 2 row 5: value 9'], [NaN, last, `layer ${c.nLayers - 1} row ${c.dim - 1}: value ${c.dim - 1}`],
    [-Infinity, last, `layer ${c.nLayers - 1} row ${c.dim - 1}: value ${c.dim - 1}`]] as const) {
    const bad = Buffer.from(v1);
    bad.writeFloatLE(value, 256 + 4 * (wq.offset + at));
    const p = join(tmp, 'inf.bin');
    writeFileSync(p, bad);
    for (const quantize of ['none', 'q8'] as const) {
      assert.throws(() => withModelSource(p, (s) => loadWeights(s, jsKernelSet, { quantize })), (e: unknown) => {
        assert.ok(e instanceof LlamaError);
        assert.equal(e.message, `${p}: tensor wq ${where} is not a finite number (${value})`);
        return true;
      });
    }
  }
});

test('format detection: folders without a model and missing paths are one-line errors', () => {
  const empty = join(tmp, 'empty-folder');
  mkdirSync(empty);
  assert.throws(() => openModelSource(empty), /empty-folder: not a model folder \(no config\.json/);
  assert.throws(() => openModelSource(join(tmp, 'missing')), /missing: no such file/);
  writeFileSync(join(tmp, 'short.bin'), Buffer.alloc(5));
  assert.throws(() => openModelSource(join(tmp, 'short.bin')), /too short/);
});

test('MATRIX_TENSORS covers every matrix of the parameter table', () => {
  const c = { dim: 8, hiddenDim: 16, nLayers: 2, nHeads: 2, nKvHeads: 1, vocabSize: 10, seqLen: 4, sharedClassifier: false };
  for (const t of parameterTable(c)) {
    const { layers, rows, cols } = tensorShape(c, t.name);
    assert.equal(layers * rows * cols, t.size, t.name);
    if (t.shape.length - (t.perLayer ? 1 : 0) === 2) assert.ok(MATRIX_TENSORS.includes(t.name), t.name);
  }
});
