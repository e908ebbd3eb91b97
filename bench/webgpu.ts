// `node dist/bench/webgpu.js [--small] [--json FILE] [--budget SECONDS]`: the WebGPU backend's speed
// on this machine's GPU — issue 17's measurement, which scripts/webgpu-device.sh runs on the device
// machine. Random-weight models of the two target shapes (bench/random-model.ts: made in seconds,
// never written to disk):
//
//   110M            Llama 2 110M (dim 768, 12 layers, 12 heads, vocab 32000), float32
//   TinyLlama-1.1B  dim 2048, hidden 5632, 22 layers, 32 heads / 4 kv heads, vocab 32000, own
//                   classifier, Q8_0 (groups of 64, llama2ts's int8)
//
// First a one-layer model of width 64 — nearly no arithmetic: its decode rate is the per-token
// floor of the round trip (host thread, command submission, logits read back). For each shape:
// greedy decode tok/s (16 prompt tokens, then 256 decode steps, as `llama2 bench -t 0`)
// and prefill tok/s (512 prompt tokens until their last logits are out); then the 110M shape under
// other kernel tunings (workgroup sizes, subgroups off, larger prompt batches); then the
// WebAssembly engine on every core for comparison. Each figure is printed as a table row as soon as
// it is measured, so a run cut short keeps what it printed; --json writes them all. --small runs the
// same steps on tiny shapes (the dry run on SwiftShader). --budget: steps that would start after
// this many seconds are skipped.

import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { type WebGpuDevice, WebGpuDevice as Device, loadWebGpuEngine } from '../src/backends/webgpu/engine.js';
import type { TuningOverrides } from '../src/backends/webgpu/device.js';
import type { KernelTuning } from '../src/backends/webgpu/wgsl.js';
import { numberFlag, parseFlags, stringFlag } from '../src/cli/flags.js';
import { benchmark } from '../src/infer/bench.js';
import type { InferenceEngine } from '../src/infer/engine.js';
import { loadTransformer } from '../src/infer/load.js';
import { createKernels } from '../src/kernels/kernel-set.js';
import type { ModelConfig } from '../src/model/config.js';
import type { ModelSource } from '../src/model/source.js';
import { randomModelSource } from './random-model.js';

interface Shape {
  readonly name: string;
  readonly config: ModelConfig;
  /** Q8_0 group size, or undefined for float32. */
  readonly q8?: number;
}

const SHAPES: Record<'full' | 'small', readonly [Shape, Shape]> = {
  full: [
    { name: '110M', config: { dim: 768, hiddenDim: 2048, nLayers: 12, nHeads: 12, nKvHeads: 12, vocabSize: 32000, seqLen: 1024, sharedClassifier: true } },
    { name: 'TinyLlama-1.1B', q8: 64, config: { dim: 2048, hiddenDim: 5632, nLayers: 22, nHeads: 32, nKvHeads: 4, vocabSize: 32000, seqLen: 2048, sharedClassifier: false } },
  ],
  small: [
    { name: '110M (small)', config: { dim: 64, hiddenDim: 176, nLayers: 2, nHeads: 8, nKvHeads: 8, vocabSize: 512, seqLen: 128, sharedClassifier: true } },
    { name: 'TinyLlama-1.1B (small)', q8: 32, config: { dim: 128, hiddenDim: 352, nLayers: 2, nHeads: 8, nKvHeads: 2, vocabSize: 512, seqLen: 128, sharedClassifier: false } },
  ],
};

/** Nearly no arithmetic: the per-token cost of the round trip alone. */
const FLOOR: Shape = { name: 'floor (1 layer, dim 64)', config: { dim: 64, hiddenDim: 176, nLayers: 1, nHeads: 4, nKvHeads: 4, vocabSize: 512, seqLen: 1024, sharedClassifier: true } };

/**
 * Other tunings of the 110M shape (the defaults suit a GPU; these are what a sweep tries next), and
 * Dawn without the robustness transform (bounds clamps on every buffer access) and validation.
 */
const TUNINGS: ReadonlyArray<{ readonly tuning: TuningOverrides; readonly dawnFlags?: readonly string[] }> = [
  { tuning: { matmulThreads: 256, itemsPerGroup: 8 } },
  { tuning: { matmulThreads: 64, itemsPerGroup: 2 } },
  { tuning: { subgroups: false, teamSize: 32 } },
  { tuning: { maxBatch: 128 } },
  { tuning: {}, dawnFlags: ['enable-dawn-features=disable_robustness,skip_validation'] },
];

interface Row {
  engine: string;
  shape: string;
  weights: string;
  tuning: string;
  decodeTokensPerSecond?: number;
  msPerToken?: number;
  prefillTokensPerSecond?: number;
  prefillTokens?: number;
  loadSeconds?: number;
  note?: string;
}

const rows: Row[] = [];
let adapter = '';
const started = performance.now();
const elapsed = () => (performance.now() - started) / 1000;

