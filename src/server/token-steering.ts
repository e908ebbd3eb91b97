// What the server does to each token's logits before sampling, and what it learns from them — the
// request fields that need the logits themselves (src/infer/generate.ts's TokenObserver):
//
//   logit_bias          bias[j] added to logit[j]
//   presence_penalty    logit[j] -= frequency × count[j] + presence × (count[j] > 0), count[j] =
//   frequency_penalty   how often token j was generated so far in this choice (OpenAI's formula)
//   logprobs            log p(j) = logit[j] − log Σ exp(logit) over the vocabulary: the
//                       distribution the token was drawn from before temperature and top-p, after
//                       the bias and penalties; the sampled token's, and the top k (k ≤ 20)
//
// With echo and logprobs the prompt is scored too (each prompt token under the logits of the
// position before it, unbiased). Per token the cost is one pass over the vocabulary for the
// log-sum-exp and k for the top alternatives; nothing is allocated per token but the record kept.

import type { TokenObserver } from '../infer/generate.js';
import { PieceType } from '../tokenizer/sentencepiece-model.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { pieceToByte } from '../tokenizer/vocabulary.js';

/** A token's log probability and its top alternatives, by id. */
export interface ScoredToken {
  readonly id: number;
  readonly logprob: number;
  readonly top: ReadonlyArray<{ readonly id: number; readonly logprob: number }>;
  /** A prompt token (scored for echo), not a sampled one. */
  readonly prompt: boolean;
}

export interface SteeringOptions {
  readonly logitBias: ReadonlyMap<number, number>;
  readonly presencePenalty: number;
  readonly frequencyPenalty: number;
  /** undefined: no log probabilities; else the number of alternatives (0–20). */
  readonly logprobs: number | undefined;
  /** Score the prompt's tokens too (echo with logprobs). */
  readonly scorePrompt: boolean;
}

export class TokenSteering implements TokenObserver {
  /** Tokens scored so far, in order (prompt tokens first when scored). */
  readonly scored: ScoredToken[] = [];
  /** Sum of the sampled tokens' log probabilities (best_of ranks choices by its mean). */
  sampledLogprob = 0;
  sampledCount = 0;
  private readonly counts: Uint32Array;
  /** Ids generated so far, once each (the penalties touch only these). */
  private readonly seen: number[] = [];
  /** The logits of the last position, copied before the sampler overwrites them. */
  private readonly last: Float32Array;
  private lastLse = 0;
  readonly promptLogits: TokenObserver['promptLogits'];

  constructor(vocabSize: number, private readonly o: SteeringOptions) {
    this.counts = new Uint32Array(o.presencePenalty !== 0 || o.frequencyPenalty !== 0 ? vocabSize : 0);
    this.last = new Float32Array(vocabSize);
    this.promptLogits = o.scorePrompt && o.logprobs !== undefined
      ? (logits, next) => this.scored.push(this.score(logits, logSumExp(logits), next, true))
      : undefined;
  }

  /** Whether logprobs are computed at all (asked for, or needed to rank best_of). */
  get wantsScores(): boolean {
    return this.o.logprobs !== undefined;
  }

  beforeSample(logits: Float32Array): void {
    for (const [id, bias] of this.o.logitBias) logits[id]! += bias;
    if (this.counts.length > 0) {
      for (const id of this.seen) logits[id]! -= this.o.frequencyPenalty * this.counts[id]! + this.o.presencePenalty;
    }
    if (this.o.logprobs !== undefined) {
      this.last.set(logits.subarray(0, this.last.length));
      this.lastLse = logSumExp(this.last);
    }
  }

  sampled(token: number): void {
    if (this.counts.length > 0) {
      if (this.counts[token] === 0) this.seen.push(token);
      this.counts[token]!++;
    }
    if (this.o.logprobs !== undefined) {
      const s = this.score(this.last, this.lastLse, token, false);
      this.scored.push(s);
      this.sampledLogprob += s.logprob;
      this.sampledCount++;
    }
  }

  /** Forgets the last scored token (a stop token: not part of the answer). */
  dropLast(): void {
    const s = this.scored.pop();
    if (s !== undefined && !s.prompt) {
      this.sampledLogprob -= s.logprob;
      this.sampledCount--;
    }
  }

  private score(logits: Float32Array, lse: number, id: number, prompt: boolean): ScoredToken {
    const k = this.o.logprobs ?? 0;
    const top: Array<{ id: number; logprob: number }> = [];
    if (k > 0) {
      // the k largest, kept sorted from the largest (k ≤ 20)
      const n = this.last.length;
      for (let j = 0; j < n; j++) {
        const v = logits[j]!;
        if (top.length === k) {
          if (v <= top[k - 1]!.logprob) continue;
          top.pop();
        }
        let at = top.length;
        top.push({ id: j, logprob: v });
        while (at > 0 && top[at - 1]!.logprob < v) {
          top[at] = top[at - 1]!;
          at--;
        }
        top[at] = { id: j, logprob: v };
      }
      for (const t of top) t.logprob -= lse;
    }
    return { id, logprob: logits[id]! - lse, top, prompt };
  }
}

/** log Σ exp(x), computed stably in float64. */
function logSumExp(x: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i]! > max) max = x[i]!;
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += Math.exp(x[i]! - max);
  return max + Math.log(sum);
}

/**
 * A token's own text and bytes as the API lists it: the piece with ▁ as a space (its leading space
 * dropped right after BOS, as decoding does), a byte token's byte, nothing for BOS/EOS. Text that
 * is not whole UTF-8 (one byte of a longer character) is written as OpenAI writes it,
 * "bytes:\xe2\x80".
 */
export function tokenText(tokenizer: Tokenizer, prev: number, id: number): { token: string; bytes: number[] } {
  const v = tokenizer.vocabulary;
  const type = v.types[id]!;
  let bytes: Uint8Array;
  if (type === PieceType.BYTE) bytes = Uint8Array.of(pieceToByte(v.pieces[id]!));
  else if (type === PieceType.CONTROL) bytes = new Uint8Array(0);
  else {
    let text = type === PieceType.UNKNOWN ? v.unkSurface : v.pieces[id]!.replaceAll('\u2581', ' ');
    if (prev === tokenizer.bosId && text.startsWith(' ')) text = text.slice(1);
    bytes = new TextEncoder().encode(text);
  }
  let token: string;
  try {
    token = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    token = 'bytes:' + [...bytes].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('');
  }
  return { token, bytes: [...bytes] };
}
