// `llama2 export MODEL --format v0|v1|v2|gguf -o OUT`: convert a model to a llama2.c format or to
// GGUF (llama.cpp's file, with the tokenizer inside).

import { basename } from 'node:path';
import { UsageError } from '../errors.js';
import { writeCheckpointFrom } from '../model/checkpoint.js';
import { type GgufValue, ValueType } from '../model/gguf.js';
import { writeLlamaGguf } from '../model/gguf-llama.js';
import { withModelSource } from '../model/open.js';
import { ggufTokenizerMetadata } from '../tokenizer/gguf-vocabulary.js';
import { loadTokenizer } from '../tokenizer/index.js';
import { intFlag, type ParsedFlags, parseCommand, stringFlag } from './flags.js';
import { resolveTokenizerPath } from './model-args.js';

const HELP = `Usage: llama2 export MODEL --format FORMAT -o OUT [--group-size N] [--dtype T] [-z TOKENIZER]

Converts a model (any format llama2ts reads) to:
  v0     legacy format that llama2.c's run.c reads
  v1     float32 with a 256-byte header (llama2ts's default)
  v2     Q8_0: int8 weights with one float32 scale per group of N values (default N = 64, halved
         until it divides dim, as llama2.c's export.py does)
  gguf   GGUF v3 for llama.cpp, ollama, LM Studio…: the llama architecture keys, the tokenizer
         (-z TOKENIZER, else the one found with the model) and its chat template, and the tensors as
         --dtype f32 (default), f16 or q8_0 (ggml's Q8_0; a matrix whose rows are not whole
         32-value blocks is written F16, as llama.cpp's converter does); norms stay F32
Converting from a quantized model to v0/v1 dequantizes; Q8_0 stored at the group size asked for
passes to v2 as it is. llama2.c formats are read and written a chunk at a time: converting a 7B
model takes a few tens of MiB of memory.

Options:
      --format FORMAT   v0, v1, v2 or gguf (required)
  -o, --output OUT      where to write (required)
      --group-size N    v2: values per Q8_0 group (default 64, halved until it divides dim)
      --dtype T         gguf: f32 (default), f16 or q8_0
  -z, --tokenizer FILE  gguf: the tokenizer to embed (default: the one found with the model)`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, {
    format: { type: 'string' }, output: { type: 'string', short: 'o' }, 'group-size': { type: 'string' },
    dtype: { type: 'string' }, tokenizer: { type: 'string', short: 'z' },
  }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError('export needs one model: llama2 export MODEL --format v2 -o OUT');
  const format = stringFlag(values, 'format');
  if (format !== 'v0' && format !== 'v1' && format !== 'v2' && format !== 'gguf') throw new UsageError(`--format must be v0, v1, v2 or gguf, got '${format ?? ''}'`);
  const out = stringFlag(values, 'output');
  if (out === undefined) throw new UsageError('export needs -o OUT');
  if (format === 'gguf') return exportGguf(positionals[0]!, out, values);
  if (values['dtype'] !== undefined || values['tokenizer'] !== undefined) throw new UsageError('--dtype and -z are for --format gguf');
  const groupSize = intFlag(values, 'group-size', 64, 1, 1 << 16);
  // read and written a chunk of rows at a time (Q8_0 stored at the same group size passes as it is)
  withModelSource(positionals[0]!, (source) => writeCheckpointFrom(out, source, format, groupSize));
  process.stderr.write(`wrote ${out} (${format})\n`);
  return 0;
}

/** `--format gguf`: the model, its tokenizer and chat template as one GGUF file, tensor by tensor. */
function exportGguf(model: string, out: string, values: ParsedFlags['values']): number {
  if (values['group-size'] !== undefined) throw new UsageError('--group-size is for --format v2 (GGUF\'s Q8_0 has groups of 32)');
  const dtype = stringFlag(values, 'dtype', 'f32');
  if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'q8_0') throw new UsageError(`--dtype must be f32, f16 or q8_0, got '${dtype}'`);
  withModelSource(model, (source) => {
    const tokenizerPath = resolveTokenizerPath(model, stringFlag(values, 'tokenizer'), source.tokenizer?.path);
    const tokenizer = loadTokenizer(tokenizerPath, source.config.vocabSize);
    const extra: Array<[string, GgufValue]> = ggufTokenizerMetadata(tokenizer.vocabulary);
    if (source.chatTemplate !== undefined) extra.push(['tokenizer.chat_template', { type: ValueType.STRING, value: source.chatTemplate.template }]);
    const name = basename(model).replace(/\.(bin|gguf)$/, '');
    writeLlamaGguf(out, source, extra, dtype, name);
  });
  process.stderr.write(`wrote ${out} (gguf, ${dtype})\n`);
  return 0;
}
