// `llama2 info MODEL`: what a model file or folder holds.

import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { headSize, kvDim, normEps, ropeTheta } from '../model/config.js';
import { withModelSource } from '../model/open.js';
import { MATRIX_TENSORS, NORM_TENSORS } from '../model/source.js';
import { parameterCount } from '../model/weights.js';
import { parseCommand } from './flags.js';
import { modelArg } from './model-args.js';

const HELP = `Usage: llama2 info MODEL

Prints a model's format (llama2.c v0, v1 or v2/Q8_0; a Hugging Face or Meta folder), its shape,
how its tensors are stored, the tokenizer and chat template found with it, and its parameter count.`;

/** Bytes on disk: a file's size, or the sum of a folder's files. */
function diskBytes(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.size;
  return readdirSync(path).reduce((n, f) => {
    const s = statSync(join(path, f));
    return n + (s.isFile() ? s.size : 0);
  }, 0);
}

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, { }, HELP, true);
  if (parsed === null) return 0;
  const { positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError(`info takes one model (a file or a folder)\n${HELP}`);
  const path = modelArg(positionals[0]!);
  const rows = withModelSource(path, (s) => {
    const c = s.config;
    const params = parameterCount(c);
    const types = new Set([...NORM_TENSORS, ...MATRIX_TENSORS].map((t) => s.storage(t)).filter((t) => t !== undefined));
    const out: Array<[string, string | number]> = [
      ['model', path],
      ['format', s.format],
      ['storage', [...types].join(', ')],
      ['dim', c.dim],
      ['hidden_dim', c.hiddenDim],
      ['n_layers', c.nLayers],
      ['n_heads', c.nHeads],
      ['n_kv_heads', c.nKvHeads],
      ['vocab_size', c.vocabSize],
      ['seq_len', c.seqLen],
      ['shared_classifier', c.sharedClassifier ? 'yes' : 'no'],
      ['norm_eps', normEps(c)],
      ['rope_theta', ropeTheta(c)],
      ['head_size', headSize(c)],
      ['kv_dim', kvDim(c)],
      ['attention', c.nKvHeads === c.nHeads ? 'multi-head' : c.nKvHeads === 1 ? 'multi-query' : `grouped-query (${c.nHeads / c.nKvHeads} query heads per kv head)`],
      ['parameters', `${params} (${(params / 1e6).toFixed(3)}M)`],
      ['tokenizer', s.tokenizer?.path ?? '(none found with it)'],
    ];
    if (s.chatTemplate !== undefined) out.push(['chat_template', s.chatTemplate.file]);
    out.push(['disk_bytes', diskBytes(path)]);
    return out;
  });
  const width = rows.reduce((w, [k]) => Math.max(w, k.length), 0);
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(width)}  ${v}\n`);
  return 0;
}
