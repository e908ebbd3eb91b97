// `llama2 encode -z TOKENIZER [TEXT]`: text → token ids, exactly as SentencePiece encodes them.

import { UsageError } from '../errors.js';
import { loadTokenizer } from '../tokenizer/index.js';
import { decodeUtf8 } from '../tokenizer/utf8.js';
import { intFlag, parseCommand, stringFlag } from './flags.js';

const HELP = `Usage: llama2 encode -z TOKENIZER [TEXT]

Prints the token ids of TEXT on one line, space-separated, BOS first. Without TEXT, encodes
standard input verbatim up to end of file (a trailing newline is part of the text).

Options:
  -z, --tokenizer FILE   a SentencePiece .model or a llama2.c tokenizer.bin (required)
      --no-bos           do not put BOS first
      --eos              put EOS last
      --vocab-size N     number of tokens in a tokenizer.bin (default: read to the end of the file)
  -h, --help             this help`;

/** Reads standard input to EOF as bytes. */
export async function readStdin(): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, {
    tokenizer: { type: 'string', short: 'z' },
    'no-bos': { type: 'boolean' },
    eos: { type: 'boolean' },
    'vocab-size': { type: 'string' },
  }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  const path = stringFlag(values, 'tokenizer');
  if (path === undefined) throw new UsageError('encode needs a tokenizer: llama2 encode -z TOKENIZER [TEXT] (see --help)');
  if (positionals.length > 1) throw new UsageError(`encode takes one TEXT argument, got ${positionals.length} (quote the text)`);
  const vocabSize = values['vocab-size'] === undefined ? undefined : intFlag(values, 'vocab-size', 0, 1);
  const tokenizer = loadTokenizer(path, vocabSize);
  // Standard input is bytes: malformed UTF-8 is read as SentencePiece reads it (U+FFFD per bad byte).
  const text = positionals.length === 1 ? positionals[0]! : decodeUtf8(await readStdin());
  const ids = tokenizer.encode(text, { bos: !values['no-bos'], eos: values['eos'] === true });
  process.stdout.write(ids.join(' ') + '\n');
  return 0;
}
