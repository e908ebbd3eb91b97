// GGUF: the container parser and writer, the tensor block decoders and encoders, and the tokenizer
// carried in the metadata. References: the independently written stories260K.f32.gguf (its tensors
// must be stories260K.bin's weights bit for bit, its tokenizer SentencePiece's ids), decoders
// written from ggml's published block layouts (gguf-fixtures.ts: element by element, not ggml's loop order),
// and corrupt files, which must be refused with a one-line FormatError.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FormatError } from '../src/errors.js';
import { readCheckpoint } from '../src/model/checkpoint.js';
import {
  GgmlType, GgufFile, type GgufValue, ValueType, readGgufHeader, serializeGgufHeader, tensorBytes, writeGguf,
} from '../src/model/gguf.js';
import {
  bf16ToFloat, decodeValues, encodeBF16, encodeF16, encodeQ8_0, floatToBf16, floatToHalf, halfToFloat, splitToQ8,
} from '../src/model/gguf-blocks.js';
import { ggufTokenizerMetadata, vocabularyFromGguf } from '../src/tokenizer/gguf-vocabulary.js';
import { loadTokenizer } from '../src/tokenizer/index.js';
import { f, fixture, i8, refDecode, refHalf, rng, u16 } from './gguf-fixtures.js';
import { cliPath, needsRefdata, ref } from './refdata.js';

