// Text generation: run.c's generate() loop, shared by `llama2 run`, chat, the library, the HTTP
// server and the browser playground.
//
// The prompt is token ids, BOS first (P of them). Token by token:
//
//   prompt    feed prompt tokens 0 .. P-2; their predictions are not needed, only the KV cache
//             ("prefill") — though a chat, like run.c's chat(), still draws a sample at each,
//             which advances the generator
//   answer    feed the last token, sample the next one, feed it, …; stop at a stop token (BOS, as
//             run.c does, or EOS for a chat), a stop string, after maxTokens samples, or after
//             maxPositions positions
//
// Past the context window. The tokens go through a ContextWindow: when the KV cache is full (seqLen
// positions) and another token comes, it keeps the first `keep` positions (BOS by default; a
// chat's system prompt), drops the older half of the rest and moves the newer half down — the
// engine's context shift (InferenceEngine.shift, which re-rotates the moved keys) — and the token
// goes in after them. So generation can run any number of positions; within the first seqLen
// nothing changes (run.c's output for -n ≤ seq_len is unchanged). A prompt longer than the window
// is cut as the shifts would have cut it — the first `keep` tokens stay, the oldest of the rest go
// in whole shifts' worth — without running the tokens that would be dropped (truncatePrompt).
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
  /** The prompt, BOS first; at least 1 id (longer than the context window: see truncatePrompt). */
  readonly promptIds: readonly number[];
  /** Most tokens to sample after the prompt. */
  readonly maxTokens?: number;
  /**
   * Most positions to run, prompt included (run.c's -n); more than the context window slides it.
   * Default: as many as maxTokens needs, or one context window when neither is given.
   */
  readonly maxPositions?: number;
  /** Positions at the start of the context that a context shift keeps (default 1: BOS). */
  readonly keep?: number;
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
  /** Sees (and may steer) each token's logits: the server's logit_bias, penalties and logprobs. */
  readonly observer?: TokenObserver;
}

/** Watches the generation token by token (see GenerationRequest.observer). */
export interface TokenObserver {
  /** The logits the next token is about to be sampled from (the engine's array: may be changed in place). */
  beforeSample?(logits: Float32Array): void;
  /** The token sampled from them (a stop token too). */
  sampled?(token: number): void;
  /**
   * When present, the prompt is scored too: the logits at each prompt position (run instead of
   * the logits-free advance) and the prompt token that follows it.
   */
  promptLogits?(logits: Float32Array, next: number): void;
}

export interface GenerationResult {
  /** Tokens of the prompt as given (truncated ones included). */
  readonly promptTokens: number;
  /** Prompt tokens left out because the prompt was longer than the context window. */
  readonly truncatedTokens: number;
  /** Tokens sampled after the prompt (a final stop token not counted). */
  readonly completionTokens: number;
  readonly finishReason: FinishReason;
  /** Positions the model ran. */
  readonly positions: number;
  /** Context shifts made to run past the window. */
  readonly contextShifts: number;
  /** Milliseconds from the end of the first position to the end (run.c's timer). */
  readonly elapsedMs: number;
  /** run.c's "achieved tok/s": (positions - 1) / elapsed. */
  readonly tokensPerSecond: number;
}

/**
 * One sequence's tokens in an engine's KV cache: feeds them at consecutive positions and, when
 * the cache is full, makes room with a context shift (see the top of this file). A chat keeps
 * one across its turns.
 */
export class ContextWindow {
  /** Positions the cache holds: the next token goes at this position. */
  length = 0;
  /** Context shifts made, and the positions they dropped. */
  shifts = 0;
  dropped = 0;
  /** Positions a shift keeps, and drops: the older half of the rest. */
  readonly keep: number;
  readonly drop: number;
  /** The token at each position the cache holds (0 .. length-1). */
  readonly ids: Int32Array;

  /** `keep`: positions at the start that every shift keeps, at most half the window (default 1, BOS). */
  constructor(readonly engine: InferenceEngine, keep = 1) {
    const seqLen = engine.config.seqLen;
    if (!Number.isInteger(keep) || keep < 0 || keep > seqLen / 2) {
      throw new UsageError(`keep must be an integer from 0 to half the context window (${Math.floor(seqLen / 2)}), got ${keep}`);
    }
    this.keep = keep;
    this.drop = Math.max(1, Math.floor((seqLen - keep) / 2));
    this.ids = new Int32Array(seqLen);
  }

