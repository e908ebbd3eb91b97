// Checkpoint formats: the reference files read to identical weights in every format, writers
// reproduce the reference bytes, and corrupt input gives a one-line error naming the file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, LlamaError } from '../src/errors.js';
import {
  CHECKPOINT_MAGIC, checkpointWeights, readCheckpoint, readCheckpointAsQ8, readCheckpointHeader, writeCheckpoint,
} from '../src/model/checkpoint.js';
import * as weightsModule from '../src/model/weights.js';
import { parameterCount } from '../src/model/weights.js';
import { cliPath, needsRefdata, ref } from './refdata.js';

const tmp = mkdtempSync(join(tmpdir(), 'llama2ts-ckpt-'));
const v0Path = () => ref('data', 'models', 'stories260K.bin');
const v1Path = () => ref('data', 'models', 'stories260K.v1.bin');
const v2Path = () => ref('data', 'models', 'stories260K.v2.bin');

function v1Weights() {
  const c = readCheckpoint(v1Path());
  assert.equal(c.format, 'v1');
  return c.format === 'v1' ? c.weights : assert.fail();
}

test('stories260K: v0 and v1 files hold identical weights and header', needsRefdata, () => {
  const a = readCheckpoint(v0Path());
  const b = readCheckpoint(v1Path());
  assert.equal(a.format, 'v0');
  assert.deepEqual(a.config, b.config);
  assert.deepEqual(a.config, { dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512, sharedClassifier: true });
  const wa = checkpointWeights(a).data, wb = checkpointWeights(b).data;
  assert.equal(wa.length, parameterCount(a.config));
  assert.ok(Buffer.from(wa.buffer, wa.byteOffset, wa.byteLength).equals(Buffer.from(wb.buffer, wb.byteOffset, wb.byteLength)));
});

test('v1 read → write is byte-identical', needsRefdata, () => {
  const out = join(tmp, 'rt.v1.bin');
  writeCheckpoint(out, v1Weights(), 'v1');
  assert.ok(readFileSync(out).equals(readFileSync(v1Path())));
});

test('v2 (Q8_0) writer reproduces the reference exporter byte for byte', needsRefdata, () => {
  const out = join(tmp, 'rt.v2.bin');
  writeCheckpoint(out, v1Weights(), 'v2', 64);
  assert.ok(readFileSync(out).equals(readFileSync(v2Path())));
});

test('quantizing while reading (v0 and v1) gives exactly the reference v2 tensors', needsRefdata, () => {
  const reference = readCheckpoint(v2Path());
  assert.equal(reference.format, 'v2');
  if (reference.format !== 'v2') return;
  const same = (a: Int8Array | Float32Array, b: Int8Array | Float32Array) =>
    Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  for (const file of [v0Path(), v1Path()]) {
    const q = readCheckpointAsQ8(file, 64);
    assert.equal(q.groupSize, 64);
    assert.ok(same(q.tokenEmbedding.q, reference.q8.tokenEmbedding.q) && same(q.tokenEmbedding.s, reference.q8.tokenEmbedding.s));
    assert.ok(same(q.rmsAtt, reference.q8.rmsAtt) && same(q.rmsFfn, reference.q8.rmsFfn) && same(q.rmsFinal, reference.q8.rmsFinal));
    for (const name of ['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'] as const) {
      q[name].forEach((t, l) => assert.ok(same(t.q, reference.q8[name][l]!.q) && same(t.s, reference.q8[name][l]!.s), `${name}[${l}]`));
    }
  }
});

test('v2 reader: header, group size and dequantized weights close to float32', needsRefdata, () => {
  const h = readCheckpointHeader(v2Path());
  assert.equal(h.format, 'v2');
  assert.equal(h.groupSize, 64);
  const q = readCheckpoint(v2Path());
  const deq = checkpointWeights(q).data;
  const ref32 = v1Weights().data;
  // Q8_0 error is at most half a quantization step: max|w|/127/2 per group, < 1e-2 here.
  let maxErr = 0;
  for (let i = 0; i < deq.length; i++) maxErr = Math.max(maxErr, Math.abs(deq[i]! - ref32[i]!));
  assert.ok(maxErr < 1e-2, `max dequantization error ${maxErr}`);
});

