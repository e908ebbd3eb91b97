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
//
// Each window's losses are summed in float64, position by position, and the windows' sums are
// added in window order: the same bits whether one thread ran the windows one after another
// (evaluateLoss) or several threads shared them out (eval-windows.ts).

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

/** −log softmax(logits)[target] as `engine` computes it (its own kernel), else in plain TypeScript. */
export function lossFunction(engine: InferenceEngine): (logits: Float32Array, target: number) => number {
  const V = engine.config.vocabSize;
  return engine.crossEntropy !== undefined
    ? (logits, target) => engine.crossEntropy!(logits, target)
    : (logits, target) => crossEntropy(logits, V, target);
}

/**
 * The summed cross-entropy of one window's scored predictions (float64, position by position):
 * the window is fed from position 0, so whatever the engine's KV cache held is overwritten.
 */
export function windowLoss(
  engine: InferenceEngine, tokens: Uint16Array, seqLen: number, { start, firstScored }: EvalWindow,
  lossOf: (logits: Float32Array, target: number) => number,
): number {
  if (firstScored > 0) engine.prefill(tokens.subarray(start, start + firstScored), 0);
  const base = start + firstScored; // tokens[base + i] is the i-th token of the scored part of the window
  let sum = 0;
  engine.prefill(tokens.subarray(base, start + seqLen), firstScored, (i, logits) => {
    sum += lossOf(logits, tokens[base + i + 1]!);
  });
  return sum;
}

/** The result of windows whose summed losses are `sums` (in window order, so the total's bits do not depend on who computed which). */
export function evalResult(windows: readonly EvalWindow[], sums: ArrayLike<number>, seqLen: number): EvalResult {
  let total = 0;
  let scored = 0;
  for (let w = 0; w < windows.length; w++) {
    total += sums[w]!;
    scored += seqLen - windows[w]!.firstScored;
  }
  const loss = total / scored;
  return { loss, perplexity: Math.exp(loss), windows: windows.length, tokens: scored };
}

/** Checks --seq-len against the model's context window. */
export function checkSeqLen(seqLen: number, contextLength: number): void {
  if (!Number.isInteger(seqLen) || seqLen < 1 || seqLen > contextLength) {
    throw new UsageError(`--seq-len must be between 1 and the model's context window ${contextLength}, got ${seqLen}`);
  }
}

/**
 * Mean cross-entropy over the windows of `seqLen` tokens (+1 target) of `tokens`, one every
 * `stride` tokens (default seqLen: non-overlapping), one window after another on this engine
 * (eval-windows.ts runs them on several threads, with the same result bit for bit).
 */
export function evaluateLoss(
  engine: InferenceEngine, tokens: Uint16Array, seqLen: number, onWindow?: (done: number, total: number) => void, stride = seqLen,
): EvalResult {
  checkSeqLen(seqLen, engine.config.seqLen);
  const windows = evalWindows(tokens.length, seqLen, stride);
  const lossOf = lossFunction(engine);
  const sums = new Float64Array(windows.length);
  windows.forEach((window, w) => {
    sums[w] = windowLoss(engine, tokens, seqLen, window, lossOf);
    onWindow?.(w + 1, windows.length);
  });
  return evalResult(windows, sums, seqLen);
}

/** −log softmax(logits)[target], via log-sum-exp in float64 (the reference kernels'). */
export { crossEntropy };
