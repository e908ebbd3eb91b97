// Batched prefill (src/infer/prefill.ts): a prompt fed a block of tokens at a time through matrix ×
// matrix products leaves the KV cache, and gives the logits, that feeding it token by token does —
// within float32 rounding for float32 weights (the products sum in another order), bit for bit for
// int8 ones — on the js kernels, WebAssembly on
// one thread and on two, for stories260K and a random model with the 15M shape's widths; the block
// attention kernel against the reference attention of each row.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Transformer } from '../src/infer/forward.js';
import { loadTransformer } from '../src/infer/load.js';
import { createKernels, type KernelSet } from '../src/kernels/kernel-set.js';
import { jsKernels } from '../src/kernels/js.js';
import { createThreadedKernels } from '../src/kernels/threads.js';
import { wasmSupported } from '../src/kernels/wasm.js';
import { blockBufferFloats, prefillRows } from '../src/infer/prefill.js';
import type { ModelConfig } from '../src/model/config.js';
import { quantizeWeights } from '../src/model/checkpoint.js';
import { parameterCount, weightsView } from '../src/model/weights.js';
import { needsRefdata, ref } from './refdata.js';

const skip = !wasmSupported() && 'no WebAssembly SIMD';

/** max |a − b| / (1 + max |b|) */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / (1 + m);
}

function promptOf(n: number, vocab: number): number[] {
  return Array.from({ length: n }, (_, i) => (i === 0 ? 1 : (i * 7919 + 13) % vocab));
}

/**
 * Feeds `prompt` at `pos0` by prefill (after `pos0` tokens fed one by one) into one engine and
 * token by token into another; compares the caches and the logits of the next token, and of every
 * prompt token (prefill with logits).
 */
function comparePrefill(a: Transformer, b: Transformer, prompt: number[], pos0: number, what: string, tol: number): void {
  for (let pos = 0; pos < pos0; pos++) {
    a.advance(prompt[pos]!, pos);
    b.advance(prompt[pos]!, pos);
  }
  const rest = prompt.slice(pos0);
  const each: Float32Array[] = [];
  a.prefill(rest, pos0, (i, logits) => each.push(Float32Array.from(logits)));
  assert.equal(each.length, rest.length, `${what}: logits of every prompt token`);
  rest.forEach((t, i) => {
    const want = b.forward(t, pos0 + i);
    const d = relDiff(each[i]!, want);
    assert.ok(d <= tol, `${what}: logits of prompt token ${i}: relative difference ${d.toExponential(2)}`);
  });
  const end = prompt.length;
  const kv = a.state.keyCache.length / a.config.nLayers / a.config.seqLen;
  for (let l = 0; l < a.config.nLayers; l++) {
    const rows = (c: Float32Array) => c.subarray(l * a.config.seqLen * kv, (l * a.config.seqLen + end) * kv);
    assert.ok(relDiff(rows(a.state.keyCache), rows(b.state.keyCache)) <= tol, `${what}: keys of layer ${l}`);
    assert.ok(relDiff(rows(a.state.valueCache), rows(b.state.valueCache)) <= tol, `${what}: values of layer ${l}`);
  }
  // and the prefill without logits leaves the same cache as the one with them
  const c = a.session();
  for (let pos = 0; pos < pos0; pos++) c.advance(prompt[pos]!, pos);
  c.prefill(rest, pos0);
  assert.deepEqual(c.state.keyCache.subarray(0, end * kv), a.state.keyCache.subarray(0, end * kv), `${what}: prefill with and without logits`);
  const next = (end * 31) % a.config.vocabSize;
  const d = relDiff(c.forward(next, end), b.forward(next, end));
  assert.ok(d <= tol, `${what}: logits after the prompt: relative difference ${d.toExponential(2)}`);
}

test('prefill = token by token within float32 rounding: stories260K float32 and int8, js and wasm on 1 and 2 threads, prompts shorter and longer than a block', { ...needsRefdata, skip: needsRefdata.skip || skip }, async () => {
  const sets: KernelSet[] = [await createKernels({ kind: 'js' }), await createKernels({ kind: 'wasm', threads: 1 }), await createKernels({ kind: 'wasm', threads: 2 })];
  try {
    for (const k of sets) {
      for (const quantize of ['none', 'q8'] as const) {
        // (int8: bit for bit; group 64, so w2's rows of 172 values go row by row, the other products as blocks)
        const base = loadTransformer(ref('data', 'models', 'stories260K.bin'), k, { quantize });
        // (the long prompts: one block of the default size, and three blocks of 128)
        const blocked = new Transformer(base.weights, k, { prefillBlock: 128 });
        for (const [n, pos0, engine] of [[5, 0, base], [300, 0, base], [2 * 128 + 29, 0, blocked], [40, 17, blocked], [3, 9, base]] as const) {
          const a = engine.session(), b = base.session();
          comparePrefill(a, b, promptOf(n + pos0, 512), pos0, `${k.name} ${quantize}, ${n} tokens after ${pos0}`, quantize === 'q8' ? 0 : 2e-5);
        }
      }
    }
  } finally {
    for (const k of sets) await k.close();
  }
});

