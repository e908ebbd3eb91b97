// Kernel throughput: GFLOP/s of the matrix products, reference TypeScript vs WebAssembly SIMD vs
// WebAssembly on worker threads, on the matrices of the 15M shape (dim 288, hidden 768, vocab
// 32000) and stories260K (dim 64, hidden 172, vocab 512); the int8 products; the batched training
// products at the trainer's batch sizes; and whole decode steps (tok/s) of the fp32 forward pass
// with random weights. One matmul of a (d, n) matrix is 2·n·d floating-point operations.
//
//   node dist/bench/kernels.js [--threads N] [--only matmul|q8|train|forward] [--ms 300] [--json FILE]
//
// The machine is shared: figures vary from run to run by 10–30 %.

import { writeFileSync } from 'node:fs';
import { intFlag, parseFlags, stringFlag } from '../src/cli/flags.js';
import { Transformer } from '../src/infer/forward.js';
import { type KernelSet, defaultThreads, jsKernelSet } from '../src/kernels/kernel-set.js';
import { createThreadedKernels } from '../src/kernels/threads.js';
import { type ModelConfig, hiddenDimFor } from '../src/model/config.js';
import { parameterCount, weightsView } from '../src/model/weights.js';
import { msPerCall } from './timing.js';

const { values } = parseFlags(process.argv.slice(2), {
  threads: { type: 'string' }, only: { type: 'string' }, ms: { type: 'string' }, json: { type: 'string' },
});
const threads = intFlag(values, 'threads', defaultThreads(), 1, 256);
const only = stringFlag(values, 'only');
const budgetMs = intFlag(values, 'ms', 300, 10);

/** Milliseconds per call of fn, over about budgetMs. */
function time(fn: () => void): number {
  return msPerCall(fn, budgetMs);
}

function random(a: Float32Array, scale = 1): Float32Array {
  let s = 12345;
  for (let i = 0; i < a.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    a[i] = ((s >>> 8) / 16777216 - 0.5) * scale;
  }
  return a;
}

interface Row { readonly section: string; readonly case: string; readonly kernels: string; readonly value: number; readonly unit: string }
const rows: Row[] = [];
function report(section: string, name: string, kernels: string, value: number, unit: string): void {
  rows.push({ section, case: name, kernels, value, unit });
  process.stdout.write(`${section.padEnd(8)} ${name.padEnd(34)} ${kernels.padEnd(8)} ${value.toFixed(value < 100 ? 2 : 0).padStart(9)} ${unit}\n`);
}

const single = await createThreadedKernels({ threads: 1 });
const multi = threads > 1 ? await createThreadedKernels({ threads }) : undefined;
const sets: KernelSet[] = [jsKernelSet, single, ...(multi ? [multi] : [])];

const MATRICES: [string, number, number][] = [ // name, n (input), d (output)
  ['15M wq/wo 288×288', 288, 288],
  ['15M w1/w3 768×288', 288, 768],
  ['15M w2 288×768', 768, 288],
  ['15M classifier 32000×288', 288, 32000],
  ['260K w1 172×64', 64, 172],
  ['260K classifier 512×64', 64, 512],
];

if (!only || only === 'matmul') {
  for (const [name, n, d] of MATRICES) {
    for (const k of sets) {
      const w = random(k.allocate(n * d)), x = random(k.allocate(n)), out = k.allocate(d);
      const ms = time(() => k.matmul(out, x, w, n, d));
      report('matmul', name, k.name, (2 * n * d) / ms / 1e6, 'GFLOP/s');
    }
  }
}

if (!only || only === 'q8') {
  for (const [name, n, d] of MATRICES) {
    const gs = n % 64 === 0 ? 64 : 32;
    for (const k of sets) {
      const wq = k.allocateInt8(n * d), ws = random(k.allocate(Math.ceil((n * d) / gs)), 0.01);
      for (let i = 0; i < wq.length; i++) wq[i] = ((i * 7919) % 255) - 127;
      const x = random(k.allocate(n)), xq = k.allocateInt8(n), xs = k.allocate(Math.ceil(n / gs)), out = k.allocate(d);
      const ms = time(() => { k.quantize(xq, xs, x, n, gs); k.matmulQ8(out, xq, xs, wq, ws, n, d, gs); });
      report('q8', `${name} g${gs}`, k.name, (2 * n * d) / ms / 1e6, 'GFLOP/s');
    }
  }
}

if (!only || only === 'train') {
  const GEMMS: [string, number, number, number][] = [ // name, BT, C, OC
    ['15M qkvo B8×256 288→288', 2048, 288, 288],
    ['15M w1 B8×256 288→768', 2048, 288, 768],
    ['15M w2 B8×256 768→288', 2048, 768, 288],
    ['15M cls B8×256 288→32000', 2048, 288, 32000],
    ['260K w1 B16×256 64→172', 4096, 64, 172],
    ['260K cls B16×256 64→512', 4096, 64, 512],
  ];
  for (const [name, BT, C, OC] of GEMMS) {
    for (const k of sets) {
      if (k === jsKernelSet && BT * C * OC > 1e9) continue; // the reference takes seconds per call there
      const inp = random(k.allocate(BT * C)), w = random(k.allocate(OC * C)), out = k.allocate(BT * OC);
      const dout = random(k.allocate(BT * OC)), dinp = k.allocate(BT * C), dw = k.allocate(OC * C);
      const flops = 2 * BT * C * OC;
      report('train', `${name} fwd`, k.name, flops / time(() => k.matmulForward(out, inp, w, BT, C, OC)) / 1e6, 'GFLOP/s');
      report('train', `${name} bwd`, k.name, (2 * flops) / time(() => k.matmulBackward(dinp, dw, dout, inp, w, BT, C, OC)) / 1e6, 'GFLOP/s');
    }
  }
}

if (!only || only === 'forward') {
  const SHAPES: [string, ModelConfig][] = [
    ['260K', { dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512, sharedClassifier: true }],
    ['15M', { dim: 288, hiddenDim: hiddenDimFor(288, 32), nLayers: 6, nHeads: 6, nKvHeads: 6, vocabSize: 32000, seqLen: 256, sharedClassifier: true }],
  ];
  for (const [name, c] of SHAPES) {
    for (const k of sets) {
      const weights = weightsView(c, random(k.allocate(parameterCount(c)), 0.1));
      const model = new Transformer(weights, k);
      const steps = Math.min(c.seqLen, 256);
      let token = 1;
      model.forward(token, 0); // warm-up
      const t0 = performance.now();
      for (let pos = 0; pos < steps; pos++) {
        const logits = model.forward(token, pos);
        token = (pos * 7919 + (logits[pos % c.vocabSize]! > 0 ? 1 : 2)) % c.vocabSize;
      }
      report('forward', `${name} fp32, ${steps} positions`, k.name, (steps / (performance.now() - t0)) * 1000, 'tok/s');
    }
  }
}

const jsonPath = stringFlag(values, 'json');
if (jsonPath) writeFileSync(jsonPath, JSON.stringify({ threads, rows }, null, 2) + '\n');
await multi?.close();