function print(r: Row): void {
  rows.push(r);
  const f = (x: number | undefined, d = 0) => (x === undefined ? '–' : x.toFixed(d));
  console.log(`| ${r.engine} | ${r.shape} | ${r.weights} | ${r.tuning} | ${f(r.decodeTokensPerSecond)} | ${f(r.msPerToken, 3)} | ${f(r.prefillTokensPerSecond)}${r.prefillTokens ? ` (${r.prefillTokens})` : ''} | ${f(r.loadSeconds, 1)} |${r.note ? ` ${r.note}` : ''}`);
}

/** Decode (16 + steps, greedy) and prefill (prompt tokens until their logits) of one engine. */
function measure(engine: InferenceEngine, steps: number, prompt: number): Pick<Row, 'decodeTokensPerSecond' | 'msPerToken' | 'prefillTokensPerSecond' | 'prefillTokens'> {
  const options = { temperature: 0, warmup: 1, repeats: 3 };
  const decode = benchmark(engine, 16, Math.min(steps, engine.config.seqLen - 16), options);
  const p = Math.min(prompt, engine.config.seqLen - 1);
  const prefill = benchmark(engine, p, 1, options);
  return { decodeTokensPerSecond: decode.decodeTokensPerSecond, msPerToken: decode.msPerToken, prefillTokensPerSecond: prefill.prefillTokensPerSecond, prefillTokens: p };
}

function source(shape: Shape): ModelSource {
  return randomModelSource(shape.config, shape.q8 === undefined ? {} : { q8GroupSize: shape.q8 });
}

/** A tuning in few words: how the products' teams are formed, workgroup sizes, prompt batch. */
function describe(t: KernelTuning): string {
  const teams = t.subgroups ? `subgroups, ${t.itemsPerGroup} rows/wg` : `teams of ${t.teamSize}`;
  return `${teams}, ${t.matmulThreads} thr, norm/attn ${t.threads} thr, batch ${t.maxBatch}`;
}

const weightsOf = (shape: Shape) => (shape.q8 === undefined ? 'float32' : `Q8_0/${shape.q8}`);

async function onGpu(device: WebGpuDevice, shape: Shape, steps: number, prompt: number, tuning = describe(device.tuning)): Promise<void> {
  const t0 = performance.now();
  const engine = loadWebGpuEngine(device, source(shape));
  const loadSeconds = (performance.now() - t0) / 1000;
  try {
    print({ engine: 'webgpu', shape: shape.name, weights: weightsOf(shape), tuning, ...measure(engine, steps, prompt), loadSeconds });
  } finally {
    engine.free();
  }
}

async function main(): Promise<void> {
  const { values } = parseFlags(process.argv.slice(2), { small: { type: 'boolean' }, json: { type: 'string' }, budget: { type: 'string' } });
  const small = values['small'] === true;
  const budget = numberFlag(values, 'budget', Infinity);
  const [s110, tiny] = SHAPES[small ? 'small' : 'full'];
  const steps = small ? 16 : 256;
  const prompt = small ? 64 : 512;
  const within = (what: string): boolean => {
    if (elapsed() < budget) return true;
    print({ engine: what, shape: '', weights: '', tuning: '', note: `skipped: ${elapsed().toFixed(0)} s of the ${budget} s budget spent` });
    return false;
  };

  const device = await Device.open();
  adapter = device.adapter;
  console.log(`WebGPU adapter: ${device.adapter}; node ${process.version}; ${availableParallelism()} cores`);
  console.log('| engine | shape | weights | tuning | decode tok/s | ms/token | prefill tok/s (tokens) | load s |');
  console.log('|---|---|---|---|---|---|---|---|');
  try {
    for (const shape of [FLOOR, s110, tiny]) {
      if (!within(`webgpu ${shape.name}`)) break;
      await onGpu(device, shape, steps, prompt, `${describe(device.tuning)} (default)`);
    }
  } finally {
    await device.close();
  }
  for (const { tuning, dawnFlags } of TUNINGS) {
    if (!within(`webgpu tuning ${JSON.stringify(tuning)}`)) break;
    const other = await Device.open({ tuning, ...(dawnFlags ? { dawnFlags } : {}) });
    try {
      await onGpu(other, s110, small ? steps : 128, prompt, `${describe(other.tuning)}${dawnFlags ? `; ${dawnFlags.join(' ').replace('enable-dawn-features=', 'Dawn: ')}` : ''}`);
    } finally {
      await other.close();
    }
  }
  if (within('wasm')) {
    const kernels = await createKernels({ kind: 'wasm', threads: availableParallelism() });
    try {
      const t0 = performance.now();
      const engine = loadTransformer(source(s110), kernels);
      const loadSeconds = (performance.now() - t0) / 1000;
      print({ engine: `wasm×${kernels.threads}`, shape: s110.name, weights: weightsOf(s110), tuning: '', ...measure(engine, small ? steps : 64, small ? prompt : 128), loadSeconds });
    } finally {
      await kernels.close();
    }
  }
  const out = stringFlag(values, 'json');
  if (out !== undefined) writeFileSync(out, JSON.stringify({ adapter, small, seconds: elapsed(), rows }, null, 1) + '\n');
}

main().catch((err: unknown) => {
  console.error(`bench/webgpu: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
