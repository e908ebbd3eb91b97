// Loading streams: peak RSS while a BF16 Hugging Face folder loads as float32 stays within the
// float32 weights + 64 MiB for the whole process (issue 12's bound; `node dist/bench/load-rss.js`
// measures it on a ~100 MB model). Here a 29 MB model, each load in its own process.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeModels, measureLoad } from '../bench/load-rss.js';
import { withModelSource } from '../src/model/open.js';
import { parameterCount } from '../src/model/weights.js';

test('peak RSS loading a BF16 folder as float32 ≤ float32 weights + 64 MiB (js and wasm kernels)', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'llama2ts-load-rss-'));
  const { hf } = makeModels(dir, ['--dim', '256', '--layers', '4', '--heads', '4', '--hidden-dim', '688', '--vocab', '16000', '--seq-len', '64']);
  const weights = 4 * parameterCount(withModelSource(hf, (s) => s.config));
  for (const kernels of ['js', 'wasm'] as const) {
    const m = measureLoad(hf, kernels);
    t.diagnostic(`${kernels}: peak ${(m.peakBytes / 2 ** 20).toFixed(1)} MiB, weights ${(weights / 2 ** 20).toFixed(1)} MiB, before loading ${(m.baseBytes / 2 ** 20).toFixed(1)} MiB`);
    assert.ok(m.peakBytes <= weights + 64 * 2 ** 20, `${kernels}: peak ${m.peakBytes} > weights ${weights} + 64 MiB`);
  }
});
