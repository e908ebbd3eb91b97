// `llama2 tokenize-stats --tokenizer TOK FILES…`: compression and vocabulary use of a tokenizer.

import { UsageError } from '../errors.js';
import { tokenizeStats } from '../data/tokenize-stats.js';
import { loadTokenizer } from '../tokenizer/index.js';
import { intFlag, parseCommand, stringFlag } from './flags.js';

const HELP = `Usage: llama2 tokenize-stats --tokenizer TOK [--top N] [--json] FILE…

Encodes every story of the files (*.json shards, *.jsonl, or text with <|endoftext|> separators;
stories stripped, no BOS/EOS counted) and prints: stories, bytes, tokens, tokens per story
(mean/median/max), tokens per byte, ids of the vocabulary used, byte-fallback tokens, and the
most frequent tokens. --json prints the same as one JSON object.

Options:
  -z, --tokenizer TOK  a SentencePiece .model or llama2.c tokenizer.bin (required)
      --top N          how many of the most frequent tokens to list (default 20)
      --json           print one JSON object instead`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, {
    tokenizer: { type: 'string', short: 'z' },
    top: { type: 'string' },
    json: { type: 'boolean' },
  }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  const tokPath = stringFlag(values, 'tokenizer');
  if (tokPath === undefined) throw new UsageError('tokenize-stats needs --tokenizer TOK');
  if (positionals.length === 0) throw new UsageError('tokenize-stats needs story files');
  const s = tokenizeStats(positionals, loadTokenizer(tokPath), intFlag(values, 'top', 20, 0, 1 << 20));
  if (values['json']) {
    process.stdout.write(JSON.stringify(s) + '\n');
    return 0;
  }
  const rows: Array<[string, string | number]> = [
    ['tokenizer', tokPath],
    ['files', s.files],
    ['stories', s.stories],
    ['bytes', s.bytes],
    ['tokens', s.tokens],
    ['tokens/story', `mean ${s.tokensPerStory.mean.toFixed(1)}, median ${s.tokensPerStory.median}, max ${s.tokensPerStory.max}`],
    ['tokens/byte', s.tokensPerByte.toFixed(4)],
    ['bytes/token', s.bytesPerToken.toFixed(3)],
    ['ids used', `${s.idsUsed} of ${s.vocabSize} (${((100 * s.idsUsed) / s.vocabSize).toFixed(1)}%)`],
    ['byte fallback', `${s.byteFallbackTokens} tokens`],
  ];
  const width = rows.reduce((w, [k]) => Math.max(w, k.length), 0);
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(width)}  ${v}\n`);
  if (s.top.length > 0) {
    process.stdout.write('top tokens:\n');
    for (const t of s.top) process.stdout.write(`  ${String(t.id).padStart(6)}  ${JSON.stringify(t.piece.replaceAll('\u2581', ' ')).padEnd(18)} ${t.count}  (${((100 * t.count) / s.tokens).toFixed(2)}%)\n`);
  }
  return 0;
}
