// `npm run bench:llama-cpp`: llama2ts and llama.cpp side by side on the same GGUF files, on the same
// threads, greedily. Models: stories260K (its real weights) and the 15M and 110M shapes (`llama2
// init` weights, the Llama 2 32k vocabulary), each exported by `llama2 export --format gguf` as f32
// and as q8_0. llama2ts runs the f32 file in float32 and the q8_0 file as int8 (its Q8_0 blocks as
// they are, groups of 32); llama.cpp runs them through node-llama-cpp 3.21.1 (CPU build, installed on
// demand: bench/llama-cpp.ts).
//
// One run = a prompt of P tokens (BOS, then ids spread over the vocabulary) then N greedy decode
// steps. Prompt: the first P − 1 tokens fed without logits — llama.cpp as one batch (its matrix ×
// matrix path), llama2ts by its prefill (blocks of tokens); decode: N forward passes, each picking
// the argmax.
// Each cell runs in a child process of its own; inside it the two engines alternate, one warm-up
// run each, then R timed runs each in alternating order, and the medians are reported with their
// ranges. llama.cpp's decode is timed twice: by its own timer (llama_perf_context: llama_decode
// only) and by the wall clock around node-llama-cpp's token loop (which adds its per-token cost,
// dominant for stories260K); the ratio is against llama.cpp's own timer. The machine's load
// average is recorded before and after every cell.
//
// Thread counts: 1 and every core (or --threads N), the same for both engines.
//
//   node dist/bench/vs-llama-cpp.js [--only 260K,15M,110M] [--threads N] [--repeats R]
//                                   [--prompt P] [--steps N] [--out FILE]

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { intFlag, parseFlags, stringFlag } from '../src/cli/flags.js';
import { loadTransformer } from '../src/infer/load.js';
import { createKernels } from '../src/kernels/kernel-set.js';
import { type LlamaCpp, NODE_LLAMA_CPP_VERSION, loadLlamaCpp } from './llama-cpp.js';

const self = fileURLToPath(import.meta.url);
const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const refdata = fileURLToPath(new URL(`../../${process.env['LLAMA2_REFDATA'] ?? '../shared'}/`, import.meta.url));

interface Model {
  readonly name: string;
  /** `llama2 init` flags, or a checkpoint of the reference data. */
  readonly init?: string[];
  readonly checkpoint?: string;
  readonly tokenizer: string;
}

const MODELS: Model[] = [
  { name: '260K', checkpoint: join(refdata, 'data/models/stories260K.bin'), tokenizer: join(refdata, 'data/models/tok512.bin') },
  { name: '15M', init: ['--dim', '288', '--layers', '6', '--heads', '6', '--vocab', '32000', '--seq-len', '256'], tokenizer: join(refdata, 'data/tokenizers/tokenizer.bin') },
  { name: '110M', init: ['--dim', '768', '--layers', '12', '--heads', '12', '--vocab', '32000', '--seq-len', '1024'], tokenizer: join(refdata, 'data/tokenizers/tokenizer.bin') },
];

/** Medians and ranges of one engine in one cell, tokens per second. */
interface Figures {
  decode: number; decodeMin: number; decodeMax: number;
  prompt: number; promptMin: number; promptMax: number;
}

interface CellResult {
  llama2ts: Figures;
  /** llama.cpp by its own timer (llama_decode). */
  llamaCpp: Figures;
  /** llama.cpp by the wall clock around node-llama-cpp's calls. */
  llamaCppWall: Figures;
  /** Do both engines pick the same greedy tokens? The index of the first difference, or -1. */
  firstDifference: number;
}

interface Row extends CellResult {
  model: string;
  dtype: 'f32' | 'q8_0';
  threads: number;
  loadBefore: number;
  loadAfter: number;
}

