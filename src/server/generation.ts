// Generation from token ids, for the API server and the in-browser playground alike.
//
// infer/generate.ts takes a prompt string; the OpenAI endpoints need a little more: prompts that
// are already token ids (a chat rendered by encodeConversation), "how many tokens after the
// prompt" instead of "how many positions", stop tokens other than BOS, stop strings, and a
// finish reason. The loop is run.c's:
//
//   pos 0 .. P-2       feed prompt token pos (its prediction is ignored; a chat, like run.c's
//                      chat(), still draws a sample there, which advances the random generator)
//   pos P-1 ..         feed the last token, sample the next one; stop at a stop token, a stop
//                      string, after maxTokens samples, or at the end of the context window
//
// so a completion of prompt p with max_tokens M runs P-1+M positions (P = prompt tokens, BOS
// included) and prints exactly what `llama2 run -i p -n (P-1+M)` prints after the prompt (the
// server decodes plainly: no "\n</s>\n" and no skipped control bytes, as run.c's printf has).

import { LlamaError } from '../errors.js';
import type { Transformer } from '../infer/forward.js';
import { Sampler, type SamplerOptions } from '../infer/sampler.js';
import { StreamingDecoder, type Tokenizer } from '../tokenizer/index.js';

export type FinishReason = 'stop' | 'length' | 'aborted';

export interface GenerationRequest extends SamplerOptions {
  /** The prompt, BOS first; 1 to seqLen ids. */
  readonly promptIds: readonly number[];
  /** Most tokens to sample after the prompt (the context window may end it sooner). */
  readonly maxTokens: number;
  /** Sampled ids that end the answer (not part of it): BOS for a completion, EOS and BOS for a chat. */
  readonly stopTokens: readonly number[];
  /** Strings that end the answer; the text stops just before the first one. */
  readonly stopSequences?: readonly string[];
  /** Draw (and discard) a sample at every prompt position, as run.c's chat() does. */
  readonly samplePrompt?: boolean;
  /** Ends generation before the next position. */
  readonly signal?: AbortSignal;
}

export interface GenerationResult {
  readonly promptTokens: number;
  /** Tokens sampled after the prompt (a final stop token not counted). */
  readonly completionTokens: number;
  readonly finishReason: FinishReason;
  /** Positions the model ran. */
  readonly positions: number;
  /** Milliseconds from the end of the first position to the end (run.c's timer). */
  readonly elapsedMs: number;
  /** run.c's "achieved tok/s": (positions - 1) / elapsed. */
  readonly tokensPerSecond: number;
}

/** Positions a request runs: P-1+maxTokens, cut at the context window. */
export function positionsFor(promptTokens: number, maxTokens: number, seqLen: number): number {
  return Math.min(promptTokens - 1 + maxTokens, seqLen);
}

/** The text of the prompt as the generation loop prints it (what run.c echoes before the answer). */
export function promptText(tokenizer: Tokenizer, ids: readonly number[]): string {
  const decoder = new StreamingDecoder(tokenizer);
  let text = '';
  for (let i = 1; i < ids.length; i++) text += decoder.push(ids[i - 1]!, ids[i]!);
  return text;
}

/**
 * Runs a request, yielding once per position the answer text it completed (often '': prompt
 * positions, a character still incomplete, text held back as a possible stop string), so that a
 * caller can let other work run between positions. Returns the counts and why it ended.
 */
export function* generateFromIds(transformer: Transformer, tokenizer: Tokenizer, request: GenerationRequest): Generator<string, GenerationResult, void> {
  const c = transformer.config;
  const ids = request.promptIds;
  const P = ids.length;
  if (P < 1 || P > c.seqLen) throw new LlamaError(`a prompt must have 1 to ${c.seqLen} tokens, got ${P}`);
  if (!Number.isInteger(request.maxTokens) || request.maxTokens < 0) throw new LlamaError(`maxTokens must be a non-negative integer, got ${request.maxTokens}`);
  const total = positionsFor(P, request.maxTokens, c.seqLen);
  const sampler = new Sampler(c.vocabSize, request);
  const decoder = new StreamingDecoder(tokenizer);
  const stops = new StopMatcher(request.stopSequences ?? []);
  const stopTokens = request.stopTokens;
  const samplePrompt = request.samplePrompt ?? false;

  let token = ids[0]!;
  let pos = 0;
  let completionTokens = 0;
  let finishReason: FinishReason = 'length';
  let start = 0;
  while (pos < total) {
    if (request.signal?.aborted) {
      finishReason = 'aborted';
      break;
    }
    const logits = transformer.forward(token, pos);
    if (start === 0) start = performance.now();
    if (pos < P - 1) {
      // prefill: the next token is the prompt's
      if (samplePrompt) sampler.sample(logits);
      const next = ids[++pos]!;
      decoder.push(token, next); // keeps the decoder's state (a pending UTF-8 character) right
      token = next;
      yield '';
      continue;
    }
    const next = sampler.sample(logits);
    pos++;
    if (stopTokens.includes(next)) {
      finishReason = 'stop';
      break;
    }
    completionTokens++;
    const text = stops.push(decoder.push(token, next));
    token = next;
    if (stops.stopped) {
      if (text.length > 0) yield text;
      finishReason = 'stop';
      break;
    }
    yield text;
  }
  if (!stops.stopped) {
    // an incomplete character at the end, then text held back as a possible start of a stop string
    const rest = stops.push(decoder.flush());
    const held = stops.stopped ? '' : stops.flush();
    if (rest.length + held.length > 0) yield rest + held;
    if (stops.stopped) finishReason = 'stop';
  }
  const elapsedMs = start === 0 ? 0 : performance.now() - start;
  return {
    promptTokens: P, completionTokens, finishReason, positions: pos, elapsedMs,
    tokensPerSecond: pos > 1 && elapsedMs > 0 ? ((pos - 1) / elapsedMs) * 1000 : 0,
  };
}

/**
 * Cuts streamed text at the first occurrence of any stop string. Text that could be the start of
 * a stop string is held back until the next piece shows whether it is; so a stop string split
 * over several tokens is still found, and none of it is ever sent.
 */
export class StopMatcher {
  /** Text received but not yet released. */
  private pending = '';
  private done = false;

  constructor(private readonly stops: readonly string[]) {
    for (const s of stops) if (s.length === 0) throw new LlamaError('a stop string must not be empty');
  }

  /** True once a stop string has been seen (push then returns nothing more). */
  get stopped(): boolean {
    return this.done;
  }

  /** Adds a piece; returns the text that is now certain to come before any stop string. */
  push(piece: string): string {
    if (this.done) return '';
    if (this.stops.length === 0 || piece.length === 0) return piece;
    const text = this.pending + piece;
    // the earliest complete stop string (a match cannot start in text already released)
    let cut = -1;
    for (const s of this.stops) {
      const at = text.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.done = true;
      this.pending = '';
      return text.slice(0, cut);
    }
    // hold back the longest tail that is a proper prefix of some stop string
    let keep = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, text.length); n > keep; n--) {
        if (text.endsWith(s.slice(0, n))) {
          keep = n;
          break;
        }
      }
    }
    this.pending = text.slice(text.length - keep);
    return text.slice(0, text.length - keep);
  }

  /** Releases what is held back (call at the end when no stop string came). */
  flush(): string {
    const text = this.done ? '' : this.pending;
    this.pending = '';
    return text;
  }
}
