// The fused forward pass (assembly/forward.ts: one WebAssembly call per token) against the
// kernel-by-kernel forward pass of src/infer/forward.ts on the same kernels: bit-identical logits,
// float32 and int8, one thread and two. (Both are checked against PyTorch in forward.test.ts.)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Transformer, loadTransformer } from '../src/infer/forward.js';
import { createKernels } from '../src/kernels/kernel-set.js';
import { createThreadedKernels } from '../src/kernels/threads.js';
import { wasmSupported } from '../src/kernels/wasm.js';
import { needsRefdata, ref } from './refdata.js';

const skip = !wasmSupported() && 'no WebAssembly SIMD';

test('fused forward = kernel-by-kernel forward, bit for bit (stories260K, fp32 and int8, 1 and 2 threads)', { ...needsRefdata, skip: needsRefdata.skip || skip }, async () => {
  for (const threads of [1, 2]) {
    const kernels = await createKernels({ kind: 'wasm', threads });
    try {
      for (const quantize of ['none', 'q8'] as const) {
        const fused = loadTransformer(ref('data', 'models', 'stories260K.bin'), kernels, { quantize });
        const stepwise = new Transformer(fused.weights, kernels, { fused: false });
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

test('worker threads closed before any command was published exit (no hang)', { skip }, async () => {
  for (let i = 0; i < 5; i++) {
    const k = await createThreadedKernels({ threads: 2 });
    await k.close();
  }
});
