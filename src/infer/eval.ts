// Validation loss: the mean next-token cross-entropy of a model over a pretokenized token stream
// d[0..N), loss = −log softmax(logits)[target], in windows of T tokens fed from position 0.
//
// Non-overlapping windows (stride S = T, the default): window i feeds d[iT .. iT+T) and scores
// the predictions of d[iT+1 .. iT+T+1) — the number llama2.c's train.py estimates on random
// batches; here every window counts. A token early in a window is predicted from little context.
//
// Sliding windows (S < T; Hugging Face's "perplexity of fixed-length models"): windows start every
// S tokens, b = 0, S, 2S, …; the first scores all its T predictions, each later one only its last
// S — the targets d[b+T-S+1 .. b+T] no window has scored yet. So every token is scored once, and
// after the first window with at least T − S tokens of context; the price is T/S times the forward
// passes. Positions whose predictions are not scored only fill the KV cache. Each window goes
// through the engine as prefills (blocks of tokens through matrix × matrix products), the scored
// part with every position's logits.

import { UsageError } from '../errors.js';
import { closeTokenFile, openTokenFile, readTokens } from '../train/data.js';
import { crossEntropy } from '../kernels/js.js';
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
  /** Tokens scored. */
  readonly tokens: number;
}

/** A window of the evaluation: it feeds tokens[start .. start+T) and scores its positions from `firstScored`. */
export interface EvalWindow {
  readonly start: number;
  readonly firstScored: number;
}

/** The windows of T tokens, every `stride`, over `count` tokens (see the top of this file). */
export function evalWindows(count: number, seqLen: number, stride: number): EvalWindow[] {
  if (!Number.isInteger(stride) || stride < 1 || stride > seqLen) {
    throw new UsageError(`--stride must be between 1 and the window length ${seqLen}, got ${stride}`);
  }
  if (count - 1 < seqLen) throw new UsageError(`${count} tokens are fewer than one window of ${seqLen} + 1`);
  const windows: EvalWindow[] = [];
  for (let start = 0; start + seqLen + 1 <= count; start += stride) {
    windows.push({ start, firstScored: start === 0 ? 0 : seqLen - stride });
  }
  return windows;
}

/**
 * Mean cross-entropy over the windows of `seqLen` tokens (+1 target) of `tokens`, one every
 * `stride` tokens (default seqLen: non-overlapping).
 */
export function evaluateLoss(
  engine: InferenceEngine, tokens: Uint16Array, seqLen: number, onWindow?: (done: number, total: number) => void, stride = seqLen,
): EvalResult {
  const c = engine.config;
  if (!Number.isInteger(seqLen) || seqLen < 1 || seqLen > c.seqLen) {
    throw new UsageError(`--seq-len must be between 1 and the model's context window ${c.seqLen}, got ${seqLen}`);
  }
  const windows = evalWindows(tokens.length, seqLen, stride);
  const V = c.vocabSize;
  const lossOf = engine.crossEntropy !== undefined
    ? (logits: Float32Array, target: number): number => engine.crossEntropy!(logits, target)
    : (logits: Float32Array, target: number): number => crossEntropy(logits, V, target);
  let total = 0;
  let scored = 0;
  let base = 0; // tokens[base + i] is the i-th token of the scored part of the window
  const score = (i: number, logits: Float32Array): void => {
    total += lossOf(logits, tokens[base + i + 1]!);
  };
  windows.forEach(({ start, firstScored }, w) => {
    if (firstScored > 0) engine.prefill(tokens.subarray(start, start + firstScored), 0);
    base = start + firstScored;
    engine.prefill(tokens.subarray(base, start + seqLen), firstScored, score);
    scored += seqLen - firstScored;
    onWindow?.(w + 1, windows.length);
  });
  const loss = total / scored;
  return { loss, perplexity: Math.exp(loss), windows: windows.length, tokens: scored };
}

/** −log softmax(logits)[target], via log-sum-exp in float64 (the reference kernels'). */
export { crossEntropy };