const tmp = mkdtempSync(join(tmpdir(), 'llama2ts-gguf-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const golden = (): string => ref('golden', 'gguf', 'stories260K.f32.gguf');

test('block decoders equal the reference decoders on hand-made blocks: Q8_0, Q4_0, Q4_K, Q5_K, Q6_K', () => {
  for (const type of [GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K]) {
    for (const seed of [1, 2, 3]) {
      const n = (type === GgmlType.Q8_0 || type === GgmlType.Q4_0 ? 32 : 256) * 5;
      const bytes = fixture(type, n / (type === GgmlType.Q8_0 || type === GgmlType.Q4_0 ? 32 : 256), seed * 7919 + type);
      const got = new Float32Array(n);
      decodeValues(type, bytes, got, n);
      const want = refDecode(type, bytes, n);
      for (let i = 0; i < n; i++) assert.ok(Object.is(got[i], want[i]), `type ${type} seed ${seed} value ${i}: ${got[i]} ≠ ${want[i]}`);
    }
  }
});

test('block decoders: hand-computed values from the layouts', () => {
  // Q4_0: d = 0.5 (0x3800), qs[0] = 0x9F → x[0] = (15 − 8)·0.5 = 3.5, x[16] = (9 − 8)·0.5 = 0.5
  const q40 = new Uint8Array(18);
  q40[0] = 0x00; q40[1] = 0x38; q40[2] = 0x9f;
  const out = new Float32Array(32);
  decodeValues(GgmlType.Q4_0, q40, out, 32);
  assert.equal(out[0], 3.5); assert.equal(out[16], 0.5); assert.equal(out[1], -4);
  // Q4_K: d = 1, dmin = 0.25; sub-block 0 scale 3 min 4 (bytes 0 and 4); sub-block 5 scale 1 + (2 << 4) = 33
  // (low nibble of byte 9, top bits of byte 1), min 2 + (1 << 4) = 18 (high nibble of byte 9, top bits of byte 5)
  const q4k = new Uint8Array(144);
  q4k[1] = 0x3c; q4k[3] = 0x34; // d = 1.0, dmin = 0.25
  q4k[4] = 3; q4k[8] = 4; q4k[5] = 0b10 << 6; q4k[9] = 0b01 << 6; q4k[4 + 9] = (2 << 4) | 1;
  q4k[16] = 0x07; // value 0 (sub-block 0, low nibble) q = 7 → 3·7 − 0.25·4 = 20
  q4k[16 + 64 + 5] = 0xa0; // sub-block 5 = bytes 64..95 (with sub-block 4), high nibble, l = 5: q = 10 → 33·10 − 0.25·18 = 325.5
  const o4k = new Float32Array(256);
  decodeValues(GgmlType.Q4_K, q4k, o4k, 256);
  assert.equal(o4k[0], 20); assert.equal(o4k[5 * 32 + 5], 325.5);
  // Q6_K: d = 2, scale of sub-block 1 (values 16..31) = −3; value 17: ql[17] low nibble 5, qh[17] bits 0-1 = 2
  // → q = 5 + 32 − 32 = 5 → 2·(−3)·5 = −30; value 200 (half 1, quarter 2, l = 8): ql[64 + 8] high nibble 1,
  // qh[128 + 32 + 8] bits 4-5 = 3 → q = 1 + 48 − 32 = 17, scale index 8 + 4 + 0 = 12 → 2·s·17
  const q6k = new Uint8Array(210);
  q6k[209] = 0x40; // d = 2
  q6k[192 + 1] = 0xfd; q6k[17] = 5; q6k[128 + 17] = 2;
  q6k[64 + 8] = 0x10; q6k[128 + 32 + 8] = 3 << 4; q6k[192 + 12] = 4;
  const o6k = new Float32Array(256);
  decodeValues(GgmlType.Q6_K, q6k, o6k, 256);
  assert.equal(o6k[17], -30); assert.equal(o6k[200], 2 * 4 * 17); assert.ok(o6k[0] === 0); // scale 0 → (−)0
});

test('Q8_0 and Q4_0 split into int8 + float32 scales without loss', () => {
  for (const type of [GgmlType.Q8_0, GgmlType.Q4_0]) {
    const bytes = fixture(type, 9, 42 + type);
    const n = 9 * 32;
    const q = new Int8Array(n), s = new Float32Array(9), ref = new Float32Array(n);
    splitToQ8(type, bytes, n, q, s);
    decodeValues(type, bytes, ref, n);
    for (let i = 0; i < n; i++) assert.ok(Object.is(f(q[i]! * s[Math.floor(i / 32)]!), ref[i]), `type ${type} value ${i}`);
  }
});

test('F16 and BF16: every half decodes as its definition says and encodes back to itself; ties round to even', () => {
  for (let h = 0; h < 65536; h++) {
    const x = halfToFloat(h);
    const want = refHalf(h);
    if (Number.isNaN(want)) { assert.ok(Number.isNaN(x)); continue; }
    assert.ok(Object.is(x, want), `half ${h.toString(16)}`);
    assert.equal(floatToHalf(x), h, `half ${h.toString(16)} round trip`);
    assert.ok(Object.is(bf16ToFloat(floatToBf16(bf16ToFloat(h))), bf16ToFloat(h)));
  }
  // between 1 and 1 + 2^-10: the midpoint ties to even (1), just above it rounds up
  assert.equal(floatToHalf(1 + 2 ** -11), 0x3c00);
  assert.equal(floatToHalf(1 + 3 * 2 ** -11), 0x3c02);
  assert.equal(floatToHalf(1 + 2 ** -11 + 2 ** -20), 0x3c01);
  assert.equal(floatToHalf(65520), 0x7c00); // rounds past the largest half: infinity
  assert.equal(floatToHalf(2 ** -25), 0); // half the smallest subnormal: ties to even (0)
  assert.equal(floatToHalf(3 * 2 ** -26), 1);
  assert.equal(floatToBf16(1 + 2 ** -8), 0x3f80); // tie → even
  assert.equal(floatToBf16(1 + 3 * 2 ** -8), 0x3f82);
  const x = Float32Array.from([0.1, -2.5, 1e-6, 3.14159]);
  const h = new Uint8Array(8), b = new Uint8Array(8);
  encodeF16(x, h); encodeBF16(x, b);
  const back = new Float32Array(4), backB = new Float32Array(4);
  decodeValues(GgmlType.F16, h, back, 4); decodeValues(GgmlType.BF16, b, backB, 4);
  for (let i = 0; i < 4; i++) {
    assert.ok(Math.abs(back[i]! - x[i]!) <= Math.max(Math.abs(x[i]!) * 2 ** -11, 2 ** -25));
    assert.ok(Math.abs(backB[i]! - x[i]!) <= Math.abs(x[i]!) * 2 ** -8);
  }
});

test('Q8_0 encoding: the block maximum becomes ±127, every value within half a step', () => {
  const next = rng(99);
  const x = new Float32Array(32 * 6);
  for (let i = 0; i < x.length; i++) x[i] = (next() - 128) / 37 + (next() / 255) * 0.01;
  x.fill(0, 32, 64); // an all-zero block
  const bytes = new Uint8Array(34 * 6);
  encodeQ8_0(x, bytes);
  const back = new Float32Array(x.length);
  decodeValues(GgmlType.Q8_0, bytes, back, x.length);
  for (let b = 0; b < 6; b++) {
    const d = halfToFloat(u16(bytes, 34 * b));
    const qs = Array.from(bytes.subarray(34 * b + 2, 34 * b + 34), i8);
    if (b === 1) { assert.equal(d, 0); assert.ok(qs.every((q) => q === 0)); continue; }
    assert.equal(Math.max(...qs.map(Math.abs)), 127);
    for (let j = 0; j < 32; j++) assert.ok(Math.abs(back[32 * b + j]! - x[32 * b + j]!) <= d * 0.5 + Math.abs(x[32 * b + j]!) * 2 ** -10);
  }
});

// ----------------------------------------------------------------------------------------------
// The container

test('the reference GGUF reads as stories260K: its tensors are the .bin weights bit for bit', needsRefdata, () => {
  const ckpt = readCheckpoint(ref('data', 'models', 'stories260K.bin'));
  assert.ok(ckpt.format === 'v0');
  const w = ckpt.weights;
  const h = readGgufHeader(golden());
  assert.equal(h.version, 3);
  assert.equal((h.metadata.get('general.architecture') as { value: string }).value, 'llama');
  assert.equal(h.tensors.length, 2 + 9 * 5);
  const file = new GgufFile(h);
  try {
    const L = 5;
    const layer = (a: Float32Array, l: number) => a.subarray((a.length / L) * l, (a.length / L) * (l + 1));
    const expect: Array<[string, Float32Array, number[]]> = [
      ['token_embd.weight', w.tokenEmbedding, [64, 512]], ['output_norm.weight', w.rmsFinal, [64]],
    ];
    for (let l = 0; l < L; l++) {
      expect.push(
        [`blk.${l}.attn_norm.weight`, layer(w.rmsAtt, l), [64]], [`blk.${l}.attn_q.weight`, layer(w.wq, l), [64, 64]],
        [`blk.${l}.attn_k.weight`, layer(w.wk, l), [64, 32]], [`blk.${l}.attn_v.weight`, layer(w.wv, l), [64, 32]],
        [`blk.${l}.attn_output.weight`, layer(w.wo, l), [64, 64]], [`blk.${l}.ffn_norm.weight`, layer(w.rmsFfn, l), [64]],
        [`blk.${l}.ffn_gate.weight`, layer(w.w1, l), [64, 172]], [`blk.${l}.ffn_down.weight`, layer(w.w2, l), [172, 64]],
        [`blk.${l}.ffn_up.weight`, layer(w.w3, l), [64, 172]],
      );
    }
    for (const [name, want, dims] of expect) {
      const t = file.tensor(name);
      assert.deepEqual(t.dims, dims, name);
      assert.equal(t.type.name, 'F32');
      const bytes = new Uint8Array(t.bytes);
      file.read(t, 0, bytes);
      assert.ok(Buffer.from(bytes).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength)), name);
    }
  } finally {
    file.close();
  }
});

