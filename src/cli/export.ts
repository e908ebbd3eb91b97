// `llama2 export MODEL --format v0|v1|v2 -o OUT`: convert a checkpoint between llama2.c formats.

import { UsageError } from '../errors.js';
import { loadFloat32Weights, plainMemory } from '../infer/load.js';
import { writeCheckpoint } from '../model/checkpoint.js';
import { withModelSource } from '../model/open.js';
import { intFlag, parseCommand, stringFlag } from './flags.js';

const HELP = `Usage: llama2 export MODEL --format FORMAT -o OUT [--group-size N]

Converts a checkpoint (v0, v1 or v2) to another llama2.c format:
  v0   legacy format that llama2.c's run.c reads
  v1   float32 with a 256-byte header (llama2ts's default)
  v2   Q8_0: int8 weights with one float32 scale per group of N values (default N = 64, halved
       until it divides dim, as llama2.c's export.py does)
Converting from v2 dequantizes.`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, {
    format: { type: 'string' }, output: { type: 'string', short: 'o' }, 'group-size': { type: 'string' },
  }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError('export needs one model: llama2 export MODEL --format v2 -o OUT');
  const format = stringFlag(values, 'format');
  if (format !== 'v0' && format !== 'v1' && format !== 'v2') throw new UsageError(`--format must be v0, v1 or v2, got '${format ?? ''}'`);
  const out = stringFlag(values, 'output');
  if (out === undefined) throw new UsageError('export needs -o OUT');
  const groupSize = intFlag(values, 'group-size', 64, 1, 1 << 16);
  const weights = withModelSource(positionals[0]!, (source) => loadFloat32Weights(source, plainMemory));
  writeCheckpoint(out, weights, format, groupSize);
  process.stderr.write(`wrote ${out} (${format})\n`);
  return 0;
}
