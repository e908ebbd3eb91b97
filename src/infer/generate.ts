// Text generation: run.c's generate() loop, shared by `llama2 run`, the library, the HTTP server
// and the browser playground.
//
// The prompt is token ids, BOS first (P of them). Position by position:
//
//   pos 0 .. P-2   feed prompt token pos; its prediction is ignored ("prefill") — though a chat,
//                  like run.c's chat(), still draws a sample there, which advances the generator
//   pos P-1 ..     feed the last token, sample the next one; stop at a stop token (BOS, as run.c
//                  does, or EOS for a chat), a stop string, after maxTokens samples, after
//                  maxPositions positions, or at the end of the context window
//
// The generator yields once per position the text that position completed (often '' — a prompt
// position, a character still incomplete, text held back as a possible stop string), so a caller
// can let other work run between positions. With echoPrompt the prompt's own text is yielded too,
// as run.c prints it.

import { LlamaError, UsageError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { StreamingDecoder } from '../tokenizer/index.js';
import type { InferenceEngine } from './engine.js';
import { Sampler, type SamplerOptions } from './sampler.js';

export type FinishReason = 'stop' | 'length' | 'aborted';

export interface GenerationRequest extends SamplerOptions {
  /** The prompt, BOS first; 1 to seqLen ids. */
  readonly promptIds: readonly number[];
  /** Most tokens to sample after the prompt (default: no limit but the others). */
  readonly maxTokens?: number;
  /** Most positions to run, prompt included (run.c's -n); default the context window. */
  readonly maxPositions?: number;
  /** Sampled ids that end the answer and are not part of it. Default: BOS, as run.c. */
  readonly stopTokens?: readonly number[];
  /** Strings that end the answer; the text stops just before the first one. */
  readonly stopSequences?: readonly string[];
  /** Draw (and discard) a sample at every prompt position, as run.c's chat() does. */
  readonly samplePrompt?: boolean;
  /** Also yield the prompt's text (what run.c prints before the answer). */
  readonly echoPrompt?: boolean;
  /** Print pieces as run.c's safe_printf does (skip lone control bytes, spell out </s>). */
  readonly cCompatible?: boolean;
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

/** Positions a request of P prompt tokens and maxTokens samples runs, cut at the context window. */
export function positionsFor(promptTokens: number, maxTokens: number, seqLen: number): number {
  return Math.min(promptTokens - 1 + maxTokens, seqLen);
}

/** The number of positions run.c runs for `-n steps`: 0 or more than the context means all of it. */
export function clampSteps(steps: number | undefined, seqLen: number): number {
  const s = steps ?? 256;
  if (!Number.isInteger(s) || s < 0) throw new UsageError(`steps must be a non-negative integer, got ${s}`);
  return s === 0 || s > seqLen ? seqLen : s;
}

/** Encodes a prompt (BOS first) and checks that it fits the context window. */
export function encodePrompt(tokenizer: Tokenizer, prompt: string, seqLen: number): number[] {
  const tokens = tokenizer.encode(prompt, { bos: true, eos: false });
  if (tokens.length > seqLen) {
    throw new UsageError(`the prompt is ${tokens.length} tokens, longer than the model's context window of ${seqLen}`);
  }
  return tokens;
}

/** The text of a prompt as the generation loop prints it (what run.c echoes before the answer). */
export function promptText(tokenizer: Tokenizer, ids: readonly number[]): string {
  const decoder = new StreamingDecoder(tokenizer);
  let text = '';
  for (let i = 1; i < ids.length; i++) text += decoder.push(ids[i - 1]!, ids[i]!);
  return text;
}

/** Runs a generation request; see the top of this file. */
export function* generateFromIds(transformer: InferenceEngine, tokenizer: Tokenizer, request: GenerationRequest): Generator<string, GenerationResult, void> {
  const c = transformer.config;
  if (tokenizer.vocabSize !== c.vocabSize) {
    throw new LlamaError(`tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${c.vocabSize}`);
  }
  const ids = request.promptIds;
  const P = ids.length;
  if (P < 1 || P > c.seqLen) throw new LlamaError(`a prompt must have 1 to ${c.seqLen} tokens, got ${P}`);
  const maxTokens = request.maxTokens ?? Infinity;
  if (maxTokens !== Infinity && (!Number.isInteger(maxTokens) || maxTokens < 0)) {
    throw new LlamaError(`maxTokens must be a non-negative integer, got ${maxTokens}`);
  }
  const total = Math.min(positionsFor(P, maxTokens, c.seqLen), request.maxPositions ?? c.seqLen);
  const sampler = new Sampler(c.vocabSize, request);
  const decoder = new StreamingDecoder(tokenizer, { cCompatible: request.cCompatible ?? false });
  const stops = new StopMatcher(request.stopSequences ?? []);
  const stopTokens = request.stopTokens ?? [tokenizer.bosId];
  const samplePrompt = request.samplePrompt ?? false;
  const echoPrompt = request.echoPrompt ?? false;

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
    if (pos < P - 1) {
      // prefill: the next token is the prompt's, so only the KV cache is needed, not the logits
      // (the decoder still sees the token: a pending UTF-8 character or the space after BOS
      // depend on it); samplePrompt draws and discards a sample as run.c's chat does
      transformer.advance(token, pos);
      if (start === 0) start = performance.now();
      if (samplePrompt) sampler.skip();
      const next = ids[++pos]!;
      const piece = decoder.push(token, next);
      token = next;
      yield echoPrompt ? piece : '';
      continue;
    }
    const logits = transformer.forward(token, pos);
    if (start === 0) start = performance.now();
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

export interface GenerateOptions extends SamplerOptions {
  /** Text to continue; default '' (the model starts a story from BOS alone). */
  prompt?: string;
  /** Positions to run, prompt included (run.c's -n); 0 or more than the context = all of it. Default 256. */
  steps?: number;
  /** Stop when the model emits BOS, as run.c does (default true; `bench` turns it off). */
  stopAtBos?: boolean;
  /** Print pieces as run.c's safe_printf does. Default false. */
  cCompatible?: boolean;
  /** Stops generation early (checked before each position). */
  signal?: AbortSignal;
}

/**
 * run.c's generate(): the prompt text (echoed) and its continuation, piece by piece. With the same
 * model, tokenizer, prompt, temperature, top-p and seed, the pieces concatenate to exactly what
 * run.c prints (before its final newline).
 */
export function* generate(transformer: InferenceEngine, tokenizer: Tokenizer, options: GenerateOptions = {}): Generator<string, GenerationResult, void> {
  const seqLen = transformer.config.seqLen;
  const gen = generateFromIds(transformer, tokenizer, {
    ...options,
    promptIds: encodePrompt(tokenizer, options.prompt ?? '', seqLen),
    maxPositions: clampSteps(options.steps, seqLen),
    stopTokens: options.stopAtBos === false ? [] : [tokenizer.bosId],
    echoPrompt: true,
  });
  for (;;) {
    const r = gen.next();
    if (r.done) return r.value;
    if (r.value.length > 0) yield r.value;
  }
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
