// `npm run bench -- --server`: what several requests at once get from `llama2 serve`. One server
// (2 threads, --max-concurrent 4) on `llama2 init` weights of the 15M shape; each round sends one
// completion alone, then N at once (the same prompt, greedy, max_tokens each), interleaved round by
// round; the figure is the total completion tokens / the wall time from the first request sent to
// the last answer received. Sessions of one model decode together (src/infer/decode-batch.ts: each
// weight read once for all of them), so N streams should deliver more than one.
//
//   node dist/bench/run.js --server [--rounds 5] [--streams 4] [--tokens 200] [--threads 2] [--quantize q8] [--out FILE]

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { intFlag, parseFlags, stringFlag } from '../src/cli/flags.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const refdata = process.env['LLAMA2_REFDATA'] ?? '../shared';
const SHAPE_15M = ['--dim', '288', '--layers', '6', '--heads', '6', '--vocab', '32000', '--seq-len', '256'];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Starts the server; resolves with its URL once it prints "listening on URL". */
function startServer(args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [cli, 'serve', ...args, '--port', '0', '--quiet'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const m = /^listening on (\S+)/.exec(line);
      if (m) resolve({ child, url: m[1]!.replace(/\/$/, '') });
    });
    child.once('exit', (code) => reject(new Error(`llama2 serve exited (${code}): ${stderr.slice(-500)}`)));
  });
}

/** One completion; returns its completion tokens. */
async function complete(url: string, tokens: number): Promise<number> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: tokens, temperature: 0 }),
  });
  if (!res.ok) throw new Error(`POST /v1/completions: ${res.status} ${await res.text()}`);
  const body = await res.json() as { usage: { completion_tokens: number } };
  return body.usage.completion_tokens;
}

/** n requests at once: total completion tokens per second of wall time. */
async function streams(url: string, n: number, tokens: number): Promise<number> {
  const t0 = performance.now();
  const counts = await Promise.all(Array.from({ length: n }, () => complete(url, tokens)));
  const seconds = (performance.now() - t0) / 1000;
  const total = counts.reduce((a, b) => a + b, 0);
  if (total < n * tokens) console.log(`  (note: ${total} of ${n * tokens} tokens: a stream stopped early)`);
  return total / seconds;
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parseFlags(argv, {
    server: { type: 'boolean' }, rounds: { type: 'string' }, streams: { type: 'string' }, tokens: { type: 'string' },
    threads: { type: 'string' }, quantize: { type: 'string' }, out: { type: 'string' },
  });
  const rounds = intFlag(values, 'rounds', 5, 1, 100);
  const n = intFlag(values, 'streams', 4, 2, 64);
  const tokens = intFlag(values, 'tokens', 200, 1, 240);
  const threads = intFlag(values, 'threads', 2, 1, 256);
  const quantize = stringFlag(values, 'quantize', 'none');
  const out = stringFlag(values, 'out', 'bench-server.json');
  const dir = join(tmpdir(), 'llama2ts-bench');
  mkdirSync(dir, { recursive: true });
  const model = join(dir, '15M.v0.bin');
  if (!existsSync(model)) {
    const r = spawnSync(process.execPath, [cli, 'init', ...SHAPE_15M, '--seed', '1', '--format', 'v0', '-o', model], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`llama2 init failed: ${r.stderr}`);
  }
  const tokenizer = join(refdata, 'data', 'tokenizers', 'tokenizer.bin');
  const load0 = loadavg()[0]!;
  console.log(`machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, Node.js ${process.version}; load average ${load0.toFixed(1)}`);
  const { child, url } = await startServer([model, '-z', tokenizer, '--threads', String(threads), '--max-concurrent', String(n), '--quantize', quantize]);
  const one: number[] = [], many: number[] = [];
  try {
    await streams(url, n, 20); // warm-up: every session used once
    for (let round = 0; round < rounds; round++) {
      one.push(await streams(url, 1, tokens));
      many.push(await streams(url, n, tokens));
      console.log(`round ${round + 1}: 1 stream ${one.at(-1)!.toFixed(0)} tok/s, ${n} streams ${many.at(-1)!.toFixed(0)} tok/s in all`);
    }
  } finally {
    child.kill('SIGTERM');
  }
  const fmt = (xs: number[]): string => `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`;
  const load1 = loadavg()[0]!;
  console.log(`\n| 15M shape, ${quantize === 'none' ? 'float32' : quantize}, ${threads} threads, ${tokens} tokens per stream | total tok/s |`);
  console.log('|---|---|');
  console.log(`| 1 stream | ${fmt(one)} |`);
  console.log(`| ${n} streams at once | ${fmt(many)} |`);
  console.log(`\n${n} streams / 1: ${(median(many) / median(one)).toFixed(2)}× (medians of ${rounds} interleaved rounds); load average ${load0.toFixed(1)} at the start, ${load1.toFixed(1)} at the end`);
  writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), rounds, streams: n, tokens, threads, quantize, load: [load0, load1], one, many }, null, 2) + '\n');
  console.log(`wrote ${out}`);
}
