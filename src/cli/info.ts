// `llama2 info MODEL`: what a checkpoint file holds.

import { UsageError } from '../errors.js';
import { readCheckpointHeader } from '../model/checkpoint.js';
import { headSize, kvDim } from '../model/config.js';
import { parameterCount } from '../model/weights.js';
import { parseCommand } from './flags.js';

const HELP = `Usage: llama2 info MODEL

Prints a checkpoint's format (v0, v1 or v2/Q8_0), header, derived sizes and parameter count.`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, { }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError(`info takes one checkpoint file\n${HELP}`);
  const h = readCheckpointHeader(positionals[0]!);
  const c = h.config;
  const params = parameterCount(c);
  const rows: Array<[string, string | number]> = [
    ['file', positionals[0]!],
    ['format', h.format === 'v2' ? `v2 (Q8_0, group size ${h.groupSize})` : h.format === 'v0' ? 'v0 (legacy llama2.c)' : 'v1 (float32)'],
    ['dim', c.dim],
    ['hidden_dim', c.hiddenDim],
    ['n_layers', c.nLayers],
    ['n_heads', c.nHeads],
    ['n_kv_heads', c.nKvHeads],
    ['vocab_size', c.vocabSize],
    ['seq_len', c.seqLen],
    ['shared_classifier', c.sharedClassifier ? 'yes' : 'no'],
    ['head_size', headSize(c)],
    ['kv_dim', kvDim(c)],
    ['attention', c.nKvHeads === c.nHeads ? 'multi-head' : c.nKvHeads === 1 ? 'multi-query' : `grouped-query (${c.nHeads / c.nKvHeads} query heads per kv head)`],
    ['parameters', `${params} (${(params / 1e6).toFixed(3)}M)`],
    ['file_bytes', h.fileBytes],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(width)}  ${v}\n`);
  return 0;
}