test('write → read: every metadata type, every tensor type, a custom alignment', () => {
  const meta = new Map<string, GgufValue>([
    ['general.alignment', { type: ValueType.UINT32, value: 64 }],
    ['a.u8', { type: ValueType.UINT8, value: 255 }], ['a.i8', { type: ValueType.INT8, value: -128 }],
    ['a.u16', { type: ValueType.UINT16, value: 65535 }], ['a.i16', { type: ValueType.INT16, value: -32768 }],
    ['a.u32', { type: ValueType.UINT32, value: 4294967295 }], ['a.i32', { type: ValueType.INT32, value: -2147483648 }],
    ['a.f32', { type: ValueType.FLOAT32, value: f(0.1) }], ['a.f64', { type: ValueType.FLOAT64, value: 0.1 }],
    ['a.u64', { type: ValueType.UINT64, value: 2n ** 64n - 1n }], ['a.i64', { type: ValueType.INT64, value: -(2n ** 63n) }],
    ['a.bool', { type: ValueType.BOOL, value: true }], ['a.str', { type: ValueType.STRING, value: 'héllo ▁ 🦙' }],
    ['a.arr.str', { type: ValueType.ARRAY, itemType: ValueType.STRING, value: ['', 'x', '<0x0A>'] }],
    ['a.arr.f32', { type: ValueType.ARRAY, itemType: ValueType.FLOAT32, value: Float32Array.from([1.5, -2]) }],
    ['a.arr.i32', { type: ValueType.ARRAY, itemType: ValueType.INT32, value: Int32Array.from([1, -6]) }],
    ['a.arr.u64', { type: ValueType.ARRAY, itemType: ValueType.UINT64, value: BigUint64Array.from([7n]) }],
    ['a.arr.bool', { type: ValueType.ARRAY, itemType: ValueType.BOOL, value: [true, false] }],
    ['a.arr.u8', { type: ValueType.ARRAY, itemType: ValueType.UINT8, value: Uint8Array.from([]) }],
  ]);
  const tensors = [
    { name: 'f32', type: GgmlType.F32, dims: [3, 2], bytes: new Uint8Array(Float32Array.from([1, 2, 3, 4, 5, 6]).buffer) },
    { name: 'f16', type: GgmlType.F16, dims: [5], bytes: fixture(GgmlType.Q8_0, 1, 5).subarray(0, 10) },
    { name: 'q8', type: GgmlType.Q8_0, dims: [64, 3], bytes: fixture(GgmlType.Q8_0, 6, 6) },
    { name: 'q4', type: GgmlType.Q4_0, dims: [32], bytes: fixture(GgmlType.Q4_0, 1, 7) },
    { name: 'q4k', type: GgmlType.Q4_K, dims: [256, 2], bytes: fixture(GgmlType.Q4_K, 2, 8) },
    { name: 'q6k', type: GgmlType.Q6_K, dims: [256], bytes: fixture(GgmlType.Q6_K, 1, 9) },
  ];
  const path = join(tmp, 'all.gguf');
  writeGguf(path, meta, tensors.map((t) => ({ name: t.name, type: t.type, dims: t.dims, data: () => [t.bytes] })));
  const h = readGgufHeader(path);
  assert.equal(h.alignment, 64);
  assert.equal(h.dataOffset % 64, 0);
  assert.deepEqual([...h.metadata.keys()], [...meta.keys()]);
  for (const [k, v] of meta) assert.deepEqual(h.metadata.get(k), v, k);
  const file = new GgufFile(h);
  for (const t of tensors) {
    const info = file.tensor(t.name);
    assert.equal(info.offset % 64, 0);
    assert.deepEqual(info.dims, t.dims);
    const back = new Uint8Array(info.bytes);
    file.read(info, 0, back);
    assert.ok(Buffer.from(back).equals(Buffer.from(t.bytes)), t.name);
  }
  file.close();
});

