// Sessions decoding together (src/infer/decode-batch.ts): a server's requests, their generators
// advanced in turn, write exactly what each writes alone — float32 and int8, one thread and two —
// while the forward passes are shared (the test fails if no token was ever batched).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Transformer } from '../src/infer/forward.js';
import { generateFromIds, type GenerationRequest } from '../src/infer/generate.js';
import { createKernels } from '../src/kernels/kernel-set.js';
import { wasmSupported } from '../src/kernels/wasm.js';
import { quantizeWeights } from '../src/model/checkpoint.js';
import type { ModelConfig } from '../src/model/config.js';
import { parameterCount, weightsView } from '../src/model/weights.js';
import { loadTokenizer } from '../src/tokenizer/index.js';
import { needsRefdata, ref } from './refdata.js';

const skip = !wasmSupported() && 'no WebAssembly SIMD';

test('sessions decoding together write what each writes alone (a random 3.3M-parameter model, GQA, fp32 and int8, 1 and 2 threads)', { ...needsRefdata, skip: needsRefdata.skip || skip }, async () => {
  const tok = loadTokenizer(ref('data', 'tokenizers', 'tokenizer.bin'), 32000);
  const c: ModelConfig = { dim: 96, hiddenDim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, vocabSize: 32000, seqLen: 256, sharedClassifier: true };
  const prompts = ['Once upon a time', 'Lily and Ben', 'The cat sat on the', 'One day, a little girl named Sue'];
  const requests: GenerationRequest[] = prompts.map((p, i) => ({
    promptIds: tok.encode(p, { bos: true, eos: false }), maxTokens: 60 + 17 * i, stopTokens: [],
    ...(i % 2 === 0 ? { temperature: 0 } : { temperature: 1, topp: 0.9, seed: 7 + i }),
  }));
  const drain = (gen: Generator<string, unknown, void>): string => {
    let s = '';
    for (let r = gen.next(); r.done !== true; r = gen.next()) s += r.value;
    return s;
  };
  for (const threads of [1, 2]) {
    const kernels = await createKernels({ kind: 'wasm', threads });
    try {
      const data = kernels.allocate(parameterCount(c));
      let seed = 3;
      for (let i = 0; i < data.length; i++) {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        data[i] = ((seed >>> 8) / 16777216 - 0.5) * 0.3;
      }
      const f32 = weightsView(c, data);
      f32.rmsAtt.fill(1); f32.rmsFfn.fill(1); f32.rmsFinal.fill(1);
      const q8 = quantizeWeights(f32, 32, { float32: (n) => kernels.allocate(n), int8: (n) => kernels.allocateInt8(n) });
      for (const [name, weights] of [['fp32', f32], ['int8', q8]] as const) {
        const model = new Transformer(weights, kernels);
        const alone = requests.map((r) => drain(generateFromIds(model.session(), tok, r)));
        const sessions = requests.map(() => model.session());
        const before = model.decodeBatches.tokens;
        // the server's way: each request one position at a time, in turn
        const gens = requests.map((r, i) => generateFromIds(sessions[i]!, tok, r));
        const texts = requests.map(() => '');
        for (let live = gens.length; live > 0;) {
          live = 0;
          gens.forEach((g, i) => {
            const r = g.next();
            if (r.done !== true) { texts[i] += r.value; live++; }
          });
        }
        assert.deepEqual(texts, alone, `${name}, ${threads} thread(s)`);
        const batched = model.decodeBatches.tokens - before;
        assert.ok(batched > requests.length * 40, `${name}, ${threads} thread(s): only ${batched} tokens decoded in batches`);
      }
    } finally {
      await kernels.close();
    }
  }
});
