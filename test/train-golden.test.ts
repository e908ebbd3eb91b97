// The trainer against PyTorch (llama2.c model.py + torch.optim.AdamW, float32 CPU), tensor by
// tensor, on two references in ../shared/golden: a tiny random GQA model (tiny_public) and the
// real stories260K weights (s260K_public). Checks, with stated tolerances:
//   step-0 loss within 1e-5, every gradient tensor of step 0 within 1e-4 max abs diff,
//   the loss of every AdamW step within 1e-4 (and the gradient norm before clipping),
//   every weight tensor after the last step within 1e-4, the eval-batch loss after training.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { readCheckpoint } from '../src/model/checkpoint.js';
import { parameterTable, type TransformerWeights } from '../src/model/weights.js';
import { type MatmulKernels, gemm } from '../src/train/layers.js';
import { buildTrainModel, type ParallelRunner } from '../src/train/model.js';
import { createTrainPool, sharedWasmOf } from '../src/train/pool.js';
import { needsRefdata, ref } from './refdata.js';

interface Golden {
  init: string; grads_step0: string; after: string;
  B: number; T: number; steps: number;
  adamw: { lr: number; beta1: number; beta2: number; eps: number; weight_decay: number; grad_clip: number };
  losses: number[]; grad_norms_before_clip: number[];
  batches: Array<{ x: number[][]; y: number[][] }>;
  eval_batch: { x: number[][]; y: number[][] };
  eval_loss_after: number;
}

function weightsOf(file: string): TransformerWeights {
  const c = readCheckpoint(ref('golden', file));
  assert.ok(c.format === 'v1');
  return c.weights;
}

/**
 * Max abs diff per tensor of the table; lists every tensor with an element off by more than its
 * tolerance (`tol`, or tol(i) for element i). The max is reported as a multiple of the tolerance
 * when it varies.
 */
function compareTensors(what: string, got: TransformerWeights, want: TransformerWeights, tol: number | ((i: number) => number)): void {
  const failures: string[] = [];
  const report: string[] = [];
  const tolOf = typeof tol === 'number' ? () => tol : tol;
  for (const t of parameterTable(got.config)) {
    let max = 0;
    let worst = 0; // largest diff / tolerance
    for (let i = t.offset; i < t.offset + t.size; i++) {
      const d = Math.abs(got.data[i]! - want.data[i]!);
      max = Math.max(max, d);
      worst = Math.max(worst, d / tolOf(i));
    }
    report.push(`${t.name} ${max.toExponential(2)}`);
    if (!(worst <= 1)) failures.push(`${t.name}: max abs diff ${max.toExponential(3)}, ${worst.toFixed(2)}× its tolerance`);
  }
  assert.deepEqual(failures, [], `${what} (per tensor: ${report.join(', ')})`);
}

interface Engine {
  readonly kernels: MatmulKernels & { allocate(n: number): Float32Array };
  readonly parts: number;
  readonly pool: (model: ReturnType<typeof buildTrainModel>) => Promise<(ParallelRunner & { close(): Promise<void> }) | undefined>;
}

async function runGolden(name: string, engine?: Engine): Promise<void> {
  const g = JSON.parse(readFileSync(ref('golden', `${name}.json`), 'utf8')) as Golden;
  const init = weightsOf(g.init);
  const model = buildTrainModel(init.config, init.data, {
    B: g.B, T: g.T, ...(engine ? { kernels: engine.kernels, allocate: (n: number) => engine.kernels.allocate(n), parts: engine.parts } : {}),
  });
  const pool = engine ? await engine.pool(model) : undefined;
  model.setParallel(pool);
  try {
    check(g, name, model);
  } finally {
    await pool?.close();
  }
}

function check(g: Golden, name: string, model: ReturnType<typeof buildTrainModel>): void {
  const hyper = { beta1: g.adamw.beta1, beta2: g.adamw.beta2, eps: g.adamw.eps, weightDecay: g.adamw.weight_decay };
  const flat = (rows: number[][]): number[] => rows.flat();

  for (let step = 0; step < g.steps; step++) {
    const batch = g.batches[step]!;
    model.zeroGrad();
    const loss = model.forward(flat(batch.x), flat(batch.y));
    const tol = step === 0 ? 1e-5 : 1e-4;
    assert.ok(Math.abs(loss - g.losses[step]!) <= tol, `step ${step}: loss ${loss} vs PyTorch ${g.losses[step]} (tolerance ${tol})`);
    model.backward();
    if (step === 0) compareTensors(`${name}: gradients of step 0`, model.grads, weightsOf(g.grads_step0), 1e-4);
    model.update(g.adamw.lr, hyper, g.adamw.grad_clip);
    const norm = g.grad_norms_before_clip[step]!;
    assert.ok(Math.abs(model.lastGradNorm - norm) <= 1e-4 * Math.max(1, norm), `step ${step}: grad norm ${model.lastGradNorm} vs ${norm}`);
  }
  // The weights after the steps within 1e-4 — except where the step-0 gradient is itself at the
  // level of float32 rounding (|g| < 1e-6; the worst elements have |g| ≈ 1e-8, summed from terms
  // of ~0.1): AdamW's first update there is lr · g / (|g| + eps) with eps = 1e-8, so rounding
  // noise of 1e-8 in g moves it by up to lr / 2 in any float32 implementation (ours in float64
  // included); those elements get 2 · lr. A mistake in AdamW itself moves every element by ~lr.
  const g0 = weightsOf(g.grads_step0).data;
  compareTensors(`${name}: weights after ${g.steps} steps`, model.params, weightsOf(g.after), (i) => (Math.abs(g0[i]!) >= 1e-6 ? 1e-4 : 2 * g.adamw.lr));
  const evalLoss = model.forward(flat(g.eval_batch.x), flat(g.eval_batch.y));
  assert.ok(Math.abs(evalLoss - g.eval_loss_after) <= 1e-4, `eval loss ${evalLoss} vs ${g.eval_loss_after}`);
}

test('tiny GQA model: loss, every gradient, 10 AdamW steps and final weights match PyTorch', needsRefdata, () => runGolden('tiny_public'));

test('stories260K: loss, every gradient, 5 AdamW steps and final weights match PyTorch', needsRefdata, () => runGolden('s260K_public'));

test('the same with the WebAssembly kernels on 2 threads and the training worker pool', needsRefdata, async (t) => {
  const { wasmSupported } = await import('../src/kernels/wasm.js');
  if (!wasmSupported()) {
    t.skip('WebAssembly SIMD or shared memory unavailable');
    return;
  }
  const { createKernels } = await import('../src/kernels/kernel-set.js');
  const set = await createKernels({ kind: 'wasm', threads: 2 });
  try {
    const shared = sharedWasmOf(set);
    assert.ok(shared !== undefined, 'the wasm kernel set exposes its module and memory');
    const engine: Engine = {
      kernels: { name: set.name, matmulForward: set.matmulForward.bind(set), matmulBackward: set.matmulBackward.bind(set), gemm, allocate: set.allocate.bind(set) },
      parts: 2,
      pool: (model) => createTrainPool(shared, model),
    };
    await runGolden('tiny_public', engine);
    await runGolden('s260K_public', engine);
  } finally {
    await set.close();
  }
});
