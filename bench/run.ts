// `npm run bench`: the benchmark matrix. Inference (decode tok/s with run's sampler and greedy,
// prefill tok/s, peak RSS against the memory bound) for the 260K, 15M, 42M and 110M shapes with
// `llama2 init` weights, float32 and int8, on 1 thread and on every core; then training throughput
// (bench/train.ts). Every inference cell runs in its own process so that its peak RSS is its own
// (the greedy runs in a second one). Prints a table, writes JSON.
//
//   node dist/bench/run.js [--only 260K,15M] [--steps N] [--skip-train] [--out FILE]
//   node dist/bench/run.js --versus …   side by side with llama2.c and onnxruntime (bench/versus.ts)
//   node dist/bench/run.js --server …   the server: N requests at once against one (bench/server.ts)
//   node dist/bench/run.js --big …      the 1.1B and 7B shapes side by side with runq.c (bench/big.ts)

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { intFlag, parseFlags, stringFlag } from '../src/cli/flags.js';
import { kvDim } from '../src/model/config.js';
import { readCheckpointHeader } from '../src/model/checkpoint.js';
import { benchTrain } from './train.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

interface Shape {
  readonly name: string;
  readonly args: string[]; // llama2 init flags
  /** Timed runs per cell (the median is reported): enough that a cell lasts about a second. */
  readonly repeats: number;
}

const SHAPES: Shape[] = [
  { name: '260K', args: ['--dim', '64', '--layers', '5', '--heads', '8', '--kv-heads', '4', '--multiple-of', '4', '--vocab', '512', '--seq-len', '512'], repeats: 31 },
  { name: '15M', args: ['--dim', '288', '--layers', '6', '--heads', '6', '--vocab', '32000', '--seq-len', '256'], repeats: 5 },
  { name: '42M', args: ['--dim', '512', '--layers', '8', '--heads', '8', '--vocab', '32000', '--seq-len', '1024'], repeats: 3 },
  { name: '110M', args: ['--dim', '768', '--layers', '12', '--heads', '12', '--vocab', '32000', '--seq-len', '1024'], repeats: 3 },
];

interface Cell {
  shape: string;
  quantize: 'none' | 'q8';
  threads: number;
  /** Decode with run's default sampler (temperature 1, top-p 0.9). */
  decodeTokensPerSecond: number;
  /** Decode with greedy sampling (temperature 0: argmax, no softmax or sort): the forward pass alone, nearly. */
  greedyDecodeTokensPerSecond: number;
  prefillTokensPerSecond: number;
  msPerToken: number;
  peakRssMiB: number;
  /** checkpoint bytes + KV cache + 64 MiB, in MiB (issue 4's bound). */
  rssBoundMiB: number;
}

function llama2(args: string[]): string {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`llama2 ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

async function main(): Promise<void> {
  if (process.argv.includes('--versus')) {
    // side by side with llama2.c and onnxruntime (bench/versus.ts)
    const versus = await import('./versus.js');
    await versus.main(process.argv.slice(2));
    return;
  }
  if (process.argv.includes('--server')) {
    const server = await import('./server.js');
    await server.main(process.argv.slice(2));
    return;
  }
  if (process.argv.includes('--big')) {
    // the 1.1B and 7B shapes side by side with runq.c (bench/big.ts)
    const big = await import('./big.js');
    await big.main(process.argv.slice(2));
    return;
  }
  const { values } = parseFlags(process.argv.slice(2), {
    only: { type: 'string' }, steps: { type: 'string' }, 'skip-train': { type: 'boolean' }, out: { type: 'string' },
  });
  const only = stringFlag(values, 'only')?.split(',');
  const steps = intFlag(values, 'steps', 256, 1);
  const out = stringFlag(values, 'out', 'bench-results.json');
  const cores = availableParallelism();
  const dir = join(tmpdir(), 'llama2ts-bench');
  mkdirSync(dir, { recursive: true });
  const machine = `${cpus()[0]?.model ?? 'unknown CPU'}, ${cores} cores, Node.js ${process.version}`;
  console.log(`machine: ${machine}\n`);

  const cells: Cell[] = [];
  console.log('| shape | weights | threads | decode tok/s (top-p 0.9) | decode tok/s (greedy) | prefill tok/s | ms/token | peak RSS MiB | bound MiB |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const shape of SHAPES) {
    if (only && !only.includes(shape.name)) continue;
    const model = join(dir, `${shape.name}.bin`);
    if (!existsSync(model)) llama2(['init', ...shape.args, '--seed', '1', '-o', model]);
    const h = readCheckpointHeader(model);
    const c = h.config;
    const kvBytes = 2 * c.nLayers * c.seqLen * kvDim(c) * 4;
    for (const quantize of ['none', 'q8'] as const) {
      for (const threads of [...new Set([1, cores])]) {
        const args = ['bench', model, '-n', String(Math.min(steps, c.seqLen - 16)), '--threads', String(threads), '--quantize', quantize, '--repeats', String(shape.repeats), '--json'];
        const r = JSON.parse(llama2(args)) as { decodeTokensPerSecond: number; prefillTokensPerSecond: number; msPerToken: number; peakRssBytes: number };
        const greedy = JSON.parse(llama2([...args, '--temperature', '0'])) as { decodeTokensPerSecond: number };
        const cell: Cell = {
          shape: shape.name, quantize, threads,
          decodeTokensPerSecond: r.decodeTokensPerSecond, greedyDecodeTokensPerSecond: greedy.decodeTokensPerSecond,
          prefillTokensPerSecond: r.prefillTokensPerSecond, msPerToken: r.msPerToken,
          peakRssMiB: r.peakRssBytes / 2 ** 20, rssBoundMiB: (h.fileBytes + kvBytes) / 2 ** 20 + 64,
        };
        cells.push(cell);
        console.log(`| ${shape.name} | ${quantize === 'q8' ? 'int8' : 'fp32'} | ${threads} | ${cell.decodeTokensPerSecond.toFixed(0)} | ${cell.greedyDecodeTokensPerSecond.toFixed(0)} | ${cell.prefillTokensPerSecond.toFixed(0)} | ${cell.msPerToken.toFixed(2)} | ${cell.peakRssMiB.toFixed(1)} | ${cell.rssBoundMiB.toFixed(1)} |`);
      }
    }
  }

  let training: Awaited<ReturnType<typeof benchTrain>> = [];
  if (values['skip-train'] !== true) {
    console.log('\n| training (float32) | threads | tok/s | ms/iter | PyTorch tok/s |');
    console.log('|---|---|---|---|---|');
    training = await benchTrain({ threads: cores, iters: 5 });
    for (const r of training) console.log(`| ${r.name} | ${cores} | ${r.tokPerSec.toFixed(0)} | ${r.msPerIter.toFixed(0)} | ${r.pytorch} |`);
  }
  writeFileSync(out, JSON.stringify({ machine, date: new Date().toISOString(), steps, inference: cells, training }, null, 2) + '\n');
  console.log(`\nwrote ${out}`);
}

await main();
