// Validation loss: the mean next-token cross-entropy of a model over a pretokenized token stream,
// cut into non-overlapping windows of T tokens. Window i feeds tokens d[iT .. iT+T) from position
// 0 and scores the predictions of d[iT+1 .. iT+T+1):  loss = −log softmax(logits)[target].
// This is the number llama2.c's train.py estimates on random batches; here every window counts.

import { UsageError } from '../errors.js';
import { closeTokenFile, openTokenFile, readTokens } from '../train/data.js';
import type { InferenceEngine } from './engine.js';

/** Reads a whole pretokenized file (uint16 ids, each checked to be below `vocabSize`). */
export function readTokenFile(path: string, vocabSize: number): Uint16Array {
  const file = openTokenFile(path, vocabSize);
  try {
    const tokens = new Uint16Array(file.tokens);
    readTokens(file, 0, tokens);
    return tokens;
  } finally {
    closeTokenFile(file);
  }
}

export interface EvalResult {
  /** Mean cross-entropy in nats per token. */
  readonly loss: number;
  readonly perplexity: number;
  readonly windows: number;
  readonly tokens: number;
}

/** Mean cross-entropy over all full windows of `seqLen` tokens (+1 target) of `tokens`. */
export function evaluateLoss(
  transformer: InferenceEngine, tokens: Uint16Array, seqLen: number, onWindow?: (done: number, total: number) => void,
): EvalResult {
  const c = transformer.config;
  if (!Number.isInteger(seqLen) || seqLen < 1 || seqLen > c.seqLen) {
    throw new UsageError(`--seq-len must be between 1 and the model's context window ${c.seqLen}, got ${seqLen}`);
  }
  const windows = Math.floor((tokens.length - 1) / seqLen);
  if (windows < 1) throw new UsageError(`${tokens.length} tokens are fewer than one window of ${seqLen} + 1`);
  let total = 0;
  for (let w = 0; w < windows; w++) {
    const base = w * seqLen;
    for (let pos = 0; pos < seqLen; pos++) {
      const logits = transformer.forward(tokens[base + pos]!, pos);
      total += crossEntropy(logits, c.vocabSize, tokens[base + pos + 1]!);
    }
    onWindow?.(w + 1, windows);
  }
  const loss = total / (windows * seqLen);
  return { loss, perplexity: Math.exp(loss), windows, tokens: windows * seqLen };
}

/** −log softmax(logits)[target], via log-sum-exp in float64. */
export function crossEntropy(logits: Float32Array, n: number, target: number): number {
  let max = logits[0]!;
  for (let i = 1; i < n; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[i]! - max);
  return Math.log(sum) + max - logits[target]!;
}
