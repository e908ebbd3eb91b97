// The fuzz test (issue 19): every parser of outside input — model files of every format, tokenizers,
// training checkpoints, dataset archives, the server's request bodies and raw HTTP requests (the
// targets are listed in test/fuzz-targets.ts) — gets ≥ 1,000 mutated inputs (test/fuzz-mutate.ts),
// and each must parse or be refused with a one-line LlamaError: no other exception, no hang.
//
// Each target runs in a worker thread (two at a time), so that a parse stuck in a loop can be
// detected (no progress for HANG_MS) and stopped. Inputs are deterministic: a failure names its
// target and iteration, and the mutated file is kept; to run that one input again:
//   FUZZ_ONLY='tokenizer.bin (llama2.c):417' node --test dist/test/fuzz.test.js
// More inputs (a longer hunt): FUZZ_ITERATIONS=100000, other ones: FUZZ_SEED=2.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { LlamaError } from '../src/errors.js';
import { FuzzRng, mutateBytes, mutateJson } from './fuzz-mutate.js';
import { FUZZ_TARGETS, writeCompanions } from './fuzz-targets.js';
import { needsRefdata } from './refdata.js';

const ITERATIONS = Number(process.env['FUZZ_ITERATIONS'] ?? 1000);
const SEED = Number(process.env['FUZZ_SEED'] ?? 1);
const ONLY = process.env['FUZZ_ONLY'];
/** A target that reports no progress for this long is stuck. */
const HANG_MS = 10_000;

interface Job {
  readonly target: string;
  readonly first: number;
  readonly count: number;
  readonly seed: number;
}

type Report =
  | { type: 'start'; i: number }
  | { type: 'crash'; i: number; error: string; kept: string }
  | { type: 'done'; parsed: number; refused: number; ms: number; error?: string };

/** A number from a target's name, so that each target gets its own inputs. */
function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

// ------------------------------------------------------------------------------------------------
// The worker: makes a target's seeds, then mutates and parses