// ----------------------------------------------------------------------------------------------
// Corrupt files

/** Parses `bytes` as a GGUF file: null when it parses, else the error. */
function parseError(bytes: Uint8Array, name = 'bad.gguf'): unknown {
  const path = join(tmp, name);
  writeFileSync(path, bytes);
  try {
    readGgufHeader(path);
    return null;
  } catch (err) {
    return err;
  }
}

function assertRefused(bytes: Uint8Array, pattern: RegExp): void {
  const err = parseError(bytes);
  assert.ok(err instanceof FormatError, `expected a FormatError, got ${String(err)}`);
  assert.match(err.message, pattern);
  assert.equal(err.message.split('\n').length, 1);
}

/** A small valid file: two metadata entries and one F32 tensor, as bytes. */
function smallFile(): Uint8Array {
  const meta = new Map<string, GgufValue>([
    ['general.architecture', { type: ValueType.STRING, value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: ValueType.ARRAY, itemType: ValueType.STRING, value: ['a', 'b'] }],
  ]);
  const { header } = serializeGgufHeader(meta, [{ name: 'w', type: GgmlType.F32, dims: [4, 2] }]);
  return Buffer.concat([...header, new Uint8Array(32)]);
}

test('corrupt headers are refused with one line: magic, version, sizes, offsets, types, duplicates', () => {
  const good = smallFile();
  assert.equal(parseError(good), null);
  const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
  const patch = (fn: (b: Uint8Array, v: DataView) => void): Uint8Array => {
    const b = Uint8Array.from(good);
    fn(b, dv(b));
    return b;
  };
  assertRefused(patch((b) => { b[0] = 0x46; }), /not a GGUF file/);
  assertRefused(patch((_, v) => v.setUint32(4, 1, true)), /version 1 is not supported/);
  assertRefused(patch((_, v) => v.setUint32(4, 7, true)), /unsupported GGUF version 7/);
  assertRefused(patch((_, v) => v.setBigUint64(8, 2n ** 62n, true)), /tensor count is \d+, more than this file can hold/);
  assertRefused(patch((_, v) => v.setBigUint64(16, 2n ** 40n, true)), /metadata entry count/);
  // the first key's length (at byte 24)
  assertRefused(patch((_, v) => v.setBigUint64(24, 2n ** 63n, true)), /length of key of metadata entry 0 is \d+, more than this file can hold/);
  // the first value's type (after the 20-byte key)
  const typeAt = 24 + 8 + 'general.architecture'.length;
  assertRefused(patch((_, v) => v.setUint32(typeAt, 13, true)), /unknown value type 13/);
  // the array's count: key 2 is after the first entry (type 4 + string 8 + 5)
  const arrayAt = typeAt + 4 + 8 + 5;
  const countAt = arrayAt + 8 + 'tokenizer.ggml.tokens'.length + 4 + 4;
  assertRefused(patch((_, v) => v.setBigUint64(countAt, 2n ** 50n, true)), /item count of 'tokenizer.ggml.tokens' is \d+, more than this file can hold/);
  assertRefused(patch((_, v) => v.setUint32(countAt - 4, 9, true)), /array of arrays/);
  // a string's bytes that are not UTF-8
  assertRefused(patch((b) => { b[24 + 8] = 0xff; }), /not valid UTF-8/);
  // the tensor record: name 'w' then n_dims, dims, type, offset
  const tensorAt = good.indexOf(0x77, countAt + 8 + 2 * 9) ; // the byte 'w'
  assertRefused(patch((_, v) => v.setUint32(tensorAt + 1, 5, true)), /has 5 dimensions/);
  assertRefused(patch((_, v) => v.setBigUint64(tensorAt + 5, 2n ** 40n, true)), /more values than the file could hold/);
  assertRefused(patch((_, v) => v.setUint32(tensorAt + 21, 99, true)), /unknown tensor type 99/);
  assertRefused(patch((_, v) => v.setUint32(tensorAt + 21, GgmlType.Q8_0, true)), /rows of 4 values, not a whole number of 32-value blocks/);
  assertRefused(patch((_, v) => v.setBigUint64(tensorAt + 25, 8n, true)), /data offset 8 is not a multiple of the alignment 32/);
  assertRefused(patch((_, v) => v.setBigUint64(tensorAt + 25, 32n, true)), /truncated: tensor 'w'/);
  assertRefused(good.subarray(0, good.length - 1), /truncated: tensor 'w'/);
  // duplicates
  const dupKey = patch((b) => b.set(Buffer.from('general.architectur'), arrayAt + 8));
  dv(dupKey).setBigUint64(arrayAt, 19n, true);
  assert.ok(parseError(dupKey) instanceof FormatError);
  const twoTensors = serializeGgufHeader(new Map(), [{ name: 'w', type: 0, dims: [1] }, { name: 'w', type: 0, dims: [1] }]).header;
  assertRefused(Buffer.concat([...twoTensors, new Uint8Array(64)]), /tensor name 'w' appears twice/);
  const badAlign = serializeGgufHeader(new Map([['general.alignment', { type: ValueType.UINT32, value: 24 } as GgufValue]]), []).header;
  assertRefused(Buffer.concat(badAlign), /alignment 24 is not a power of two/);
});

