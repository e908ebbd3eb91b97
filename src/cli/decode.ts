// `llama2 decode -z TOKENIZER ID…`: token ids → text (SentencePiece's DecodeIds).

import { UsageError } from '../errors.js';
import { loadTokenizer } from '../tokenizer/index.js';
import { readStdin } from './encode.js';
import { intFlag, parseCommand, stringFlag } from './flags.js';

const HELP = `Usage: llama2 decode -z TOKENIZER ID...

Prints the text of the token ids (BOS/EOS print nothing; byte tokens are joined into UTF-8).
Without ids on the command line, reads them from standard input, separated by white space — so
\`llama2 encode -z T "text" | llama2 decode -z T\` gives the text back.

Options:
  -z, --tokenizer FILE   a SentencePiece .model or a llama2.c tokenizer.bin (required)
      --vocab-size N     number of tokens in a tokenizer.bin (default: read to the end of the file)
  -h, --help             this help`;

function parseId(s: string): number {
  if (!/^\d+$/.test(s)) throw new UsageError(`'${s}' is not a token id (a non-negative integer)`);
  return Number(s);
}

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, {
    tokenizer: { type: 'string', short: 'z' },
    'vocab-size': { type: 'string' },
  }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  const path = stringFlag(values, 'tokenizer');
  if (path === undefined) throw new UsageError('decode needs a tokenizer: llama2 decode -z TOKENIZER ID... (see --help)');
  const vocabSize = values['vocab-size'] === undefined ? undefined : intFlag(values, 'vocab-size', 0, 1);
  const words = positionals.length > 0
    ? positionals.flatMap((p) => p.split(/\s+/)).filter((w) => w !== '')
    : Buffer.from(await readStdin()).toString('utf8').split(/\s+/).filter((w) => w !== '');
  const ids = words.map(parseId);
  const tokenizer = loadTokenizer(path, vocabSize);
  process.stdout.write(tokenizer.decode(ids) + '\n');
  return 0;
}