async function work(job: Job, post: (r: Report) => void): Promise<void> {
  const target = FUZZ_TARGETS.find((t) => t.name === job.target)!;
  const scratch = mkdtempSync(join(tmpdir(), 'llama2ts-fuzz-'));
  let parsed = 0;
  let refused = 0;
  let crashes = 0;
  const started = performance.now();
  try {
    mkdirSync(join(scratch, 'seeds'));
    const seeds = await target.seeds(join(scratch, 'seeds'));
    const all = seeds.map((s) => s.bytes);
    const prepared = new Set<string>();
    // every seed must parse as it is: a target whose seeds are refused fuzzes nothing
    for (const [k, seed] of seeds.entries()) {
      const dir = join(scratch, `seed-${k}`);
      writeCompanions(dir, seed);
      writeFileSync(join(dir, seed.file), seed.bytes);
      try {
        await target.parse({ bytes: seed.bytes, path: join(dir, seed.file), dir });
      } catch (err) {
        throw new Error(`seed ${k} (${seed.file}) does not parse: ${(err as Error).message}`);
      }
    }
    for (let i = job.first; i < job.first + job.count && crashes < 5; i++) {
      const rng = new FuzzRng(hash(target.name) ^ Math.imul(job.seed, 0x9e3779b1) ^ Math.imul(i + 1, 0x85ebca77));
      const seed = seeds[rng.int(seeds.length)]!;
      const dir = join(scratch, `input-${seeds.indexOf(seed)}`);
      if (!prepared.has(dir)) {
        writeCompanions(dir, seed);
        prepared.add(dir);
      }
      const bytes = target.json && rng.chance(0.8)
        ? new TextEncoder().encode(mutateJson(new TextDecoder().decode(seed.bytes), rng))
        : mutateBytes(seed.bytes, rng, all, target.head);
      const path = join(dir, seed.file);
      writeFileSync(path, bytes);
      post({ type: 'start', i });
      try {
        await target.parse({ bytes, path, dir });
        parsed++;
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (err instanceof LlamaError && !message.includes('\n') && message.length > 0) {
          refused++;
          continue;
        }
        crashes++;
        const kept = join(tmpdir(), `llama2ts-fuzz-${target.name.replace(/\W+/g, '_')}-${i}-${seed.file}`);
        writeFileSync(kept, bytes);
        const what = err instanceof LlamaError ? `a LlamaError of ${message.split('\n').length} lines` : `${(err as Error)?.name ?? typeof err}`;
        post({ type: 'crash', i, error: `${what}: ${message.slice(0, 300)}\n${((err as Error)?.stack ?? '').split('\n').slice(1, 6).join('\n')}`, kept });
      }
    }
    await target.teardown?.();
    post({ type: 'done', parsed, refused, ms: performance.now() - started });
  } catch (err) {
    post({ type: 'done', parsed, refused, ms: performance.now() - started, error: (err as Error)?.stack ?? String(err) });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (!isMainThread && (workerData as { fuzz?: Job } | null)?.fuzz !== undefined) {
  const job = (workerData as { fuzz: Job }).fuzz;
  await work(job, (r) => parentPort!.postMessage(r));
}

// ------------------------------------------------------------------------------------------------
// The test: one worker per target, two at a time

interface Outcome {
  parsed: number;
  refused: number;
  ms: number;
  crashes: Array<{ i: number; error: string; kept: string }>;
  hang?: number;
  error?: string;
}

function runTarget(job: Job): Promise<Outcome> {
  return new Promise((resolve) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: { fuzz: job }, resourceLimits: { maxOldGenerationSizeMb: 768 } });
    const outcome: Outcome = { parsed: 0, refused: 0, ms: 0, crashes: [] };
    let current = job.first - 1;
    let timer = setTimeout(() => undefined, 0);
    const watch = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        outcome.hang = current;
        void worker.terminate();
      }, HANG_MS);
    };
    watch();
    worker.on('message', (r: Report) => {
      watch();
      if (r.type === 'start') current = r.i;
      else if (r.type === 'crash') outcome.crashes.push({ i: r.i, error: r.error, kept: r.kept });
      else {
        Object.assign(outcome, { parsed: r.parsed, refused: r.refused, ms: r.ms, ...(r.error ? { error: r.error } : {}) });
      }
    });
    worker.on('error', (err) => {
      // an exception nobody caught (an async one after a parse returned), or out of memory
      outcome.crashes.push({ i: current, error: `worker: ${err.stack ?? err.message}`, kept: '' });
    });
    worker.on('exit', () => {
      clearTimeout(timer);
      resolve(outcome);
    });
  });
}

if (isMainThread) {
  const [onlyName, onlyIteration] = ONLY === undefined ? [] : [ONLY.slice(0, ONLY.lastIndexOf(':')), Number(ONLY.slice(ONLY.lastIndexOf(':') + 1))];
  const targets = FUZZ_TARGETS.filter((t) => onlyName === undefined || t.name === onlyName);
  describe(`fuzz: ${ITERATIONS} mutated inputs per format, each parsed or refused with one line`, { ...needsRefdata, concurrency: Math.max(1, Math.min(2, availableParallelism())) }, () => {
    if (ONLY !== undefined) test('FUZZ_ONLY names a target', () => assert.equal(targets.length, 1, `no target named '${onlyName}'`));
    for (const target of targets) {
      test(target.name, { timeout: 10 * 60_000 }, async (t) => {
        const job: Job = onlyIteration !== undefined ? { target: target.name, first: onlyIteration, count: 1, seed: SEED } : { target: target.name, first: 0, count: ITERATIONS, seed: SEED };
        const o = await runTarget(job);
        t.diagnostic(`${job.count} inputs in ${(o.ms / 1000).toFixed(1)} s: ${o.parsed} parsed, ${o.refused} refused with a one-line error`);
        assert.ok(o.error === undefined, `the target itself failed: ${o.error}`);
        assert.equal(o.hang, undefined, `input ${o.hang} made no progress for ${HANG_MS / 1000} s (a hang): FUZZ_ONLY='${target.name}:${o.hang}'`);
        assert.deepEqual(o.crashes.map((c) => `input ${c.i} (FUZZ_ONLY='${target.name}:${c.i}', kept in ${c.kept}): ${c.error}`), []);
        assert.equal(o.parsed + o.refused, job.count);
      });
    }
  });
}
