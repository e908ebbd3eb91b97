// Peak memory while loading a model: a Hugging Face folder in BF16 (made by `llama2 export --format
// hf --dtype bf16` from `llama2 init` weights) loaded as float32, against issue 12's bound — float32
// weights + 64 MiB for the whole process — next to the same weights from a llama2.c v1 .bin. Each
// load runs in its own process; its peak RSS (VmHWM) is read when the model is ready.
//
//   node dist/bench/load-rss.js [--dim 384 --layers 8 --hidden-dim 1024 --vocab 32000] [--kernels js|wasm] [--keep DIR]

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { intFlag, parseFlags, stringFlag } from '../src/cli/flags.js';
import { withModelSource } from '../src/model/open.js';
import { parameterCount } from '../src/model/weights.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const loadModule = new URL('../src/infer/load.js', import.meta.url).href;
const kernelsModule = new URL('../src/kernels/kernel-set.js', import.meta.url).href;

export interface LoadRss {
  /** Peak RSS of the whole process (bytes), after the model is loaded. */
  readonly peakBytes: number;
  /** Peak RSS before loading (Node.js, the modules, the kernels). */
  readonly baseBytes: number;
  readonly loadMs: number;
}

/** Loads `model` in a fresh process with the given kernels; its peak RSS. */
export function measureLoad(model: string, kernels: 'js' | 'wasm'): LoadRss {
  const script = `
    import { readFileSync } from 'node:fs';
    const hwm = () => Number(/VmHWM:\\s+(\\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
    const { loadTransformer } = await import(${JSON.stringify(loadModule)});
    const { createKernels } = await import(${JSON.stringify(kernelsModule)});
    const kernels = await createKernels({ kind: ${JSON.stringify(kernels)}, threads: 1 });
    const baseBytes = hwm();
    const t0 = performance.now();
    const t = loadTransformer(${JSON.stringify(model)}, kernels);
    const loadMs = performance.now() - t0;
    t.forward(1, 0);
    process.stdout.write(JSON.stringify({ peakBytes: hwm(), baseBytes, loadMs }));
    await kernels.close();`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`measuring ${model}: ${r.stderr}`);
  return JSON.parse(r.stdout) as LoadRss;
}

/** Makes (once) a v1 .bin of the shape and its BF16 Hugging Face folder in `dir`. */
export function makeModels(dir: string, initArgs: string[]): { bin: string; hf: string } {
  const bin = join(dir, 'model.bin');
  const hf = join(dir, 'hf-bf16');
  const run = (...args: string[]): void => {
    const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`llama2 ${args.join(' ')}: ${r.stderr}`);
  };
  if (!existsSync(bin)) run('init', '-o', bin, ...initArgs);
  if (!existsSync(hf)) run('export', bin, '--format', 'hf', '--dtype', 'bf16', '-o', hf);
  return { bin, hf };
}

async function main(): Promise<void> {
  const { values } = parseFlags(process.argv.slice(2), {
    dim: { type: 'string' }, layers: { type: 'string' }, 'hidden-dim': { type: 'string' }, vocab: { type: 'string' },
    kernels: { type: 'string' }, keep: { type: 'string' },
  });
  const initArgs = [
    '--dim', String(intFlag(values, 'dim', 384)), '--layers', String(intFlag(values, 'layers', 8)), '--heads', '6',
    '--hidden-dim', String(intFlag(values, 'hidden-dim', 1024)), '--vocab', String(intFlag(values, 'vocab', 32000)), '--seq-len', '256',
  ];
  const keep = stringFlag(values, 'keep');
  const dir = keep ?? mkdtempSync(join(tmpdir(), 'llama2ts-load-rss-'));
  mkdirSync(dir, { recursive: true });
  try {
    const { bin, hf } = makeModels(dir, initArgs);
    const config = withModelSource(hf, (s) => s.config);
    const weights = 4 * parameterCount(config);
    const MiB = 2 ** 20;
    console.log(`model: ${(parameterCount(config) / 1e6).toFixed(1)}M parameters, float32 weights ${(weights / MiB).toFixed(1)} MiB; bound ${(weights / MiB + 64).toFixed(1)} MiB`);
    for (const kernels of (stringFlag(values, 'kernels') ? [stringFlag(values, 'kernels')!] : ['js', 'wasm']) as Array<'js' | 'wasm'>) {
      for (const [what, path] of [['HF BF16 folder', hf], ['llama2.c v1 .bin', bin]] as const) {
        const m = measureLoad(path, kernels);
        console.log(`${kernels.padEnd(4)} ${what.padEnd(18)} peak RSS ${(m.peakBytes / MiB).toFixed(1)} MiB (before loading ${(m.baseBytes / MiB).toFixed(1)}), ` +
          `weights + ${((m.peakBytes - weights) / MiB).toFixed(1)} MiB, load ${m.loadMs.toFixed(0)} ms`);
      }
    }
  } finally {
    if (keep === undefined) rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
