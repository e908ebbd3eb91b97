// A model spread over several WebAssembly memories (src/kernels/wasm.ts, src/infer/placement.ts):
// forced with a small memoryBytes, the logits are bit-identical to the same model in one memory —
// float32 and Q8_0, one thread and two, fused and kernel by kernel — and the worker threads follow
// memories added after they started.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transformer } from '../src/infer/forward.js';
import { loadTransformer } from '../src/infer/load.js';
import { placeModel } from '../src/infer/placement.js';
import { createKernels } from '../src/kernels/kernel-set.js';
import { wasmSupported } from '../src/kernels/wasm.js';
import { writeCheckpoint } from '../src/model/checkpoint.js';
import type { ModelConfig } from '../src/model/config.js';
import { initWeights } from '../src/train/init.js';
import { needsRefdata, ref } from './refdata.js';

const skip = !wasmSupported() && 'no WebAssembly SIMD';
const tmp = mkdtempSync(join(tmpdir(), 'llama2ts-memories-'));

/** Feeds the same tokens to every engine (forward, with an advance now and then) and checks equal logits. */
function sameLogits(engines: Transformer[], positions: number, what: string): void {
  let token = 1;
  for (let pos = 0; pos < positions; pos++) {
    if (pos % 5 === 3) {
      for (const e of engines) e.advance(token, pos);
    } else {
      const want = Float32Array.from(engines[0]!.forward(token, pos));
      for (let i = 1; i < engines.length; i++) assert.deepEqual(engines[i]!.forward(token, pos), want, `${what}: engine ${i}, position ${pos}`);
    }
    token = (pos * 7919 + 13) % engines[0]!.config.vocabSize;
  }
}

test('stories260K over 3+ memories = in one memory, bit for bit: fp32 and Q8_0, fused and kernel by kernel, 1 and 2 threads', { ...needsRefdata, skip: needsRefdata.skip || skip }, async () => {
  const model = ref('data', 'models', 'stories260K.bin');
  for (const threads of [1, 2]) {
    const one = await createKernels({ kind: 'wasm', threads });
    try {
      for (const [quantize, limit] of [['none', 768 << 10], ['q8', 512 << 10]] as const) {
        const many = await createKernels({ kind: 'wasm', threads, memoryBytes: limit });
        try {
          const options = { quantize, contextLength: 16, sessions: 2 };
          const whole = loadTransformer(model, one, options);
          const spread = loadTransformer(model, many, options);
          assert.equal(whole.memories, 1);
          assert.ok(spread.memories >= 3, `${quantize}: ${spread.memories} memories of ${limit} bytes`);
          assert.ok(spread.isFused, 'each memory runs its layers in one call');
          const stepwise = new Transformer(spread.weights, many, { fused: false, contextLength: 16 });
          sameLogits([whole, spread, stepwise], 16, `${quantize} × ${threads}`);
        } finally {
          await many.close();
        }
      }
    } finally {
      await one.close();
    }
  }
});