test('v0 write → read round trip keeps every weight (shared and unshared classifier)', needsRefdata, () => {
  const w = v1Weights();
  const out = join(tmp, 'rt.v0.bin');
  writeCheckpoint(out, w, 'v0');
  const back = checkpointWeights(readCheckpoint(out));
  assert.deepEqual(back.data, w.data);
  // The v0 file differs from the reference only in the unused RoPE tables (float rounding of cos/sin).
  assert.equal(readFileSync(out).length, readFileSync(v0Path()).length);
  // Unshared classifier: vocab_size is negative in v0, flag 0 in v1; wcls comes last.
  const cfg = { ...w.config, sharedClassifier: false };
  const data = new Float32Array(parameterCount(cfg));
  data.set(w.data);
  for (let i = w.data.length; i < data.length; i++) data[i] = i % 7;
  const unshared = weightsModule.weightsView(cfg, data);
  for (const fmt of ['v0', 'v1'] as const) {
    const p = join(tmp, `unshared.${fmt}.bin`);
    writeCheckpoint(p, unshared, fmt);
    const r = checkpointWeights(readCheckpoint(p));
    assert.equal(r.config.sharedClassifier, false);
    assert.deepEqual(r.wcls, unshared.wcls);
    assert.deepEqual(r.data, data);
  }
  assert.equal(readFileSync(join(tmp, 'unshared.v0.bin')).readInt32LE(20), -512);
});


// --- corrupt input ---------------------------------------------------------------------------

function v1Header(fields: number[], opts: { magic?: number; version?: number; shared?: number } = {}): Buffer {
  const b = Buffer.alloc(256);
  b.writeUInt32LE(opts.magic ?? CHECKPOINT_MAGIC, 0);
  b.writeInt32LE(opts.version ?? 1, 4);
  fields.forEach((v, i) => b.writeInt32LE(v, 8 + 4 * i));
  b.writeUInt8(opts.shared ?? 1, 36);
  return b;
}

function expectFormatError(bytes: Buffer, pattern: RegExp): void {
  const p = join(tmp, `bad-${Math.random().toString(36).slice(2)}.bin`);
  writeFileSync(p, bytes);
  assert.throws(() => readCheckpoint(p), (e: unknown) => {
    assert.ok(e instanceof FormatError, `expected FormatError, got ${e}`);
    assert.ok(e.message.startsWith(p), 'message names the file');
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes('\n'), 'one line');
    return true;
  });
}

const good = [64, 172, 5, 8, 4, 512, 512];

test('corrupt checkpoints: wrong magic, version, sizes and impossible headers', () => {
  expectFormatError(v1Header(good, { version: 3 }), /unsupported checkpoint version 3/);
  expectFormatError(v1Header(good, { shared: 7 }), /shared-classifier flag/);
  expectFormatError(v1Header(good), /header implies \d+ bytes but the file has 256 \(truncated\)/);
  expectFormatError(v1Header([0, 172, 5, 8, 4, 512, 512]), /dim = 0/);
  expectFormatError(v1Header([64, -1, 5, 8, 4, 512, 512]), /hidden_dim = -1/);
  expectFormatError(v1Header([64, 172, 5, 7, 7, 512, 512]), /dim 64 is not divisible by n_heads 7/);
  expectFormatError(v1Header([64, 172, 5, 8, 3, 512, 512]), /n_heads 8 is not divisible by n_kv_heads 3/);
  expectFormatError(v1Header([2 ** 24, 2 ** 24, 2 ** 24, 1, 1, 2 ** 24, 1]), /too large/);
  expectFormatError(v1Header(good, { version: 2 }), /group size/);
  // a group size that divides no tensor: said so, not "implies 608170.6666666667 bytes"
  const gs3 = v1Header(good, { version: 2 });
  gs3.writeInt32LE(3, 37);
  expectFormatError(gs3, /: group size 3 does not divide tensor tokenEmbedding \(32768 values\): not a valid v2 file$/);
  expectFormatError(Buffer.alloc(10), /too short/);
  expectFormatError(Buffer.concat([v1Header(good).subarray(0, 100)]), /too short/);
  // v0: a header whose sizes do not match the file
  const v0 = Buffer.alloc(28 + 400);
  good.forEach((v, i) => v0.writeInt32LE(v, 4 * i));
  expectFormatError(v0, /v0 header implies \d+ bytes but the file has 428 \(truncated\)/);
});

