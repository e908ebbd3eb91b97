// `llama2 bench MODEL [-n STEPS] [--prompt-len P]`: decode speed, prefill speed, memory.

import { UsageError } from '../errors.js';
import { benchmark } from '../infer/bench.js';
import { Transformer } from '../infer/forward.js';
import { intFlag, numberFlag, parseCommand } from './flags.js';
import { ENGINE_HELP, engineFlagSpec, engineFromFlags, modelArg } from './model-args.js';

const HELP = `Usage: llama2 bench MODEL [options]

Times the forward pass: P prefill positions, then N sampled decode steps (never stopping at BOS),
after untimed warm-up runs; reports the median of the timed runs.

Options:
  -n, --steps N       decode steps (default 256; prefill + steps is capped at the context)
  --prompt-len P      prefill positions (default 16)
  -t, --temperature T sampling temperature of the decode steps (default 1.0; 0 = greedy)
  -p, --top-p P       top-p of the decode steps (default 0.9)
  --warmup N          untimed runs first (default 1)
  --repeats N         timed runs; the median is reported (default 3)
  --json              print the result as JSON
${ENGINE_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, {
    steps: { type: 'string', short: 'n' },
    'prompt-len': { type: 'string' },
    temperature: { type: 'string', short: 't' }, 'top-p': { type: 'string', short: 'p' },
    json: { type: 'boolean' }, warmup: { type: 'string' }, repeats: { type: 'string' },
    ...engineFlagSpec,
  }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError('bench needs one model: llama2 bench MODEL');
  const engine = await engineFromFlags(values);
  const loadStart = performance.now();
  const transformer = engine.open(modelArg(positionals[0]!));
  const loadMs = performance.now() - loadStart;
  const seqLen = transformer.config.seqLen;
  const int8 = transformer instanceof Transformer && transformer.groupSize > 0;
  const promptLen = intFlag(values, 'prompt-len', Math.min(16, seqLen - 1), 0, seqLen - 1);
  const steps = Math.min(intFlag(values, 'steps', 256, 1), seqLen - promptLen);
  const temperature = numberFlag(values, 'temperature', 1);
  if (temperature < 0) throw new UsageError(`--temperature must be ≥ 0, got ${temperature}`);
  const topp = numberFlag(values, 'top-p', 0.9);
  if (topp < 0 || topp > 1) throw new UsageError(`--top-p must be in [0, 1], got ${topp}`);
  const r = benchmark(transformer, promptLen, steps, {
    warmup: intFlag(values, 'warmup', 1, 0, 100), repeats: intFlag(values, 'repeats', 3, 1, 100), temperature, topp,
  });
  if (values['json']) {
    process.stdout.write(JSON.stringify({
      model: positionals[0], backend: transformer.backend, kernels: engine.kernels.name, threads: engine.kernels.threads, quantize: engine.load.quantize,
      weights: int8 ? 'int8' : 'float32', contextLength: seqLen, temperature, topp, loadMs, ...r,
    }) + '\n');
    return 0;
  }
  process.stdout.write(
    `decode tok/s: ${r.decodeTokensPerSecond.toFixed(1)}\n` +
    `prefill tok/s: ${r.prefillTokensPerSecond.toFixed(1)}\n` +
    `ms per token: ${r.msPerToken.toFixed(3)}\n` +
    `peak RSS: ${(r.peakRssBytes / 2 ** 20).toFixed(1)} MiB\n` +
    `load: ${loadMs.toFixed(1)} ms (median of timed runs: ${steps} decode steps ${temperature === 0 ? '(greedy)' : `(temperature ${temperature}, top-p ${topp})`} after ${promptLen} prefill positions; ` +
    `${engine.backend === 'webgpu' ? transformer.backend : `${engine.kernels.name} kernels, ${engine.kernels.threads} thread(s)`}${int8 ? ', int8' : ''}, context ${seqLen})\n`,
  );
  return 0;
}