test('a model large enough for the worker threads over 3 memories = one memory; workers started before a memory is added follow it', { skip }, async () => {
  // every projection is split between the threads; hidden 520 is not a multiple of the int8 group
  // 64 (W2's groups straddle rows); an unshared classifier puts the embedding in memory 0
  const c: ModelConfig = { dim: 256, hiddenDim: 520, nLayers: 6, nHeads: 8, nKvHeads: 4, vocabSize: 600, seqLen: 48, sharedClassifier: false };
  const file = join(tmp, 'm.bin');
  writeCheckpoint(file, initWeights(c, 3), 'v1');
  for (const threads of [1, 2]) {
    const one = await createKernels({ kind: 'wasm', threads });
    try {
      for (const [quantize, limit] of [['none', 8 << 20], ['q8', 3 << 20]] as const) {
        const many = await createKernels({ kind: 'wasm', threads, memoryBytes: limit });
        try {
          // a product split between the threads in memory 0 starts the workers …
          const w = many.allocate(256 * 256), x = many.allocate(256), o = many.allocate(256);
          w.forEach((_, i) => (w[i] = ((i * 7) % 13) - 6));
          x.forEach((_, i) => (x[i] = (i % 5) - 2));
          many.matmul(o, x, w, 256, 256);
          const before = Float32Array.from(o);
          // … then a model spread over more memories: the workers restart with every memory
          const whole = loadTransformer(file, one, { quantize, sessions: 2 });
          const spread = loadTransformer(file, many, { quantize, sessions: 2 });
          assert.ok(spread.memories >= 3, `${quantize}: ${spread.memories} memories`);
          const stepwise = new Transformer(spread.weights, many, { fused: false });
          sameLogits([whole, spread, stepwise], c.seqLen, `${quantize} × ${threads}`);
          // a prompt fed as blocks (prefill), every token's logits: the same across memories too
          const prompt = Array.from({ length: 30 }, (_, i) => (i * 37 + 1) % c.vocabSize);
          const seen: Float32Array[] = [];
          whole.prefill(prompt, 0, (_, logits) => seen.push(Float32Array.from(logits)));
          spread.prefill(prompt, 0, (i, logits) => assert.deepEqual(logits, seen[i], `${quantize} × ${threads}: prefill token ${i}`));
          assert.deepEqual(spread.forward(5, 30), whole.forward(5, 30), `${quantize} × ${threads}: after the prefill`);
          o.fill(0);
          many.matmul(o, x, w, 256, 256);
          assert.deepEqual(o, before, 'memory 0 after the restart');
        } finally {
          await many.close();
        }
      }
    } finally {
      await one.close();
    }
  }
});

test('one call\'s arrays must share a memory; a part larger than a memory is refused before loading', { skip }, async () => {
  const k = await createKernels({ kind: 'wasm', threads: 1, memoryBytes: 1 << 20 });
  try {
    const a = k.allocate(16, 0), b = k.allocate(16, 1);
    assert.equal(k.memoryOf!(a), 0);
    assert.equal(k.memoryOf!(b), 1);
    assert.throws(() => k.add(a, b, 16), /kernel arguments in two memories \(0 and 1\)/);
    // a 32000 × 128 float32 classifier and its logits (17.3 MiB) cannot fit a 1 MiB memory
    const c: ModelConfig = { dim: 128, hiddenDim: 64, nLayers: 1, nHeads: 8, nKvHeads: 8, vocabSize: 32000, seqLen: 8, sharedClassifier: true };
    assert.throws(() => placeModel(c, 0, k), /the classifier takes 17\.3 MiB, more than one WebAssembly memory holds \(1 MiB/);
  } finally {
    await k.close();
  }
});

test('placement: memory 0 first, whole layers per memory, the classifier with the last layers, and one memory when it fits', () => {
  const c: ModelConfig = { dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 16, sharedClassifier: true };
  assert.deepEqual(placeModel(c, 0, {}), { layers: [0, 0, 0, 0, 0], embedding: 0, head: 0, memories: 1 });
  const mib = 2 ** 20;
  const fake = (bytes: number) => ({ memoryBytes: bytes, memoryAvailable: () => bytes - 150_000 });
  assert.deepEqual(placeModel(c, 0, fake(2 * mib)).memories, 1);
  assert.deepEqual(placeModel(c, 0, fake(0.8 * mib)), { layers: [0, 0, 1, 1, 2], embedding: 2, head: 2, memories: 3 }, 'a shared classifier is the embedding');
  assert.deepEqual(placeModel({ ...c, sharedClassifier: false }, 0, fake(0.9 * mib)), { layers: [0, 0, 1, 1, 1], embedding: 0, head: 2, memories: 3 });
  // more sessions leave room for more KV caches and buffers: fewer layers per memory
  assert.equal(placeModel(c, 0, fake(1.5 * mib), 4).memories, 2);
});