test('corrupt checkpoints: trailing data and NaN weights are rejected', needsRefdata, () => {
  const v1 = readFileSync(v1Path());
  expectFormatError(Buffer.concat([v1, Buffer.alloc(4)]), /trailing data/);
  expectFormatError(v1.subarray(0, v1.length - 4), /truncated/);
  const nan = Buffer.from(v1);
  nan.writeFloatLE(NaN, 256 + 4 * 1000);
  expectFormatError(nan, /weight 1000 is not a finite number/);
});

test('random bytes never crash the reader: always a FormatError', () => {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
  for (let trial = 0; trial < 200; trial++) {
    const len = [0, 5, 27, 28, 64, 255, 256, 300, 2048][trial % 9]!;
    const b = Buffer.alloc(len);
    for (let i = 0; i < len; i++) b[i] = rand();
    if (trial % 3 === 0 && len >= 8) b.writeUInt32LE(CHECKPOINT_MAGIC, 0);
    if (trial % 6 === 0 && len >= 8) b.writeInt32LE(1 + (trial % 2), 4);
    const p = join(tmp, `rand-${trial}.bin`);
    writeFileSync(p, b);
    assert.throws(() => readCheckpoint(p), (e: unknown) => e instanceof LlamaError);
  }
});

test('a missing file or a directory is a one-line error', () => {
  assert.throws(() => readCheckpoint(join(tmp, 'nope.bin')), /nope\.bin: no such file/);
  assert.throws(() => readCheckpoint(tmp), /is a directory/);
});

test('writes are atomic: a failed write leaves no file and no temp file behind', () => {
  const dir = mkdtempSync(join(tmpdir(), 'llama2ts-atomic-'));
  const w = weightsModule.allocateWeights({ dim: 8, hiddenDim: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, vocabSize: 10, seqLen: 4, sharedClassifier: true });
  writeCheckpoint(join(dir, 'ok.bin'), w, 'v1');
  assert.throws(() => writeCheckpoint(join(dir, 'missing-dir', 'x.bin'), w, 'v1'), LlamaError);
  assert.deepEqual(readdirSync(dir), ['ok.bin']);
  assert.equal(statSync(join(dir, 'ok.bin')).size, 256 + 4 * w.data.length);
});

test('llama2 info: header of each format, and bad files exit non-zero with one line', needsRefdata, () => {
  const ok = spawnSync(process.execPath, [cliPath, 'info', v2Path()], { encoding: 'utf8' });
  assert.equal(ok.status, 0);
  assert.match(ok.stdout, /format\s+llama2\.c v2 \(Q8_0, group size 64\)/);
  assert.match(ok.stdout, /parameters\s+260032/);
  assert.match(ok.stdout, /grouped-query/);
  const bad = spawnSync(process.execPath, [cliPath, 'info', join(tmp, 'nope.bin')], { encoding: 'utf8' });
  assert.notEqual(bad.status, 0);
  assert.equal(bad.stderr.trim().split('\n').length, 1);
  assert.match(bad.stderr, /no such file/);
});

test('a model whose norm ε or rope θ is not llama2.c\'s is refused by the .bin writers, never silently changed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'llama2ts-eps-'));
  const base = { dim: 8, hiddenDim: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, vocabSize: 10, seqLen: 4, sharedClassifier: true };
  for (const extra of [{ normEps: 1e-6 }, { ropeTheta: 500000 }]) {
    const w = weightsModule.allocateWeights({ ...base, ...extra });
    for (const format of ['v0', 'v1', 'v2'] as const) {
      assert.throws(() => writeCheckpoint(join(dir, `${format}.bin`), w, format, 8), /cannot record this model's norm epsilon/);
    }
  }
  assert.deepEqual(readdirSync(dir), []);
  // the defaults, given explicitly, are llama2.c's
  writeCheckpoint(join(dir, 'ok.bin'), weightsModule.allocateWeights({ ...base, normEps: 1e-5, ropeTheta: 10000 }), 'v1');
  assert.deepEqual(readdirSync(dir), ['ok.bin']);
});
