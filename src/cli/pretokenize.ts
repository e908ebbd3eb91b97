// `llama2 pretokenize --tokenizer T [--dir data | --input FILES…] [--out DIR]`: llama2.c's
// `tinystories.py pretokenize` — stories → uint16 token files that `llama2 train` reads.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError, describeFsError } from '../errors.js';
import { TINYSTORIES_DIR } from '../data/download.js';
import { pretokenize } from '../data/pretokenize.js';
import { Progress } from '../data/progress.js';
import { loadTokenizer } from '../tokenizer/index.js';
import { intFlag, parseCommand, stringFlag } from './flags.js';

const HELP = `Usage: llama2 pretokenize --tokenizer TOK [--dir DIR | --input FILE…] [--out OUTDIR] [--workers N]

Encodes every story (stripped, BOS first, no EOS) and writes one file of uint16 token ids per
input shard, OUTDIR/<shard>.bin. llama2 train --data OUTDIR then validates on the files named
val*.bin (valid.txt → valid.bin), else on data00.bin (TinyStories), and trains on the rest.

  -z, --tokenizer TOK  a SentencePiece .model or llama2.c tokenizer.bin (at most 65536 tokens)
  --dir DIR         take the shards DIR/${TINYSTORIES_DIR}/*.json (default: data)
  --input FILE…     take these files instead: *.json shards, *.jsonl, or text with stories
                    separated by lines <|endoftext|> (more files may follow as plain arguments)
  -o, --out OUTDIR  where the .bin files go (default: DIR/tok<vocab size>, e.g. data/tok512)
  --workers N       worker threads (default: number of CPUs)
  -q, --quiet       no progress output`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, {
    tokenizer: { type: 'string', short: 'z' },
    dir: { type: 'string' },
    input: { type: 'string', multiple: true },
    out: { type: 'string', short: 'o' },
    workers: { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
  }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  const tokenizerPath = stringFlag(values, 'tokenizer');
  if (tokenizerPath === undefined) throw new UsageError('pretokenize needs --tokenizer TOK (a .model or tokenizer.bin)');
  const listed = [...((values['input'] as string[] | undefined) ?? []), ...positionals];
  if (listed.length > 0 && values['dir'] !== undefined) throw new UsageError('give --dir or --input, not both');
  const dir = stringFlag(values, 'dir', 'data');
  let inputs = listed;
  if (inputs.length === 0) {
    const shardDir = join(dir, TINYSTORIES_DIR);
    try {
      inputs = readdirSync(shardDir).filter((f) => f.endsWith('.json') && !f.startsWith('.')).sort().map((f) => join(shardDir, f));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new UsageError(`no TinyStories shards: ${shardDir} does not exist — run llama2 download tinystories${dir === 'data' ? '' : ` --dir ${dir}`} first, or give --input FILE…`);
      }
      throw describeFsError(shardDir, err);
    }
    if (inputs.length === 0) throw new UsageError(`no .json shards in ${shardDir} — run llama2 download tinystories${dir === 'data' ? '' : ` --dir ${dir}`} first, or give --input FILE…`);
  }
  const workers = intFlag(values, 'workers', 0, 0, 256);
  const quiet = values['quiet'] === true;
  const vocabSize = loadTokenizer(tokenizerPath).vocabSize;
  const outDir = stringFlag(values, 'out', join(dir, `tok${vocabSize}`));

  const bar = new Progress('pretokenize', inputs.length, { unit: 'count', unitName: 'shards', quiet });
  const t0 = Date.now();
  let stats;
  try {
    stats = await pretokenize(inputs, tokenizerPath, outDir, { workers: workers || undefined, onShard: (_s, done) => bar.update(done) });
  } catch (err) {
    bar.abandon();
    throw err;
  }
  bar.finish();
  const tokens = stats.reduce((n, s) => n + s.tokens, 0);
  const stories = stats.reduce((n, s) => n + s.stories, 0);
  const bytes = stats.reduce((n, s) => n + s.bytes, 0);
  process.stderr.write(
    `${stats.length} shards, ${stories} stories, ${tokens} tokens (${(tokens / Math.max(stories, 1)).toFixed(1)} per story, ` +
    `${(bytes / Math.max(tokens - stories, 1)).toFixed(2)} bytes per token) in ${((Date.now() - t0) / 1000).toFixed(1)}s → ${outDir}\n`,
  );
  for (const s of stats) process.stdout.write(`${s.output}\n`);
  return 0;
}
