// `llama2 eval MODEL --data FILE… --seq-len T [--stride S]`: validation loss and perplexity over every window.

import { freemem } from 'node:os';
import { UsageError } from '../errors.js';
import { Progress } from '../data/progress.js';
import { type EvalResult, evalWindows, evaluateLoss, readTokenFile } from '../infer/eval.js';
import { evaluateLossOnThreads } from '../infer/eval-windows.js';
import { defaultThreads } from '../kernels/kernel-set.js';
import { kernelModuleIfLoaded } from '../kernels/wasm.js';
import { parameterCount } from '../model/weights.js';
import { withModelSource } from '../model/open.js';
import { intFlag, parseCommand, stringFlag, threadsFlag } from './flags.js';
import { ENGINE_HELP, engineFlagSpec, engineFromFlags, modelArg } from './model-args.js';

const HELP = `Usage: llama2 eval MODEL --data FILE [--data FILE…] [--seq-len T]

Mean next-token cross-entropy of MODEL over all full windows of T tokens of the pretokenized uint16
files (concatenated in the order given). Prints val_loss=X and the perplexity. Windows do not
overlap unless --stride S < T: then a window starts every S tokens and scores only its last S
tokens, so every token is scored once, with at least T − S tokens of context (T/S times the work).

Options:
  --data FILE     a pretokenized .bin file (uint16 ids); repeat for several
  --seq-len T     window length (default: 256, at most the model's context)
  --stride S      tokens between window starts, 1 to T (default T: no overlap)
  --parallel P    how the wasm threads share the work: windows (each thread runs whole windows on
                  its own copy of the model) or kernels (every product split between them);
                  default: windows for models up to 256 MiB of float32 weights (when the copies
                  fit in half the free memory), else kernels
  -q, --quiet     no progress bar on standard error
${ENGINE_HELP}`;

/**
 * Weights (as float32) up to which the threads evaluate whole windows, each on its own copy of the
 * model (if the copies take at most half the available memory); larger models split each product.
 */
export const WINDOW_THREADS_MAX_BYTES = 256 * 2 ** 20;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, {
    data: { type: 'string', multiple: true },
    'seq-len': { type: 'string' },
    stride: { type: 'string' },
    parallel: { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
    ...engineFlagSpec,
  }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError('eval needs one model: llama2 eval MODEL --data FILE');
  const files = (values['data'] as string[] | undefined) ?? [];
  if (files.length === 0) throw new UsageError('eval needs --data FILE (pretokenized uint16 tokens)');
  const parallel = stringFlag(values, 'parallel');
  if (parallel !== undefined && parallel !== 'windows' && parallel !== 'kernels') throw new UsageError(`--parallel must be windows or kernels, got '${parallel}'`);
  const threads = threadsFlag(values, () => {}) ?? defaultThreads(); // (engineFromFlags warns about too many)
  const kind = stringFlag(values, 'backend') ?? stringFlag(values, 'kernels') ?? 'wasm';
  if (parallel !== undefined && kind !== 'wasm') throw new UsageError('--parallel needs the wasm backend');
  const config = withModelSource(modelArg(positionals[0]!), (s) => s.config);
  const seqLen = intFlag(values, 'seq-len', Math.min(256, config.seqLen), 1, config.seqLen);
  const stride = intFlag(values, 'stride', seqLen, 1, seqLen);
  const parts = files.map((f) => readTokenFile(f, config.vocabSize));
  const tokens = new Uint16Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    tokens.set(p, off);
    off += p.length;
  }
  const windows = evalWindows(tokens.length, seqLen, stride);
  // whole windows per thread (eval-windows.ts): each thread loads the model, so only where copies are cheap
  const weightBytes = parameterCount(config) * 4;
  const byWindows = kind === 'wasm' && threads > 1 && windows.length > 1 && (parallel === 'windows'
    || (parallel === undefined && weightBytes <= WINDOW_THREADS_MAX_BYTES && threads * weightBytes <= freemem() / 2));
  const engine = await engineFromFlags(byWindows ? { ...values, threads: '1' } : values);
  // the KV cache holds one window (unless --ctx asks otherwise)
  const load = { ...engine.load, contextLength: engine.load.contextLength ?? seqLen };
  const transformer = engine.open(modelArg(positionals[0]!), load);
  const quiet = values['quiet'] === true;
  // tokens scored so far, their rate and the time left (redrawn in place on a terminal, every 10% in a log)
  const scoredAfter: number[] = [];
  let scoredTotal = 0;
  for (const w of windows) scoredAfter.push((scoredTotal += seqLen - w.firstScored));
  const progress = new Progress('eval', scoredTotal, { unit: 'count', unitName: 'tokens', quiet });
  const onWindow = (done: number): void => progress.update(scoredAfter[done - 1]!);
  const t0 = performance.now();
  let r: EvalResult;
  try {
    const module = kernelModuleIfLoaded();
    if (byWindows && module !== undefined) {
      r = await evaluateLossOnThreads(transformer, { path: modelArg(positionals[0]!), load, module }, threads, tokens, seqLen, onWindow, stride);
    } else {
      r = evaluateLoss(transformer, tokens, seqLen, onWindow, stride);
    }
  } catch (err) {
    progress.abandon();
    throw err;
  } finally {
    await engine.close();
  }
  const secs = (performance.now() - t0) / 1000;
  const shape = stride === seqLen ? `${r.windows} windows × ${seqLen} tokens` : `${r.windows} windows of ${seqLen} tokens every ${stride}`;
  const summary = `${shape} = ${r.tokens} tokens scored in ${secs.toFixed(1)} s (${Math.round(r.tokens / secs)} tokens/s)`;
  if (quiet) process.stderr.write(summary + '\n');
  else progress.finish(summary);
  process.stdout.write(`val_loss=${r.loss.toFixed(6)}\nperplexity=${r.perplexity.toFixed(4)}\n`);
  return 0;
}
