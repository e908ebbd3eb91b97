// `llama2 init`: a freshly initialised checkpoint of any shape (for training from scratch, tests
// and benchmarks).

import { UsageError } from '../errors.js';
import { writeCheckpointFrom } from '../model/checkpoint.js';
import { type ModelConfig, hiddenDimFor, validateConfig } from '../model/config.js';
import { parameterCount } from '../model/weights.js';
import { initReader } from '../train/init.js';
import { intFlag, parseCommand, stringFlag } from './flags.js';

const HELP = `Usage: llama2 init -o FILE [options]

Writes a checkpoint with llama2.c's model.py initialisation: weights from N(0, 0.02²), the wo and
w3 projections from N(0, (0.02/√(2·layers))²), norms 1. Defaults are train.py's (the 15M shape).
The file is written as it is drawn, in a few tens of MiB of memory whatever its size (v2 of the
Llama-2-7B shape: --dim 4096 --layers 32 --heads 32 --hidden-dim 11008 --seq-len 4096).

Options:
  --dim N            model width (default 288)
  --layers N         transformer layers (default 6)
  --heads N          query heads (default 6)
  --kv-heads N       key/value heads (default = heads; 1 = multi-query)
  --hidden-dim N     feed-forward width (default: from --multiple-of)
  --multiple-of N    round the derived hidden width up to a multiple of N (default 32)
  --vocab N          vocabulary size (default 32000)
  --seq-len N        context window (default 256)
  --unshared         a separate classifier instead of the tied embedding
  --seed N           random seed (default 1337)
  --format F         v1 (default), v0, or v2 (Q8_0)
  -o, --output FILE  where to write`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, {
    dim: { type: 'string' }, layers: { type: 'string' }, heads: { type: 'string' }, 'kv-heads': { type: 'string' },
    'hidden-dim': { type: 'string' }, 'multiple-of': { type: 'string' }, vocab: { type: 'string' },
    'seq-len': { type: 'string' }, unshared: { type: 'boolean' }, seed: { type: 'string' },
    format: { type: 'string' }, output: { type: 'string', short: 'o' },
  }, HELP);
  if (parsed === null) return 0;
  const { values } = parsed;
  const out = stringFlag(values, 'output');
  if (out === undefined) throw new UsageError('init needs -o FILE');
  const format = stringFlag(values, 'format', 'v1');
  if (format !== 'v0' && format !== 'v1' && format !== 'v2') throw new UsageError(`--format must be v0, v1 or v2, got '${format}'`);
  const dim = intFlag(values, 'dim', 288, 1);
  const heads = intFlag(values, 'heads', 6, 1);
  const multipleOf = intFlag(values, 'multiple-of', 32, 1);
  const config: ModelConfig = {
    dim,
    hiddenDim: values['hidden-dim'] !== undefined ? intFlag(values, 'hidden-dim', 0, 1) : hiddenDimFor(dim, multipleOf),
    nLayers: intFlag(values, 'layers', 6, 1),
    nHeads: heads,
    nKvHeads: intFlag(values, 'kv-heads', heads, 1),
    vocabSize: intFlag(values, 'vocab', 32000, 1),
    seqLen: intFlag(values, 'seq-len', 256, 1),
    sharedClassifier: values['unshared'] !== true,
  };
  try {
    validateConfig(config, 'init');
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/^init: impossible header: /, ''));
  }
  // drawn and written a piece at a time: a 7B model never sits in memory
  writeCheckpointFrom(out, initReader(config, intFlag(values, 'seed', 1337, 0, 2 ** 31 - 1)), format);
  process.stderr.write(`wrote ${out}: ${format}, ${(parameterCount(config) / 1e6).toFixed(2)}M parameters (dim ${config.dim}, hidden ${config.hiddenDim}, ${config.nLayers} layers, ${config.nHeads} heads, ${config.nKvHeads} kv heads, vocab ${config.vocabSize}, seq ${config.seqLen})\n`);
  return 0;
}