  /** Runs `token` at the next position and returns the logits (the engine's array). */
  forward(token: number): Float32Array {
    this.makeRoom();
    this.ids[this.length] = token;
    return this.engine.forward(token, this.length++);
  }

  /** Feeds `token` at the next position when its logits will not be read (a prompt token). */
  advance(token: number): void {
    this.makeRoom();
    this.ids[this.length] = token;
    this.engine.advance(token, this.length++);
  }

  /**
   * Feeds the prompt tokens ids[from … to) that fit before the next shift, at most PROMPT_BLOCK of
   * them, as one prefill (their logits will not be read); returns how many it fed.
   */
  prefill(ids: readonly number[], from: number, to: number): number {
    this.makeRoom();
    const n = Math.min(to - from, this.engine.config.seqLen - this.length, PROMPT_BLOCK);
    this.engine.prefill(ids.slice(from, from + n), this.length);
    for (let i = 0; i < n; i++) this.ids[this.length + i] = ids[from + i]!;
    this.length += n;
    return n;
  }

  /**
   * For a sequence this window was fed the beginning of, in order (a conversation re-rendered with
   * its new turn): keeps the positions that agree with `sequence`, rewinds to the first that does
   * not, and returns the index in `sequence` to go on feeding from — at most its last, which is
   * always run again for its logits. Tokens the shifts dropped are out of view and not compared;
   * when a kept one differs after a shift, the window starts over from index 0.
   */
  resume(sequence: readonly number[]): number {
    const last = sequence.length - 1;
    let p = 0;
    for (; p < this.length; p++) {
      const i = p < this.keep ? p : p + this.dropped;
      if (i >= last || sequence[i] !== this.ids[p]) break;
    }
    if (p < this.keep && this.dropped > 0) {
      this.length = 0;
      this.dropped = 0;
      return 0;
    }
    this.length = p;
    return p < this.keep ? p : p + this.dropped;
  }

  /**
   * Tells the engine which token forward() will get next (InferenceEngine.prepare: sessions of one
   * model decode together), unless the cache must shift first.
   */
  prepare(token: number): void {
    if (this.length < this.engine.config.seqLen) this.engine.prepare?.(token, this.length);
  }

  /** Shifts the context when the cache is full. */
  private makeRoom(): void {
    if (this.length < this.engine.config.seqLen) return;
    this.engine.shift(this.keep, this.drop, this.length);
    this.ids.copyWithin(this.keep, this.keep + this.drop, this.length);
    this.length -= this.drop;
    this.shifts++;
    this.dropped += this.drop;
  }
}

/**
 * Prompt tokens fed per prefill call: each call is one block through the engine's matrix × matrix
 * products, and between calls the generator yields (a server's other requests go on).
 */
const PROMPT_BLOCK = 128;

/**
 * A prompt longer than the context window, cut as the window's shifts would cut it while it was
 * fed: the first `keep` ids stay, and the oldest of the rest go in blocks of
 * floor((seqLen − keep) / 2) until it fits. A prompt that fits is returned as it is.
 */
export function truncatePrompt(ids: readonly number[], seqLen: number, keep: number): readonly number[] {
  if (ids.length <= seqLen) return ids;
  const block = Math.max(1, Math.floor((seqLen - keep) / 2));
  const drop = Math.ceil((ids.length - seqLen) / block) * block;
  return [...ids.slice(0, keep), ...ids.slice(keep + drop)];
}

/** The positions run.c runs for `-n steps`: 0 means one context window; more than it slides the window. */
export function stepsFor(steps: number | undefined, seqLen: number): number {
  const s = steps ?? 256;
  if (!Number.isInteger(s) || s < 0) throw new UsageError(`steps must be a non-negative integer, got ${s}`);
  return s === 0 ? seqLen : s;
}

/** Encodes a prompt, BOS first. */
export function encodePrompt(tokenizer: Tokenizer, prompt: string): number[] {
  return tokenizer.encode(prompt, { bos: true, eos: false });
}

/** The text of a prompt as the generation loop prints it (what run.c echoes before the answer). */
export function promptText(tokenizer: Tokenizer, ids: readonly number[]): string {
  const decoder = new StreamingDecoder(tokenizer);
  let text = '';
  for (let i = 1; i < ids.length; i++) text += decoder.push(ids[i - 1]!, ids[i]!);
  return text;
}

/** Runs a generation request from an empty KV cache; see the top of this file. */
export function* generateFromIds(engine: InferenceEngine, tokenizer: Tokenizer, request: GenerationRequest): Generator<string, GenerationResult, void> {
  const window = new ContextWindow(engine, request.keep ?? Math.min(1, Math.floor(engine.config.seqLen / 2)));
  return yield* generateInWindow(window, new Sampler(engine.config.vocabSize, request), tokenizer, request);
}