test('fuzz: every truncation and random byte changes of a real header give a FormatError or a valid parse', needsRefdata, () => {
  const full = readFileSync(golden());
  const header = full.subarray(0, readGgufHeader(golden()).dataOffset);
  for (let n = 0; n < header.length; n += n < 64 ? 1 : 97) {
    const err = parseError(header.subarray(0, n), 'trunc.gguf');
    assert.ok(err instanceof FormatError, `truncated at ${n}: ${String(err)}`);
  }
  const next = rng(2024);
  for (let trial = 0; trial < 300; trial++) {
    const b = Uint8Array.from(header);
    const flips = 1 + (next() % 4);
    for (let k = 0; k < flips; k++) {
      const at = ((next() << 16) | (next() << 8) | next()) % b.length;
      b[at] = next();
    }
    const err = parseError(b, 'fuzz.gguf');
    assert.ok(err === null || err instanceof FormatError, `trial ${trial}: ${String(err)}`);
  }
});

// ----------------------------------------------------------------------------------------------
// The tokenizer in the metadata

interface Golden { cases: Array<{ text: string; ids: number[]; decoded: string }> }

function assertGoldenIds(tokenizerPath: string, goldenFile: string, vocab: number): void {
  const tok = loadTokenizer(tokenizerPath, vocab);
  assert.equal(tok.format, 'gguf');
  const g = JSON.parse(readFileSync(ref('golden', goldenFile), 'utf8')) as Golden;
  for (const c of g.cases) {
    assert.deepEqual(tok.encode(c.text), c.ids, JSON.stringify(c.text));
    assert.equal(tok.decode(c.ids), c.decoded, JSON.stringify(c.text));
  }
}

