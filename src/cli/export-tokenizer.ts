// `llama2 export-tokenizer X.model [-o X.bin]`: a SentencePiece model → llama2.c's tokenizer.bin,
// byte for byte what llama2.c's tokenizer.py writes.

import { UsageError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import { loadTokenizer } from '../tokenizer/index.js';
import { parseCommand, stringFlag } from './flags.js';

const HELP = `Usage: llama2 export-tokenizer TOKENIZER.model [-o OUT.bin]

Writes the llama2.c tokenizer.bin form of a SentencePiece model (or of the tokenizer a GGUF model
file carries): a max_token_length header, then
each piece's score, byte length and text (▁ written as a space, BOS/EOS as "\\n<s>\\n"/"\\n</s>\\n").

Options:
  -o, --output FILE   where to write (default: the input path with .model replaced by .bin)
  -h, --help          this help`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, {
    output: { type: 'string', short: 'o' },
  }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError(`export-tokenizer takes one .model file (see --help)`);
  const input = positionals[0]!;
  const output = stringFlag(values, 'output') ?? (input.endsWith('.model') ? input.slice(0, -'.model'.length) + '.bin' : input + '.bin');
  if (output === input) throw new UsageError(`the output would overwrite the input ${input}; pass -o`);
  const tokenizer = loadTokenizer(input);
  if (tokenizer.format === 'llama2c') throw new UsageError(`${input} is already a llama2.c tokenizer.bin, not a SentencePiece .model`);
  const bytes = tokenizer.toLlama2cBytes();
  writeFileAtomic(output, [bytes]);
  process.stdout.write(`wrote ${output}: ${tokenizer.vocabSize} tokens, ${bytes.length} bytes\n`);
  return 0;
}
