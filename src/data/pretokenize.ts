// Pretokenization, as llama2.c's `tinystories.py pretokenize`: every story of a shard is stripped,
// encoded with BOS first and no EOS, and the ids of all stories are concatenated into one file of
// uint16 values (little-endian, no header) — the format `llama2 train` and llama2.c's train.py
// read. One output file per input shard: data00.json → OUT/data00.bin. Shards are spread over
// worker threads; each worker loads the tokenizer itself.

import { availableParallelism } from 'node:os';
import { basename, extname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { FormatError, LlamaError, UsageError } from '../errors.js';
import { makeDirs, writeFileAtomic } from '../files.js';
import { loadTokenizer, type Tokenizer } from '../tokenizer/index.js';
import { pyStrip, readStories } from './stories.js';

/** Token ids are stored as uint16, so a vocabulary may hold at most 65536 ids (0…65535). */
export const MAX_UINT16_VOCAB = 65536;

export interface ShardStats {
  readonly input: string;
  readonly output: string;
  readonly stories: number;
  /** Tokens written, BOS included. */
  readonly tokens: number;
  /** UTF-8 bytes of the stripped stories. */
  readonly bytes: number;
}

/** Fails unless every id of `tokenizer` fits in a uint16. */
export function checkUint16Vocab(tokenizer: Tokenizer, path: string): void {
  if (tokenizer.vocabSize > MAX_UINT16_VOCAB) {
    throw new FormatError(path, `has ${tokenizer.vocabSize} tokens, but pretokenized files store ids as uint16 (at most ${MAX_UINT16_VOCAB} tokens)`);
  }
}

const utf8 = new TextEncoder();

/** Tokenizes one shard into `output` (written atomically). */
export function pretokenizeShard(input: string, tokenizer: Tokenizer, output: string): ShardStats {
  const stories = readStories(input);
  const chunks: Uint8Array[] = [];
  let tokens = 0;
  let bytes = 0;
  for (const story of stories) {
    const text = pyStrip(story);
    bytes += utf8.encode(text).length;
    const ids = Uint16Array.from(tokenizer.encode(text, { bos: true, eos: false }));
    tokens += ids.length;
    chunks.push(new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength));
  }
  writeFileAtomic(output, chunks);
  return { input, output, stories: stories.length, tokens, bytes };
}

/** Output path of each input: OUT/<name without extension>.bin; two inputs may not share one. */
export function outputPaths(inputs: readonly string[], outDir: string): string[] {
  const seen = new Map<string, string>();
  return inputs.map((input) => {
    const name = basename(input, extname(input)) + '.bin';
    const other = seen.get(name);
    if (other !== undefined) throw new UsageError(`${input} and ${other} would both be written to ${join(outDir, name)}`);
    seen.set(name, input);
    return join(outDir, name);
  });
}

export interface PretokenizeOptions {
  /** Worker threads (default: the number of CPUs, at most one per shard; 1 = no workers). */
  readonly workers?: number;
  readonly onShard?: (stats: ShardStats, done: number, total: number) => void;
}

/** Messages between the pool and pretokenize-worker.ts. */
export interface WorkerJob {
  readonly input: string;
  readonly output: string;
}
export type WorkerReply = { ok: true; stats: ShardStats } | { ok: false; message: string; userError: boolean };

/** Tokenizes every input into `outDir`; returns the stats in input order. */
export async function pretokenize(inputs: readonly string[], tokenizerPath: string, outDir: string, opts: PretokenizeOptions = {}): Promise<ShardStats[]> {
  if (inputs.length === 0) throw new UsageError('pretokenize: no input files');
  const tokenizer = loadTokenizer(tokenizerPath);
  checkUint16Vocab(tokenizer, tokenizerPath);
  const outputs = outputPaths(inputs, outDir);
  makeDirs(outDir);
  const workers = Math.max(1, Math.min(opts.workers ?? availableParallelism(), inputs.length));
  const results: ShardStats[] = new Array(inputs.length);
  let done = 0;
  if (workers === 1) {
    inputs.forEach((input, i) => {
      results[i] = pretokenizeShard(input, tokenizer, outputs[i]!);
      opts.onShard?.(results[i]!, ++done, inputs.length);
    });
    return results;
  }

  // a pool: each worker takes the next shard when it finishes one; the first error stops all
  const pool: Worker[] = [];
  const retired = new Set<Worker>();
  let next = 0;
  await new Promise<void>((resolve, reject) => {
    let failed = false;
    let running = 0;
    const fail = (err: Error): void => {
      if (failed) return;
      failed = true;
      for (const w of pool) void w.terminate();
      reject(err);
    };
    const dispatch = (w: Worker): void => {
      if (failed) return;
      if (next >= inputs.length) {
        retired.add(w);
        void w.terminate();
        if (--running === 0) resolve();
        return;
      }
      const i = next++;
      const job: WorkerJob = { input: inputs[i]!, output: outputs[i]! };
      w.once('message', (reply: WorkerReply) => {
        if (!reply.ok) return fail(reply.userError ? new LlamaError(reply.message) : new Error(reply.message));
        results[i] = reply.stats;
        opts.onShard?.(reply.stats, ++done, inputs.length);
        dispatch(w);
      });
      w.postMessage(job);
    };
    for (let k = 0; k < workers; k++) {
      const w = new Worker(new URL('./pretokenize-worker.js', import.meta.url), { workerData: { tokenizer: tokenizerPath } });
      w.on('error', (err) => fail(err));
      w.on('exit', (code) => {
        if (!retired.has(w)) fail(new Error(`pretokenize worker exited unexpectedly (code ${code})`));
      });
      pool.push(w);
      running++;
      dispatch(w);
    }
  });
  return results;
}
