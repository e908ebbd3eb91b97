// `npm run bench -- --big`: big models side by side with llama2.c's runq.c — the TinyLlama-1.1B and
// Llama-2-7B shapes as `llama2 init --format v2` checkpoints (random weights: speed does not depend
// on their values), the SAME v2 file run by both, 2 threads each, interleaved round by round
// (which program goes first alternates):
//
//   decode    greedy tok/s. runq: `runq MODEL -t 0 -n D+1` from BOS, its "achieved tok/s" (D
//             tokens, the first forward excluded, as run.c counts). llama2ts: `llama2 bench -t 0
//             --prompt-len P -n D`, the D decode steps after the prompt.
//   prefill   a P-token prompt (BOS + P-1) to its last logits. runq feeds it token by token:
//             `runq MODEL -i PROMPT -n P` (a text of P-1 tokens), its achieved tok/s over the
//             prompt. llama2ts: the same `llama2 bench` run's prefill (batched, timed until the
//             last logits are out).
//   RSS       peak resident set (GNU time's %M) of each process, against the bound of issue 13:
//             file size + KV cache (2 · 4 · layers · context · kvDim bytes, the context llama2ts runs
//             with) + 300 MiB.
//   load      llama2ts: `llama2 bench`'s loadMs (file → memories, streamed); runq: its wall time
//             minus its timed forwards (an estimate: it maps the file and dequantizes the embedding).
//
// Every process is fresh: no warm-up run inside it (with these sizes a run is seconds to minutes
// and the kernels are WebAssembly, compiled before the first call). The file is read once before
// the first round so that the page cache holds it for both programs.
//
// A round can be run on its own and the rounds gathered in a results file, so that a benchmark
// lock can be released between rounds:
//
//   node dist/bench/run.js --big [--models DIR] [--runq PROGRAM] [--tokenizer tokenizer.bin]
//       [--only 1.1B,7B] [--rounds R] [--decode D] [--prompt P] [--results FILE] [--report]
//
// --results FILE appends each round's figures to FILE (JSON lines) and reports every round in it;
// --report only prints the table of FILE. The models are made (streamed, a few MiB of memory) in
// --models when missing.

import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, openSync, readFileSync, readSync, closeSync, statSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { intFlag, parseFlags, stringFlag } from '../src/cli/flags.js';
import { kvDim } from '../src/model/config.js';
import { readCheckpointHeader } from '../src/model/checkpoint.js';
import { loadTokenizer } from '../src/tokenizer/index.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const refdata = process.env['LLAMA2_REFDATA'] ?? '../shared';
const MiB = 2 ** 20;

interface Shape {
  readonly name: string;
  readonly file: string;
  readonly init: string[];
  /** decode steps timed (fewer for 7B: a round is minutes) */
  readonly decode: number;
}

const SHAPES: Shape[] = [
  {
    name: '1.1B', file: 'tinyllama-shape.v2.bin', decode: 64,
    init: ['--dim', '2048', '--layers', '22', '--heads', '32', '--kv-heads', '4', '--hidden-dim', '5632', '--vocab', '32000', '--seq-len', '2048'],
  },
  {
    name: '7B', file: 'llama2-7b-shape.v2.bin', decode: 24,
    init: ['--dim', '4096', '--layers', '32', '--heads', '32', '--hidden-dim', '11008', '--vocab', '32000', '--seq-len', '4096'],
  },
];

/** One round's figures for one shape. */
interface Round {
  shape: string;
  date: string;
  load: number[];
  fileBytes: number;
  kvBytes: number;
  contextLength: number;
  prompt: number;
  decode: number;
  ours: { decode: number; prefill: number; loadMs: number; rssBytes: number };
  runq: { decode: number; prefill: number; loadMs: number; rssBytes: number };
}

