// `llama2 eval MODEL --data FILE… --seq-len T [--stride S]`: validation loss and perplexity over every window.

import { UsageError } from '../errors.js';
import { Progress } from '../data/progress.js';
import { evalWindows, evaluateLoss, readTokenFile } from '../infer/eval.js';
import { withModelSource } from '../model/open.js';
import { intFlag, parseCommand } from './flags.js';
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
  -q, --quiet     no progress bar on standard error
${ENGINE_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, {
    data: { type: 'string', multiple: true },
    'seq-len': { type: 'string' },
    stride: { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
    ...engineFlagSpec,
  }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError('eval needs one model: llama2 eval MODEL --data FILE');
  const files = (values['data'] as string[] | undefined) ?? [];
  if (files.length === 0) throw new UsageError('eval needs --data FILE (pretokenized uint16 tokens)');
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
  const engine = await engineFromFlags(values);
  // the KV cache holds one window (unless --ctx asks otherwise)
  const transformer = engine.open(modelArg(positionals[0]!), { contextLength: engine.load.contextLength ?? seqLen });
  const quiet = values['quiet'] === true;
  // tokens scored so far, their rate and the time left (redrawn in place on a terminal, every 10% in a log)
  const scoredAfter: number[] = [];
  let scoredTotal = 0;
  for (const w of evalWindows(tokens.length, seqLen, stride)) scoredAfter.push((scoredTotal += seqLen - w.firstScored));
  const progress = new Progress('eval', scoredTotal, { unit: 'count', unitName: 'tokens', quiet });
  const t0 = performance.now();
  let r;
  try {
    r = evaluateLoss(transformer, tokens, seqLen, (done) => progress.update(scoredAfter[done - 1]!), stride);
  } catch (err) {
    progress.abandon();
    throw err;
  }
  const secs = (performance.now() - t0) / 1000;
  const windows = stride === seqLen ? `${r.windows} windows × ${seqLen} tokens` : `${r.windows} windows of ${seqLen} tokens every ${stride}`;
  const summary = `${windows} = ${r.tokens} tokens scored in ${secs.toFixed(1)} s (${Math.round(r.tokens / secs)} tokens/s)`;
  if (quiet) process.stderr.write(summary + '\n');
  else progress.finish(summary);
  process.stdout.write(`val_loss=${r.loss.toFixed(6)}\nperplexity=${r.perplexity.toFixed(4)}\n`);
  return 0;
}