test('the reference GGUF\'s tokenizer gives SentencePiece\'s ids (tok512)', needsRefdata, () => {
  assertGoldenIds(golden(), 'tok512_sentencepiece.json', 512);
});

test('tokenizer metadata written from tok512.bin, tok512.model and Llama 2\'s tokenizer.model reads back to SentencePiece\'s ids', needsRefdata, () => {
  const cases: Array<[string, string, number]> = [
    [ref('data', 'models', 'tok512.bin'), 'tok512_sentencepiece.json', 512],
    [ref('data', 'models', 'tok512.model'), 'tok512_sentencepiece.json', 512],
    [ref('data', 'tokenizers', 'tokenizer.model'), 'tok32000_sentencepiece.json', 32000],
  ];
  for (const [source, goldenFile, vocab] of cases) {
    const tok = loadTokenizer(source, vocab);
    const path = join(tmp, `tok-${vocab}-${tok.format}.gguf`);
    writeGguf(path, new Map(ggufTokenizerMetadata(tok.vocabulary)), []);
    const v = vocabularyFromGguf(readGgufHeader(path));
    assert.deepEqual(v.pieces, tok.vocabulary.pieces);
    assert.deepEqual(v.types, tok.vocabulary.types);
    assert.deepEqual(v.normalizer, tok.vocabulary.normalizer);
    assertGoldenIds(path, goldenFile, vocab);
  }
});

test('a GGUF file without a llama tokenizer is refused with one line, also by the CLI', () => {
  const path = join(tmp, 'gpt2-tok.gguf');
  writeGguf(path, new Map<string, GgufValue>([['tokenizer.ggml.model', { type: ValueType.STRING, value: 'gpt2' }]]), []);
  assert.throws(() => loadTokenizer(path), /tokenizer 'gpt2' is not supported/);
  const r = spawnSync(process.execPath, [cliPath, 'encode', '-z', path, 'hi'], { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /gpt2-tok\.gguf: tokenizer 'gpt2' is not supported/);
  const trunc = join(tmp, 'trunc-tok.gguf');
  writeFileSync(trunc, smallFile().subarray(0, 40));
  const r2 = spawnSync(process.execPath, [cliPath, 'encode', '-z', trunc, 'hi'], { encoding: 'utf8' });
  assert.notEqual(r2.status, 0);
  assert.equal(r2.stderr.trimEnd().split('\n').length, 1, r2.stderr);
  assert.match(r2.stderr, /trunc-tok\.gguf: metadata entry count is 2, more than this file can hold/);
});