/** Runs a program under GNU time: its output, wall milliseconds and peak RSS in bytes. */
function timed(cmd: string, args: string[], env: Record<string, string> = {}): { stdout: string; stderr: string; wallMs: number; rssBytes: number } {
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'maxrss_kb=%M', cmd, ...args], { encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, ...env } });
  const wallMs = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${(r.stderr ?? '').slice(-800)}`);
  const m = /maxrss_kb=(\d+)/.exec(r.stderr);
  if (!m) throw new Error(`${cmd}: GNU time printed no maxrss`);
  return { stdout: r.stdout, stderr: r.stderr, wallMs, rssBytes: Number(m[1]) * 1024 };
}

/** runq's "achieved tok/s". */
function achieved(stderr: string, program: string): number {
  const m = /achieved tok\/s: ([\d.]+)/.exec(stderr);
  if (!m) throw new Error(`${program}: no "achieved tok/s" in its output`);
  return Number(m[1]);
}

/** A text of exactly `count` tokens (without BOS) for this tokenizer: common words, one token each. */
function promptOf(tokenizerPath: string, count: number): string {
  const tok = loadTokenizer(tokenizerPath);
  const words = 'Once upon a time there was a little girl who lived in a small house near the big forest and she liked to play with her dog every day'.split(' ');
  let text = '';
  for (let i = 0; tok.encode(text, { bos: false }).length < count; i++) text += (i === 0 ? '' : ' ') + words[i % words.length];
  while (tok.encode(text, { bos: false }).length > count) text = text.slice(0, -1);
  if (tok.encode(text, { bos: false }).length !== count) throw new Error(`could not make a prompt of ${count} tokens`);
  return text;
}

/** Reads a file through once so that the page cache holds it. */
function warmPageCache(path: string): void {
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(16 * MiB);
  try {
    for (let pos = 0; ; pos += buf.length) if (readSync(fd, buf, 0, buf.length, pos) <= 0) break;
  } finally {
    closeSync(fd);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function measureRound(shape: Shape, model: string, runq: string, tokenizer: string, prompt: number, decode: number, text: string, runqFirst: boolean): Round {
  const h = readCheckpointHeader(model);
  const c = h.config;
  const load0 = loadavg()[0]!;
  const runOurs = () => {
    const r = timed(process.execPath, [cli, 'bench', model, '--threads', '2', '-t', '0', '--prompt-len', String(prompt), '-n', String(decode), '--warmup', '0', '--repeats', '1', '--json']);
    const j = JSON.parse(r.stdout) as { decodeTokensPerSecond: number; prefillTokensPerSecond: number; loadMs: number; contextLength: number };
    return { decode: j.decodeTokensPerSecond, prefill: j.prefillTokensPerSecond, loadMs: j.loadMs, rssBytes: r.rssBytes, contextLength: j.contextLength };
  };
  const env = { OMP_NUM_THREADS: '2' };
  const runRunq = () => {
    const p = timed(runq, [model, '-z', tokenizer, '-t', '0', '-n', String(prompt), '-i', text], env);
    const prefill = achieved(p.stderr, runq);
    const d = timed(runq, [model, '-z', tokenizer, '-t', '0', '-n', String(decode + 1)], env);
    const rate = achieved(d.stderr, runq);
    // wall time less its forwards (decode + 1 of them at the measured rate)
    const loadMs = Math.max(0, d.wallMs - ((decode + 1) / rate) * 1000);
    return { decode: rate, prefill, loadMs, rssBytes: Math.max(p.rssBytes, d.rssBytes) };
  };
  let ours, theirs;
  if (runqFirst) {
    theirs = runRunq();
    ours = runOurs();
  } else {
    ours = runOurs();
    theirs = runRunq();
  }
  const { contextLength, ...oursFigures } = ours;
  return {
    shape: shape.name, date: new Date().toISOString(), load: [load0, loadavg()[0]!], fileBytes: h.fileBytes,
    kvBytes: 2 * 4 * c.nLayers * contextLength * kvDim(c), contextLength, prompt, decode,
    ours: oursFigures, runq: theirs,
  };
}

function report(rounds: Round[]): void {
  const fmt = (v: number, digits = 2): string => v.toFixed(digits);
  const cell = (xs: number[], digits = 2): string => `${fmt(median(xs), digits)} (${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)})`;
  console.log('| shape | measure | llama2ts | runq.c (-Ofast -march=native -fopenmp) | ratio |');
  console.log('|---|---|---|---|---|');
  for (const name of [...new Set(rounds.map((r) => r.shape))]) {
    const rs = rounds.filter((r) => r.shape === name);
    const r0 = rs[0]!;
    const row = (what: string, a: number[], b: number[], digits = 2, ratio = true): void => {
      console.log(`| ${name} | ${what} | ${cell(a, digits)} | ${cell(b, digits)} | ${ratio ? `${(median(a) / median(b)).toFixed(2)}×` : ''} |`);
    };
    row(`decode tok/s (greedy, 2 threads, ${r0.decode} steps)`, rs.map((r) => r.ours.decode), rs.map((r) => r.runq.decode));
    row(`prefill tok/s (${r0.prompt}-token prompt to its last logits)`, rs.map((r) => r.ours.prefill), rs.map((r) => r.runq.prefill));
    row('peak RSS MiB', rs.map((r) => r.ours.rssBytes / MiB), rs.map((r) => r.runq.rssBytes / MiB), 0, false);
    row('load s (runq: wall − forwards, estimated)', rs.map((r) => r.ours.loadMs / 1000), rs.map((r) => r.runq.loadMs / 1000), 1, false);
    const bound = (r0.fileBytes + r0.kvBytes) / MiB + 300;
    const peak = Math.max(...rs.map((r) => r.ours.rssBytes)) / MiB;
    console.log(`\n${name}: file ${(r0.fileBytes / MiB).toFixed(0)} MiB, KV cache ${(r0.kvBytes / MiB).toFixed(0)} MiB (context ${r0.contextLength}); ` +
      `bound file + KV + 300 MiB = ${bound.toFixed(0)} MiB; llama2ts's highest peak RSS ${peak.toFixed(0)} MiB (${peak <= bound ? 'within' : 'OVER'}); ` +
      `${rs.length} rounds, ${rs[0]!.date} – ${rs[rs.length - 1]!.date}, load average ${Math.min(...rs.flatMap((r) => r.load)).toFixed(1)}–${Math.max(...rs.flatMap((r) => r.load)).toFixed(1)}\n`);
  }
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parseFlags(argv, {
    big: { type: 'boolean' }, models: { type: 'string' }, runq: { type: 'string' }, tokenizer: { type: 'string' }, only: { type: 'string' },
    rounds: { type: 'string' }, decode: { type: 'string' }, prompt: { type: 'string' }, results: { type: 'string' }, report: { type: 'boolean' },
  });
  const results = stringFlag(values, 'results');
  const past = (): Round[] => (results !== undefined && existsSync(results)
    ? readFileSync(results, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Round) : []);
  if (values['report'] === true) {
    if (results === undefined) throw new Error('--report needs --results FILE');
    report(past());
    return;
  }
  const models = stringFlag(values, 'models', '../ext/models');
  const runq = stringFlag(values, 'runq', '../ext/llama2.c/runq-omp');
  const tokenizer = stringFlag(values, 'tokenizer', join(refdata, 'data', 'tokenizers', 'tokenizer.bin'));
  const rounds = intFlag(values, 'rounds', 5, 1, 100);
  const prompt = intFlag(values, 'prompt', 128, 2, 4096);
  const only = stringFlag(values, 'only')?.split(',');
  if (!existsSync(runq)) throw new Error(`no runq program at ${runq}: build llama2.c's runq.c outside this repository (gcc -Ofast -march=native -fopenmp runq.c -lm -o runq-omp) and name it with --runq`);
  mkdirSync(models, { recursive: true });
  console.log(`machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, Node.js ${process.version}; load average ${loadavg()[0]!.toFixed(1)}; runq: ${runq}`);
  const text = promptOf(tokenizer, prompt - 1);
  const done: Round[] = [];
  for (const shape of SHAPES) {
    if (only && !only.includes(shape.name)) continue;
    const model = join(models, shape.file);
    if (!existsSync(model)) {
      console.log(`making ${model} (llama2 init --format v2 ${shape.init.join(' ')})`);
      const r = spawnSync(process.execPath, [cli, 'init', ...shape.init, '--format', 'v2', '--seed', '1', '-o', model], { stdio: 'inherit' });
      if (r.status !== 0) throw new Error(`llama2 init failed for ${shape.name}`);
    }
    console.log(`${shape.name}: ${model} (${(statSync(model).size / MiB).toFixed(0)} MiB)`);
    warmPageCache(model);
    const decode = intFlag(values, 'decode', shape.decode, 1);
    const before = past().filter((r) => r.shape === shape.name).length;
    for (let i = 0; i < rounds; i++) {
      const round = measureRound(shape, model, runq, tokenizer, prompt, decode, text, (before + i) % 2 === 1);
      console.log(`  round ${before + i + 1}: decode ${round.ours.decode.toFixed(2)} vs ${round.runq.decode.toFixed(2)} tok/s, prefill ${round.ours.prefill.toFixed(2)} vs ${round.runq.prefill.toFixed(2)} tok/s, ` +
        `peak RSS ${(round.ours.rssBytes / MiB).toFixed(0)} vs ${(round.runq.rssBytes / MiB).toFixed(0)} MiB, load ${(round.ours.loadMs / 1000).toFixed(1)} s; load average ${round.load.map((l) => l.toFixed(1)).join(' → ')}`);
      done.push(round);
      if (results !== undefined) appendFileSync(results, JSON.stringify(round) + '\n');
    }
  }
  console.log('');
  report(results !== undefined ? past() : done);
}