function llama2(args: string[]): void {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`llama2 ${args.join(' ')} failed: ${r.stderr}`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function figures(decode: number[], prompt: number[]): Figures {
  return {
    decode: median(decode), decodeMin: Math.min(...decode), decodeMax: Math.max(...decode),
    prompt: median(prompt), promptMin: Math.min(...prompt), promptMax: Math.max(...prompt),
  };
}

/** The prompt both engines are fed: BOS, then ids spread over the vocabulary (as `llama2 bench`). */
function promptIds(vocab: number, p: number): number[] {
  const ids = [1];
  for (let pos = 0; ids.length < p; pos++) ids.push((pos * 7919 + 13) % vocab);
  return ids;
}

// ----------------------------------------------------------------------------------------------
// One cell, in a child process

async function runCell(gguf: string, quantize: 'none' | 'q8', threads: number, p: number, n: number, repeats: number): Promise<CellResult> {
  const timings: string[] = [];
  const llama = await loadLlamaCpp((_level, message) => timings.push(message));
  if (typeof llama === 'string') throw new Error(llama);
  const ours = loadTransformer(gguf, await createKernels({ threads }), { quantize });
  const prompt = Int32Array.from(promptIds(ours.config.vocabSize, p));

  const model = await (llama as LlamaCpp).loadModel({ modelPath: gguf });
  const context = await model.createContext({
    contextSize: p + n + 8, threads: { ideal: threads, min: threads }, batchSize: p, performanceTracking: true,
  });
  const seq = context.getSequence();

  const runOurs = (): { promptMs: number; decodeMs: number; tokens: number[] } => {
    const t0 = performance.now();
    ours.prefill(prompt.subarray(0, p - 1), 0);
    const t1 = performance.now();
    const tokens: number[] = [];
    let token = prompt[p - 1]!;
    for (let pos = p - 1; tokens.length < n; pos++) {
      const logits = ours.forward(token, pos);
      let best = 0;
      for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
      tokens.push(best);
      token = best;
    }
    return { promptMs: t1 - t0, decodeMs: performance.now() - t1, tokens };
  };
  const runTheirs = async (): Promise<{ promptMs: number; decodeMs: number; ownPromptMs: number; ownDecodeMs: number; tokens: number[] }> => {
    await seq.clearHistory();
    await context.printTimings(); // resets llama.cpp's counters
    timings.length = 0;
    const t0 = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens([...prompt.subarray(0, p - 1)]);
    const t1 = performance.now();
    const tokens: number[] = [];
    for await (const token of seq.evaluate([prompt[p - 1]!], { temperature: 0, yieldEogToken: true })) {
      tokens.push(token);
      if (tokens.length >= n) break;
    }
    const t2 = performance.now();
    if (tokens.length !== n) throw new Error(`llama.cpp stopped after ${tokens.length} of ${n} tokens`);
    timings.length = 0;
    await context.printTimings();
    const text = timings.join('');
    const own = (label: string): number => {
      const m = new RegExp(`print:\\s+${label} time =\\s*([0-9.]+) ms /\\s*(\\d+)`).exec(text);
      if (m === null) throw new Error(`no '${label} time' in llama.cpp's timings: ${text}`);
      return Number(m[1]);
    };
    return { promptMs: t1 - t0, decodeMs: t2 - t1, ownPromptMs: own('prompt eval'), ownDecodeMs: own('eval'), tokens };
  };

  const rate = (count: number, ms: number): number => (count / ms) * 1000;
  const o = { decode: [] as number[], prompt: [] as number[] };
  const t = { decode: [] as number[], prompt: [] as number[] };
  const w = { decode: [] as number[], prompt: [] as number[] };
  let firstDifference = -1;
  for (let r = -1; r < repeats; r++) {
    // alternate which engine goes first; run -1 is the warm-up of both
    const order = r % 2 === 0 ? ['ours', 'theirs'] : ['theirs', 'ours'];
    let a: number[] = [], b: number[] = [];
    for (const who of order) {
      await new Promise((resolve) => setTimeout(resolve, 50)); // let the other engine's threads park
      if (who === 'ours') {
        const x = runOurs();
        a = x.tokens;
        if (r >= 0) { o.prompt.push(rate(p - 1, x.promptMs)); o.decode.push(rate(n, x.decodeMs)); }
      } else {
        const x = await runTheirs();
        b = x.tokens;
        if (r >= 0) {
          t.prompt.push(rate(p - 1, x.ownPromptMs)); t.decode.push(rate(n, x.ownDecodeMs));
          w.prompt.push(rate(p - 1, x.promptMs)); w.decode.push(rate(n, x.decodeMs));
        }
      }
    }
    if (r === -1) firstDifference = a.findIndex((tok, i) => tok !== b[i]);
  }
  await context.dispose();
  await model.dispose();
  await llama.dispose();
  return { llama2ts: figures(o.decode, o.prompt), llamaCpp: figures(t.decode, t.prompt), llamaCppWall: figures(w.decode, w.prompt), firstDifference };
}

// ----------------------------------------------------------------------------------------------
// The matrix

function cellInChild(gguf: string, quantize: 'none' | 'q8', threads: number, p: number, n: number, repeats: number): CellResult {
  const r = spawnSync(process.execPath, [self, '--cell', gguf, '--quantize', quantize, '--threads', String(threads),
    '--prompt', String(p), '--steps', String(n), '--repeats', String(repeats)], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`cell ${gguf} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as CellResult;
}

const f0 = (x: number): string => x.toFixed(0);
const range = (a: number, b: number): string => `${f0(a)}–${f0(b)}`;

async function main(): Promise<void> {
  const { values } = parseFlags(process.argv.slice(2), {
    cell: { type: 'string' }, quantize: { type: 'string' }, only: { type: 'string' }, threads: { type: 'string' },
    repeats: { type: 'string' }, prompt: { type: 'string' }, steps: { type: 'string' }, out: { type: 'string' },
  });
  const threadsFlag = values['threads'] === undefined ? undefined : intFlag(values, 'threads', 1, 1, 256);
  const repeats = intFlag(values, 'repeats', 5, 1, 1000);
  const p = intFlag(values, 'prompt', 64, 2, 4096);
  const n = intFlag(values, 'steps', 128, 1, 4096);
  const cell = stringFlag(values, 'cell');
  if (cell !== undefined) {
    const quantize = stringFlag(values, 'quantize', 'none') === 'q8' ? 'q8' : 'none';
    console.log(JSON.stringify(await runCell(cell, quantize, threadsFlag ?? 1, p, n, repeats)));
    return;
  }

  const available = await loadLlamaCpp();
  if (typeof available === 'string') {
    console.error(`bench:llama-cpp: ${available}`);
    process.exitCode = 1;
    return;
  }
  await available.dispose();
  const only = stringFlag(values, 'only')?.split(',');
  const out = stringFlag(values, 'out', 'bench-llama-cpp.json');
  const dir = join(tmpdir(), 'llama2ts-bench');
  mkdirSync(dir, { recursive: true });
  const machine = `${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores, Node.js ${process.version}, node-llama-cpp ${NODE_LLAMA_CPP_VERSION}`;
  console.log(`machine: ${machine}`);
  const threadCounts = threadsFlag !== undefined ? [threadsFlag] : [...new Set([1, availableParallelism()])];
  console.log(`each cell: prompt ${p} tokens, ${n} greedy decode steps, median of ${repeats} interleaved runs (range)`);
  if (loadavg()[0]! > availableParallelism()) {
    console.log(`note: the machine is busy (load ${loadavg()[0]!.toFixed(1)} on ${availableParallelism()} cores): llama.cpp's threads ` +
      'wait for each other at every graph node by spinning, and lose most of their time when a core is taken away; ' +
      'figures on more than one thread then measure the neighbours more than the engines');
  }
  console.log('');
  console.log('| model | GGUF | threads | llama.cpp decode tok/s (own timer) | (wall, via node-llama-cpp) | llama2ts decode tok/s | ratio | llama.cpp prompt tok/s | llama2ts prompt tok/s | ratio | same tokens | load |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  const rows: Row[] = [];
  for (const m of MODELS) {
    if (only && !only.includes(m.name)) continue;
    let bin = m.checkpoint;
    if (bin === undefined) {
      bin = join(dir, `${m.name}.bin`);
      if (!existsSync(bin)) llama2(['init', ...m.init!, '--seed', '1', '-o', bin]);
    }
    for (const dtype of ['f32', 'q8_0'] as const) {
      const gguf = join(dir, `${m.name}.${dtype}.gguf`);
      if (!existsSync(gguf)) llama2(['export', bin, '-z', m.tokenizer, '--format', 'gguf', '--dtype', dtype, '-o', gguf]);
      for (const threads of threadCounts) {
        const loadBefore = loadavg()[0]!;
        const r = cellInChild(gguf, dtype === 'q8_0' ? 'q8' : 'none', threads, p, n, repeats);
        const row: Row = { model: m.name, dtype, threads, loadBefore, loadAfter: loadavg()[0]!, ...r };
        rows.push(row);
        const x = row.llama2ts, y = row.llamaCpp, z = row.llamaCppWall;
        console.log(`| ${m.name} | ${dtype} | ${threads} | ${f0(y.decode)} (${range(y.decodeMin, y.decodeMax)}) | ${f0(z.decode)} | ` +
          `${f0(x.decode)} (${range(x.decodeMin, x.decodeMax)}) | **${(x.decode / y.decode).toFixed(2)}×** | ` +
          `${f0(y.prompt)} | ${f0(x.prompt)} | ${(x.prompt / y.prompt).toFixed(2)}× | ` +
          `${row.firstDifference < 0 ? `all ${n}` : `first ${row.firstDifference}`} | ${row.loadBefore.toFixed(1)} → ${row.loadAfter.toFixed(1)} |`);
      }
    }
  }
  writeFileSync(out, JSON.stringify({ machine, date: new Date().toISOString(), prompt: p, steps: n, repeats, rows }, null, 2) + '\n');
  console.log(`\nwrote ${out}`);
}

await main();
