// The numbers a person compares vocabularies with: how many tokens a story takes, how many bytes
// of text one token covers, and how much of the vocabulary the text actually uses. (Bits per byte
// would need a model; these need only the tokenizer.)

import { type Tokenizer } from '../tokenizer/index.js';
import { pyStrip, readStories } from './stories.js';

export interface TokenizeStats {
  readonly files: number;
  readonly stories: number;
  /** UTF-8 bytes of the stripped stories. */
  readonly bytes: number;
  /** Tokens of the text alone (no BOS/EOS). */
  readonly tokens: number;
  readonly tokensPerStory: { readonly mean: number; readonly median: number; readonly max: number };
  readonly tokensPerByte: number;
  readonly bytesPerToken: number;
  readonly vocabSize: number;
  /** Distinct ids that occur at least once, and the share of the vocabulary that is. */
  readonly idsUsed: number;
  /** Byte-fallback tokens (<0x..>) among `tokens`: text the vocabulary could not spell. */
  readonly byteFallbackTokens: number;
  /** The most frequent ids, most frequent first. */
  readonly top: ReadonlyArray<{ readonly id: number; readonly piece: string; readonly count: number }>;
}

const utf8 = new TextEncoder();

export function tokenizeStats(files: readonly string[], tokenizer: Tokenizer, topN = 20): TokenizeStats {
  const counts = new Float64Array(tokenizer.vocabSize);
  const perStory: number[] = [];
  let bytes = 0;
  let tokens = 0;
  for (const file of files) {
    for (const story of readStories(file)) {
      const text = pyStrip(story);
      bytes += utf8.encode(text).length;
      const ids = tokenizer.encode(text, { bos: false, eos: false });
      for (const id of ids) counts[id]!++;
      tokens += ids.length;
      perStory.push(ids.length);
    }
  }
  perStory.sort((a, b) => a - b);
  const n = perStory.length;
  const median = n === 0 ? 0 : n % 2 === 1 ? perStory[(n - 1) / 2]! : (perStory[n / 2 - 1]! + perStory[n / 2]!) / 2;
  let idsUsed = 0;
  let byteFallbackTokens = 0;
  const order: number[] = [];
  for (let id = 0; id < counts.length; id++) {
    if (counts[id]! > 0) {
      idsUsed++;
      order.push(id);
      if (/^<0x[0-9A-F]{2}>$/.test(tokenizer.piece(id))) byteFallbackTokens += counts[id]!;
    }
  }
  order.sort((a, b) => counts[b]! - counts[a]! || a - b);
  return {
    files: files.length,
    stories: n,
    bytes,
    tokens,
    tokensPerStory: { mean: n === 0 ? 0 : tokens / n, median, max: n === 0 ? 0 : perStory[n - 1]! },
    tokensPerByte: bytes === 0 ? 0 : tokens / bytes,
    bytesPerToken: tokens === 0 ? 0 : bytes / tokens,
    vocabSize: tokenizer.vocabSize,
    idsUsed,
    byteFallbackTokens,
    top: order.slice(0, topN).map((id) => ({ id, piece: tokenizer.piece(id), count: counts[id]! })),
  };
}
