// `llama2 train-vocab --vocab-size N --input FILES… [-o PREFIX]`: llama2.c's `tinystories.py
// train_vocab` — learn a byte-fallback BPE vocabulary and write PREFIX.model + PREFIX.bin.

import { UsageError } from '../errors.js';
import { Progress } from '../data/progress.js';
import { trainVocabulary, writeVocabulary } from '../data/train-vocab.js';
import { intFlag, parseCommand, stringFlag } from './flags.js';

const HELP = `Usage: llama2 train-vocab --vocab-size N --input FILE [FILE…] [-o PREFIX] [--quiet]

Trains a byte-fallback BPE tokenizer the way llama2.c's tinystories.py train_vocab configures
SentencePiece (identity normalization, "▁" word prefix, split digits, character coverage 1.0,
<unk> <s> </s> and the 256 byte pieces first, merges scored by their order), and writes
  PREFIX.model   SentencePiece model (run, encode and pretokenize read it)
  PREFIX.bin     llama2.c tokenizer.bin
Inputs: TinyStories JSON shards (*.json), JSONL (*.jsonl, a "story" per line) or text files with
stories separated by lines <|endoftext|>. Every line of a story is one training sentence.

  --vocab-size N   total vocabulary size (> 259 + the number of distinct characters)
  --input FILE…    input files (more files may follow as plain arguments)
  -o PREFIX        output prefix (default data/tok<N>)
  --quiet          no progress output`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, {
    'vocab-size': { type: 'string' },
    input: { type: 'string', multiple: true },
    output: { type: 'string', short: 'o' },
    quiet: { type: 'boolean', short: 'q' },
  }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  if (values['vocab-size'] === undefined) throw new UsageError('train-vocab needs --vocab-size N');
  const vocabSize = intFlag(values, 'vocab-size', 0, 260, 1 << 20);
  const inputs = [...((values['input'] as string[] | undefined) ?? []), ...positionals];
  if (inputs.length === 0) throw new UsageError('train-vocab needs --input FILE…');
  const prefix = stringFlag(values, 'output', `data/tok${vocabSize}`);
  const quiet = values['quiet'] === true;

  const t0 = Date.now();
  let bar: Progress | undefined;
  let trained;
  try {
    trained = trainVocabulary(inputs, prefix, {
      vocabSize,
      onFile: (file, n) => {
        if (!quiet) process.stderr.write(`read ${file}: ${n} stories\n`);
      },
      onMerge: (done, total) => {
        bar ??= new Progress('merges', total, { unit: 'count', quiet });
        bar.update(done);
      },
    });
  } catch (err) {
    bar?.abandon();
    throw err;
  }
  bar?.finish();
  const paths = writeVocabulary(prefix, trained.model);
  const seconds = ((Date.now() - t0) / 1000).toFixed(1);
  process.stderr.write(
    `learned ${trained.mergeCount} merges + ${trained.charCount} characters from ${trained.stories} stories ` +
    `(${trained.sentenceCount} lines, ${trained.wordCount} distinct words) in ${seconds}s\n`,
  );
  process.stdout.write(`${paths.model}\n${paths.bin}\n`);
  return 0;
}