/**
 * The generation loop, in a ContextWindow that may already hold earlier tokens (a chat's earlier
 * turns) and with a sampler that may have drawn before (its random stream continues). The
 * request's sampler settings and `keep` are the window's and the sampler's, not read here.
 */
export function* generateInWindow(window: ContextWindow, sampler: Sampler, tokenizer: Tokenizer, request: GenerationRequest): Generator<string, GenerationResult, void> {
  const c = window.engine.config;
  if (tokenizer.vocabSize !== c.vocabSize) {
    throw new LlamaError(`tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${c.vocabSize}`);
  }
  if (request.promptIds.length < 1) throw new LlamaError('a prompt must have at least 1 token');
  // a fresh sequence's prompt longer than the window is cut; in a window that already holds
  // tokens, a long prompt slides through it
  const ids = window.length === 0 ? truncatePrompt(request.promptIds, c.seqLen, window.keep) : request.promptIds;
  const P = ids.length;
  const maxTokens = request.maxTokens ?? Infinity;
  if (maxTokens !== Infinity && (!Number.isInteger(maxTokens) || maxTokens < 0)) {
    throw new LlamaError(`maxTokens must be a non-negative integer, got ${maxTokens}`);
  }
  const maxPositions = request.maxPositions ?? (request.maxTokens === undefined ? c.seqLen : Infinity);
  const total = Math.min(P - 1 + maxTokens, maxPositions);
  const decoder = new StreamingDecoder(tokenizer, { cCompatible: request.cCompatible ?? false });
  const stops = new StopMatcher(request.stopSequences ?? []);
  const stopTokens = request.stopTokens ?? [tokenizer.bosId];
  const samplePrompt = request.samplePrompt ?? false;
  const echoPrompt = request.echoPrompt ?? false;
  const shiftsBefore = window.shifts;

  let positions = 0;
  let completionTokens = 0;
  let finishReason: FinishReason = 'length';
  let start = 0;
  const aborted = (): boolean => request.signal?.aborted === true;
  const observer = request.observer;

  // The prompt: tokens followed by another only fill the KV cache (the decoder still sees them:
  // a pending UTF-8 character or the space after BOS depend on them).
  for (let fed = 0; positions < P - 1 && positions < total; positions++) {
    if (aborted()) {
      finishReason = 'aborted';
      break;
    }
    // scoring the prompt (echo with logprobs) needs every position's logits: one at a time
    if (observer?.promptLogits !== undefined) observer.promptLogits(window.forward(ids[positions]!), ids[positions + 1]!);
    else if (positions === fed) fed += window.prefill(ids, positions, Math.min(P - 1, total)); // a block of them at once
    if (start === 0) start = performance.now();
    if (samplePrompt) sampler.skip();
    const piece = decoder.push(ids[positions]!, ids[positions + 1]!);
    yield echoPrompt ? piece : '';
  }

  // The answer: feed the last token, sample the next.
  let token = ids[positions]!;
  while (finishReason !== 'aborted' && positions < total) {
    if (aborted()) {
      finishReason = 'aborted';
      break;
    }
    const logits = window.forward(token);
    if (start === 0) start = performance.now();
    observer?.beforeSample?.(logits);
    const next = sampler.sample(logits);
    observer?.sampled?.(next);
    positions++;
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
    if (positions < total) window.prepare(next); // (other sessions may run it with theirs meanwhile)
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
    promptTokens: request.promptIds.length, truncatedTokens: request.promptIds.length - P, completionTokens, finishReason,
    positions, contextShifts: window.shifts - shiftsBefore, elapsedMs,
    tokensPerSecond: positions > 1 && elapsedMs > 0 ? ((positions - 1) / elapsedMs) * 1000 : 0,
  };
}

export interface GenerateOptions extends SamplerOptions {
  /** Text to continue; default '' (the model starts a story from BOS alone). */
  prompt?: string;
  /**
   * Positions to run, prompt included (run.c's -n); 0 = one context window; more than the window
   * slides it (context shifts). Default 256.
   */
  steps?: number;
  /** Positions at the start of the context a context shift keeps (default 1: BOS). */
  keep?: number;
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
    promptIds: encodePrompt(tokenizer, options.prompt ?? ''),
    maxPositions: stepsFor(options.steps, seqLen),
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
