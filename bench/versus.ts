// `npm run bench -- --versus`: llama2ts side by side with the reference programs that are present,
// on the same weights, in the same run, interleaved round by round (R rounds; medians and ranges):
//
//   decode    greedy, 2 threads: `llama2 bench -t 0` against llama2.c's run (built -Ofast
//             -march=native -fopenmp, OMP_NUM_THREADS=2; also -Ofast -march=native without OpenMP
//             (run-fast) and -O3 (run), on one thread) and, for int8,
//             runq against llama2ts on the same v2 file; tok/s after the first token, as run.c counts
//   prefill   a prompt of T tokens through to its last logits, 2 threads: `llama2 bench
//             --prompt-len T` against onnxruntime-node on an ONNX export of the same weights
//             (bench/onnx-export.ts; installed on demand, bench/onnxruntime.ts)
//
// llama2.c is not part of this repository: build it anywhere (git clone …/karpathy/llama2.c; make
// run, or gcc -O3 -o run run.c -lm, gcc -Ofast -march=native -o run-fast run.c -lm and
// gcc -Ofast -march=native -fopenmp -o run-omp run.c -lm, the same for runq) and point --llama2c at the folder (default ../ext/llama2.c). Programs that are
// missing are skipped and said so. PyTorch is not run: it is not installed on this machine class.
// Shapes: stories260K (the real model, from the reference data), and `llama2 init` weights of the
// 15M and 110M shapes (decode speed does not depend on the weights' values).
//
//   node dist/bench/run.js --versus [--llama2c DIR] [--rounds 5] [--only 260K,15M,110M] [--no-onnx] [--out FILE]

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { intFlag, parseFlags, stringFlag } from '../src/cli/flags.js';
import { readCheckpoint } from '../src/model/checkpoint.js';
import { writeOnnx } from './onnx-export.js';
import { loadOnnxRuntime, ONNXRUNTIME_VERSION, type Ort, type OrtSession } from './onnxruntime.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const refdata = process.env['LLAMA2_REFDATA'] ?? '../shared';

interface Shape {
  readonly name: string;
  /** llama2 init flags, or undefined for the real stories260K */
  readonly init?: string[];
  readonly steps: number;
  readonly prompt: number;
  readonly int8: boolean;
}

const SHAPES: Shape[] = [
  { name: '260K', steps: 256, prompt: 255, int8: false }, // (runq.c cannot run its int8 file: hidden 172 is not a multiple of 64)
  { name: '15M', init: ['--dim', '288', '--layers', '6', '--heads', '6', '--vocab', '32000', '--seq-len', '256'], steps: 255, prompt: 255, int8: true },
  { name: '110M', init: ['--dim', '768', '--layers', '12', '--heads', '12', '--vocab', '32000', '--seq-len', '1024'], steps: 256, prompt: 256, int8: true },
];

function run(cmd: string, args: string[], env: Record<string, string> = {}): { stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr.slice(-500)}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

function llama2(args: string[]): string {
  return run(process.execPath, [cli, ...args]).stdout;
}

/** llama2 bench … --json: one warm-up and one timed run in a fresh process. */
function ours(model: string, args: string[]): { decodeTokensPerSecond: number; prefillTokensPerSecond: number } {
  return JSON.parse(llama2(['bench', model, '--threads', '2', '-t', '0', '--warmup', '1', '--repeats', '1', '--json', ...args])) as { decodeTokensPerSecond: number; prefillTokensPerSecond: number };
}

/** run.c / runq.c's "achieved tok/s" (greedy, steps positions from BOS). */
function c(program: string, model: string, tokenizer: string, steps: number, threads: number): number {
  const { stderr } = run(program, [model, '-z', tokenizer, '-t', '0', '-n', String(steps)], { OMP_NUM_THREADS: String(threads) });
  const m = /achieved tok\/s: ([\d.]+)/.exec(stderr);
  if (!m) throw new Error(`${program}: no "achieved tok/s" in its output`);
  return Number(m[1]);
}