test('prefill = token by token on the 15M shape\'s widths (dim 288, hidden 768, 6 heads; random weights), float32 and int8, wasm on 1 and 2 threads', { skip }, async () => {
  const c: ModelConfig = { dim: 288, hiddenDim: 768, nLayers: 2, nHeads: 6, nKvHeads: 3, vocabSize: 1000, seqLen: 160, sharedClassifier: true };
  for (const threads of [1, 2]) {
    const k = await createThreadedKernels({ threads });
    try {
      const data = k.allocate(parameterCount(c));
      let s = 7;
      for (let i = 0; i < data.length; i++) {
        s = (Math.imul(s, 1103515245) + 12345) >>> 0;
        data[i] = ((s >>> 8) / 16777216 - 0.5) * 0.2;
      }
      const w = weightsView(c, data);
      w.rmsAtt.fill(1); w.rmsFfn.fill(1); w.rmsFinal.fill(1);
      const a = new Transformer(w, k), b = new Transformer(w, k);
      comparePrefill(a, b, promptOf(150, c.vocabSize), 10, `wasm×${threads}`, 2e-5);
      // int8 (group 32, as a 15M model quantizes): every product as a block, bit for bit
      const q8 = quantizeWeights(w, 32, { float32: (n) => k.allocate(n), int8: (n) => k.allocateInt8(n) });
      comparePrefill(new Transformer(q8, k), new Transformer(q8, k), promptOf(150, c.vocabSize), 10, `wasm×${threads} int8`, 0);
    } finally {
      await k.close();
    }
  }
});

test('block attention (two matrix products per head and tile of rows; heads of 8: eight rows at a time, the scores transposed) = the reference attention of each row, and the same bits on 1 and 3 threads; exact = the one-position kernel bit for bit', { skip }, async () => {
  const shapes = [
    { nHeads: 6, nKvHeads: 2, headSize: 48, kvDim: 96, seqLen: 200 },
    { nHeads: 8, nKvHeads: 4, headSize: 8, kvDim: 32, seqLen: 120 }, // stories260K's heads
    // scores spread over hundreds (the exponentials down to their clamp) and a head size not a multiple of 4
    { nHeads: 4, nKvHeads: 4, headSize: 10, kvDim: 40, seqLen: 125, amplitude: 9 },
    // and heads of 8 (their own kernel: eight rows at a time, the scores transposed) the same way
    { nHeads: 8, nKvHeads: 4, headSize: 8, kvDim: 32, seqLen: 121, amplitude: 9 },
  ];
  for (const shape of shapes) {
    const dim = shape.nHeads * shape.headSize;
    const pos = 70, count = 50; // two tiles of query rows
    const results: Float32Array[] = [];
    for (const threads of [1, 3]) {
      const k = await createThreadedKernels({ threads });
      try {
        const fill = (a: Float32Array, f: number): Float32Array => {
          for (let i = 0; i < a.length; i++) a[i] = Math.sin(i * f) * 0.8 * (shape.amplitude ?? 1);
          return a;
        };
        const kc = fill(k.allocate(shape.seqLen * shape.kvDim), 0.37), vc = fill(k.allocate(shape.seqLen * shape.kvDim), 0.11);
        const q = fill(k.allocate(count * dim), 0.23), out = k.allocate(count * dim), att = k.allocate(shape.nHeads * shape.seqLen);
        k.attentionBlock(out, q, kc, vc, att, pos, count, shape);
        const want = new Float32Array(count * dim);
        jsKernels.attentionBlock(want, Float32Array.from(q), Float32Array.from(kc), Float32Array.from(vc), new Float32Array(shape.nHeads * shape.seqLen), pos, count, shape);
        const d = relDiff(out, want);
        assert.ok(d < 1e-5, `head size ${shape.headSize}, ${threads} threads: relative difference ${d.toExponential(2)}`);
        results.push(Float32Array.from(out));
        // exact: the one-position kernel's arithmetic, row by row, bit for bit
        k.attentionBlock(out, q, kc, vc, att, pos, count, shape, true);
        const row = k.allocate(dim), qRow = k.allocate(dim);
        for (let i = 0; i < count; i++) {
          qRow.set(q.subarray(i * dim, (i + 1) * dim));
          k.attention(row, qRow, kc, vc, att, pos + i, shape);
          assert.deepEqual(out.subarray(i * dim, (i + 1) * dim), row, `exact, row ${i} (${threads} threads)`);
        }
        assert.throws(() => k.attentionBlock(out, q, kc, vc, att, shape.seqLen - 10, 50, shape), RangeError, 'a block past the context window');
      } finally {
        await k.close();
      }
    }
    assert.deepEqual(results[1], results[0], `head size ${shape.headSize}: 3 threads = 1 thread`);
  }
});

test('block rows: the whole context up to 512 rows, fewer for wide models (buffers within 32 MiB), never fewer than 128 unless the context is', () => {
  assert.equal(prefillRows(288, 768, 288, 256), 256); // 15M shape: its context
  assert.equal(prefillRows(64, 172, 32, 512), 512); // stories260K
  assert.equal(prefillRows(64, 172, 32, 100), 100);
  const sevenB = prefillRows(4096, 11008, 4096, 4096);
  assert.ok(sevenB >= 128 && sevenB < 512 && 4 * blockBufferFloats(4096, 11008, 4096, sevenB) <= 32 << 20, `7B: ${sevenB} rows`);
});
