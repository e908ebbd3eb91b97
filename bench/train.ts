// Training throughput (tokens/s, float32) on the two reference configurations of issue 5:
//   260K: dim 64, 5 layers, 8 heads, 4 kv heads, multiple_of 4, vocab 512, batch 16 × 256
//   15M:  dim 288, 6 layers, 6 heads, 6 kv heads, multiple_of 32, vocab 32000, batch 8 × 256
// One iteration = zero_grad, forward, backward, AdamW update (with gradient clipping), on random
// tokens (the speed does not depend on the data). PyTorch 1.13 (OpenBLAS, 2 threads) on this
// machine class: about 4,460 tok/s (260K) and 1,040 tok/s (15M).
//
//   node dist/bench/train.js [--kernels js|wasm] [--threads N] [--iters N] [--only 260K|15M]

import { parseFlags, intFlag, stringFlag } from '../src/cli/flags.js';
import { type ModelConfig, hiddenDimFor } from '../src/model/config.js';
import { initWeights } from '../src/train/init.js';
import { jsMatmul } from '../src/train/layers.js';
import { buildTrainModel } from '../src/train/model.js';
import { createTrainPool, engineFromKernelSet, type TrainEngine } from '../src/train/pool.js';
import { Rng } from '../src/train/rng.js';

interface BenchCase {
  readonly name: string;
  readonly config: ModelConfig;
  readonly B: number;
  readonly pytorch: number;
}

const CASES: BenchCase[] = [
  { name: '260K', B: 16, pytorch: 4460, config: { dim: 64, hiddenDim: hiddenDimFor(64, 4), nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 256, sharedClassifier: true } },
  { name: '15M', B: 8, pytorch: 1040, config: { dim: 288, hiddenDim: hiddenDimFor(288, 32), nLayers: 6, nHeads: 6, nKvHeads: 6, vocabSize: 32000, seqLen: 256, sharedClassifier: true } },
];

export interface TrainBenchResult {
  readonly name: string;
  readonly tokPerSec: number;
  readonly msPerIter: number;
  readonly pytorch: number;
}

export async function benchTrain(opts: { kernels?: 'js' | 'wasm'; threads?: number; iters?: number; only?: string } = {}): Promise<TrainBenchResult[]> {
  let engine: TrainEngine = { matmul: jsMatmul, threads: 1 };
  let close = async (): Promise<void> => {};
  if (opts.kernels !== 'js') {
    const { createKernels } = await import('../src/kernels/kernel-set.js');
    const set = await createKernels({ ...(opts.kernels ? { kind: opts.kernels } : {}), threads: opts.threads ?? 2 });
    engine = engineFromKernelSet(set);
    close = () => set.close();
  }
  const results: TrainBenchResult[] = [];
  try {
    for (const c of CASES) {
      if (opts.only !== undefined && opts.only !== c.name) continue;
      const T = c.config.seqLen;
      const parts = engine.shared && engine.threads > 1 ? engine.threads : 1;
      const model = buildTrainModel(c.config, initWeights(c.config, 1).data, {
        B: c.B, T, kernels: engine.matmul, parts, ...(engine.allocate ? { allocate: engine.allocate } : {}),
      });
      const pool = parts > 1 ? await createTrainPool(engine.shared!, model) : undefined;
      model.setParallel(pool);
      const rng = new Rng(1);
      const x = new Int32Array(c.B * T).map(() => rng.nextInt(c.config.vocabSize));
      const y = new Int32Array(c.B * T).map(() => rng.nextInt(c.config.vocabSize));
      const hyper = { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01 };
      const step = (): void => {
        model.zeroGrad();
        model.forward(x, y);
        model.backward();
        model.update(1e-3, hyper, 1.0);
      };
      step(); // warm-up (JIT, first touch of the buffers)
      const iters = opts.iters ?? 5;
      const times: number[] = [];
      for (let i = 0; i < iters; i++) {
        const t0 = performance.now();
        step();
        times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      const ms = times[Math.floor(times.length / 2)]!;
      results.push({ name: c.name, msPerIter: ms, tokPerSec: (c.B * T) / (ms / 1000), pytorch: c.pytorch });
      await pool?.close();
    }
  } finally {
    await close();
  }
  return results;
}

async function main(): Promise<void> {
  const { values } = parseFlags(process.argv.slice(2), { kernels: { type: 'string' }, threads: { type: 'string' }, iters: { type: 'string' }, only: { type: 'string' } });
  const kind = stringFlag(values, 'kernels');
  const results = await benchTrain({
    ...(kind === 'js' || kind === 'wasm' ? { kernels: kind } : {}),
    threads: intFlag(values, 'threads', 2, 1, 64), iters: intFlag(values, 'iters', 5, 1, 1000),
    ...(stringFlag(values, 'only') ? { only: stringFlag(values, 'only')! } : {}),
  });
  for (const r of results) {
    console.log(`train ${r.name}: ${Math.round(r.tokPerSec)} tok/s (median ${r.msPerIter.toFixed(0)} ms/iter; PyTorch ${r.pytorch} tok/s: ${(r.tokPerSec / r.pytorch).toFixed(2)}×)`);
  }
}

if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) await main();