async function ortPrefill(session: OrtSession, ort: Ort, tokens: BigInt64Array, T: number, times: number): Promise<number> {
  const feeds = { tokens: new ort.Tensor('int64', tokens, [1, T]) };
  const ms: number[] = [];
  for (let i = 0; i < times; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    ms.push(performance.now() - t0);
  }
  return (T / median(ms)) * 1000;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

interface Row { shape: string; what: string; ours: number[]; reference: string; theirs: number[] }

export async function main(argv: string[]): Promise<void> {
  const { values } = parseFlags(argv, {
    versus: { type: 'boolean' }, llama2c: { type: 'string' }, rounds: { type: 'string' }, only: { type: 'string' },
    'no-onnx': { type: 'boolean' }, out: { type: 'string' },
  });
  const rounds = intFlag(values, 'rounds', 5, 1, 100);
  const only = stringFlag(values, 'only')?.split(',');
  const dir = stringFlag(values, 'llama2c', '../ext/llama2.c');
  const out = stringFlag(values, 'out', 'bench-versus.json');
  const programs = Object.fromEntries(['run', 'run-fast', 'run-omp', 'runq', 'runq-omp'].map((p) => [p, join(dir, p)]).filter(([, p]) => existsSync(p!)));
  const models = join(tmpdir(), 'llama2ts-bench');
  mkdirSync(models, { recursive: true });
  const tok32k = join(refdata, 'data', 'tokenizers', 'tokenizer.bin');
  const load0 = loadavg()[0]!;
  console.log(`machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, Node.js ${process.version}; load average ${load0.toFixed(1)}`);
  console.log(`llama2.c programs found in ${dir}: ${Object.keys(programs).join(', ') || 'none'}`);
  let ort: Ort | undefined;
  if (values['no-onnx'] !== true) {
    const loaded = await loadOnnxRuntime();
    if (typeof loaded === 'string') console.log(`onnxruntime: skipped — ${loaded}`);
    else ort = loaded;
  }
  console.log('PyTorch: not run (not installed on this machine class)\n');

  const rows: Row[] = [];
  for (const shape of SHAPES) {
    if (only && !only.includes(shape.name)) continue;
    let fp32: string, tokenizer: string;
    if (shape.init === undefined) {
      fp32 = join(refdata, 'data', 'models', 'stories260K.bin');
      tokenizer = join(refdata, 'data', 'models', 'tok512.bin');
      if (!existsSync(fp32)) { console.log(`${shape.name}: skipped (no reference data at ${refdata})`); continue; }
    } else {
      fp32 = join(models, `${shape.name}.v0.bin`);
      if (!existsSync(fp32)) llama2(['init', ...shape.init, '--seed', '1', '--format', 'v0', '-o', fp32]);
      tokenizer = tok32k;
    }
    const v2 = join(models, `${shape.name}.v2.bin`);
    if (shape.int8 && !existsSync(v2)) llama2(['export', fp32, '--format', 'v2', '-o', v2]);
    let session: OrtSession | undefined;
    let tokens: BigInt64Array | undefined;
    if (ort !== undefined) {
      const onnx = join(models, `${shape.name}.T${shape.prompt}.onnx`);
      const ck = readCheckpoint(fp32);
      if (ck.format === 'v2') throw new Error('unexpected v2');
      if (!existsSync(onnx)) writeOnnx(onnx, ck.weights, shape.prompt);
      session = await ort.InferenceSession.create(onnx, { intraOpNumThreads: 2, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential' });
      tokens = BigInt64Array.from({ length: shape.prompt }, (_, i) => BigInt(i === 0 ? 1 : ((i - 1) * 7919 + 13) % ck.config.vocabSize));
      await ortPrefill(session, ort, tokens, shape.prompt, 2); // warm-up
    }
    const r = (what: string, reference: string): Row => {
      let row = rows.find((x) => x.shape === shape.name && x.what === what && x.reference === reference);
      if (row === undefined) rows.push((row = { shape: shape.name, what, ours: [], reference, theirs: [] }));
      return row;
    };
    for (let round = 0; round < rounds; round++) {
      // interleaved: each measurement of a round right after its counterpart
      const decode = ours(fp32, ['-n', String(shape.steps), '--prompt-len', '1']).decodeTokensPerSecond;
      if (programs['run-omp']) {
        const row = r('decode fp32 (greedy, 2 threads)', 'run.c -Ofast -march=native -fopenmp');
        row.ours.push(decode);
        row.theirs.push(c(programs['run-omp'], fp32, tokenizer, shape.steps + 1, 2));
      }
      if (programs['run-fast']) {
        const row = r('decode fp32 (greedy; run.c -Ofast -march=native on 1 thread)', 'run.c -Ofast -march=native');
        row.ours.push(decode);
        row.theirs.push(c(programs['run-fast'], fp32, tokenizer, shape.steps + 1, 1));
      }
      if (programs['run'] && shape.name !== '110M') {
        const row = r('decode fp32 (greedy; run.c -O3 on 1 thread)', 'run.c -O3');
        row.ours.push(decode);
        row.theirs.push(c(programs['run'], fp32, tokenizer, shape.steps + 1, 1));
      }
      if (shape.int8 && programs['runq-omp']) {
        const row = r('decode int8 (greedy, 2 threads)', 'runq.c -Ofast -march=native -fopenmp');
        row.ours.push(ours(v2, ['-n', String(shape.steps), '--prompt-len', '1']).decodeTokensPerSecond);
        row.theirs.push(c(programs['runq-omp'], v2, tokenizer, shape.steps + 1, 2));
      }
      if (session !== undefined && tokens !== undefined) {
        const row = r(`prefill fp32, ${shape.prompt} tokens to the last logits (2 threads)`, `onnxruntime-node ${ONNXRUNTIME_VERSION}`);
        row.ours.push(ours(fp32, ['-n', '1', '--prompt-len', String(shape.prompt)]).prefillTokensPerSecond);
        row.theirs.push(await ortPrefill(session, ort!, tokens, shape.prompt, 3));
      }
    }
    await session?.release();
  }

  const fmt = (v: number): string => v.toFixed(v < 100 ? 1 : 0);
  const range = (xs: number[]): string => `${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))}`;
  console.log(`| shape | measure | llama2ts tok/s | reference | reference tok/s | ratio |`);
  console.log('|---|---|---|---|---|---|');
  for (const row of rows) {
    const a = median(row.ours), b = median(row.theirs);
    console.log(`| ${row.shape} | ${row.what} | ${fmt(a)} (${range(row.ours)}) | ${row.reference} | ${fmt(b)} (${range(row.theirs)}) | ${(a / b).toFixed(2)}× |`);
  }
  const load1 = loadavg()[0]!;
  console.log(`\nmedians of ${rounds} interleaved rounds (ranges in brackets); load average ${load0.toFixed(1)} at the start, ${load1.toFixed(1)} at the end`);
  writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), rounds, load: [load0, load1], rows }, null, 2) + '\n');
  console.log(`wrote ${out}`);
}
