// The fused forward pass (assembly/forward.ts: one WebAssembly call per token) against the
// kernel-by-kernel forward pass of src/infer/forward.ts on the same kernels: bit-identical logits,
// float32 and int8, one thread and two. (Both are checked against PyTorch in forward.test.ts.)
// Likewise the threads' grouped products (Wq, Wk, Wv and W1, W3 in one hand-off) against separate
// calls, on a model large enough to be split over threads.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Transformer } from '../src/infer/forward.js';
import { loadTransformer } from '../src/infer/load.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readCheckpoint, readCheckpointAsQ8, writeCheckpoint } from '../src/model/checkpoint.js';
import { parameterCount, weightsView } from '../src/model/weights.js';
import type { ModelConfig } from '../src/model/config.js';
import { createKernels } from '../src/kernels/kernel-set.js';
import { createThreadedKernels } from '../src/kernels/threads.js';
import { wasmSupported } from '../src/kernels/wasm.js';
import { needsRefdata, ref } from './refdata.js';

const skip = !wasmSupported() && 'no WebAssembly SIMD';

test('fused forward = kernel-by-kernel forward, bit for bit (stories260K, fp32 and int8 read as cached and streamed, 1 and 2 threads)', { ...needsRefdata, skip: needsRefdata.skip || skip }, async () => {
  for (const threads of [1, 2]) {
    const kernels = await createKernels({ kind: 'wasm', threads });
    try {
      for (const [quantize, streamWeights] of [['none', false], ['q8', false], ['q8', true]] as const) {
        const loaded = loadTransformer(ref('data', 'models', 'stories260K.bin'), kernels, { quantize });
        const fused = new Transformer(loaded.weights, kernels, { streamWeights });
        const stepwise = new Transformer(loaded.weights, kernels, { fused: false, streamWeights });
        assert.ok(fused.isFused, `${quantize} × ${threads}: a model this small runs fused`);
        assert.ok(!stepwise.isFused);
        let token = 1;
        for (let pos = 0; pos < 300; pos++) {
          const a = fused.forward(token, pos);
          const b = stepwise.forward(token, pos);
          assert.deepEqual(a, b, `${quantize} × ${threads}, position ${pos}`);
          token = (pos * 7919 + 13) % a.length;
        }
      }
    } finally {
      await kernels.close();
    }
  }
});

test('a config\'s norm ε and rope θ reach every path: fused = kernel by kernel = the js kernels, and they differ from the defaults', { ...needsRefdata, skip: needsRefdata.skip || skip }, async () => {
  const kernels = await createKernels({ kind: 'wasm', threads: 1 });
  try {
    const file = readCheckpoint(ref('data', 'models', 'stories260K.bin'), { allocate: (n) => kernels.allocate(n) });
    const base = file.format === 'v2' ? assert.fail() : file.weights;
    const custom = weightsView({ ...base.config, normEps: 1e-6, ropeTheta: 500000 }, base.data);
    const fused = new Transformer(custom, kernels);
    const stepwise = new Transformer(custom, kernels, { fused: false });
    const js = new Transformer(weightsView(custom.config, Float32Array.from(base.data)));
    const plain = new Transformer(base, kernels);
    assert.ok(fused.isFused);
    let token = 1, differs = 0;
    for (let pos = 0; pos < 100; pos++) {
      const a = fused.forward(token, pos);
      assert.deepEqual(stepwise.forward(token, pos), a, `position ${pos}`);
      const b = js.forward(token, pos);
      for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) < 1e-4, `js kernels, position ${pos}, logit ${i}`);
      if (Math.abs(plain.forward(token, pos)[7]! - a[7]!) > 1e-4) differs++;
      token = (pos * 7919 + 13) % a.length;
    }
    assert.ok(differs > 50, `θ and ε change the logits (${differs} of 100 positions)`);
  } finally {
    await kernels.close();
  }
});

test('grouped products on the threads = separate products, bit for bit (fp32 and int8 read as cached and as streamed, 2 and 3 threads)', { skip }, async () => {
  // every projection has ≥ 2^15 multiply-adds, so the threads split (and group) them; the hidden
  // width 520 is not a multiple of the int8 group 64, so W2's Q8_0 groups straddle rows
  const c: ModelConfig = { dim: 256, hiddenDim: 520, nLayers: 2, nHeads: 8, nKvHeads: 4, vocabSize: 600, seqLen: 64, sharedClassifier: true };
  for (const threads of [2, 3]) {
    const kernels = await createThreadedKernels({ threads });
    try {
      const data = kernels.allocate(parameterCount(c));
      let seed = 7;
      for (let i = 0; i < data.length; i++) {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        data[i] = ((seed >>> 8) / 16777216 - 0.5) * 0.2;
      }
      const fp32 = weightsView(c, data);
      const separate = { ...kernels, groupMatmuls: undefined };
      const q8 = toQ8(c, data, kernels);
      for (const [weights, streamWeights] of [[fp32, false], [q8, false], [q8, true]] as const) {
        let groups = 0;
        const counting = { ...kernels, groupMatmuls: (...a: Parameters<typeof kernels.groupMatmuls & {}>) => {
          const run = kernels.groupMatmuls!(...a);
          if (run !== undefined) groups++;
          return run;
        } };
        const grouped = new Transformer(weights, counting, { fused: false, streamWeights });
        const single = new Transformer(weights, separate, { fused: false, streamWeights });
        assert.equal(groups, 2 * c.nLayers, 'q/k/v and W1/W3 grouped in every layer');
        let token = 1;
        for (let pos = 0; pos < c.seqLen; pos++) {
          const a = Float32Array.from(grouped.forward(token, pos));
          assert.deepEqual(single.forward(token, pos), a, `${threads} threads, position ${pos}`);
          token = (pos * 7919 + 13) % c.vocabSize;
        }
      }
    } finally {
      await kernels.close();
    }
  }
});

/** The weights quantized to Q8_0 (group 64), through the checkpoint writer and the streaming reader. */
function toQ8(c: ModelConfig, data: Float32Array, kernels: { allocate(n: number): Float32Array; allocateInt8(n: number): Int8Array }) {
  const file = join(mkdtempSync(join(tmpdir(), 'llama2ts-')), 'm.bin');
  writeCheckpoint(file, weightsView(c, Float32Array.from(data)), 'v1');
  return readCheckpointAsQ8(file, 64, { int8: (n) => kernels.allocateInt8(n), float32: (n) => kernels.allocate(n) });
}

test('advance (a prompt token: KV cache only, no classifier) leaves the same state as forward, fused and kernel by kernel', { ...needsRefdata, skip: needsRefdata.skip || skip }, async () => {
  const kernels = await createKernels({ kind: 'wasm', threads: 2 });
  try {
    const loaded = loadTransformer(ref('data', 'models', 'stories260K.bin'), kernels);
    for (const fused of [true, false]) {
      const every = new Transformer(loaded.weights, kernels, { fused });
      const skipping = new Transformer(loaded.weights, kernels, { fused });
      let token = 1;
      for (let pos = 0; pos < 200; pos++) {
        const a = every.forward(token, pos);
        if (pos % 5 === 4) assert.deepEqual(skipping.forward(token, pos), a, `fused ${fused}, position ${pos}`);
        else skipping.advance(token, pos);
        token = (pos * 7919 + 13) % a.length;
      }
    }
  } finally {
    await kernels.close();
  }
});

test('worker threads closed before any command was published exit (no hang)', { skip }, async () => {
  for (let i = 0; i < 5; i++) {
    const k = await createThreadedKernels({ threads: 2 });
    await k.close();
  }
});
