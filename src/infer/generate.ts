// Text generation: run.c's generate() loop as a generator of text pieces.
//
// The prompt is encoded with BOS in front. Position by position the model is fed the prompt's
// tokens (ignoring its predictions, which is how the prompt is "prefilled"), then its own samples.
// Like run.c it stops after `steps` positions or when the model emits BOS (the start of another
// story), and the count of steps includes the prompt.

import { LlamaError, UsageError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { StreamingDecoder } from '../tokenizer/index.js';
import type { Transformer } from './forward.js';
import { Sampler, type SamplerOptions } from './sampler.js';

export interface GenerateOptions extends SamplerOptions {
  /** Text to continue; default '' (the model starts a story from BOS alone). */
  prompt?: string;
  /** Positions to run, prompt included; 0 or more than the context window means the whole window. Default 256. */
  steps?: number;
  /** Stop when the model emits BOS, as run.c does (default true; `bench` turns it off). */
  stopAtBos?: boolean;
  /** Print pieces as run.c's safe_printf does (skip lone control bytes). Default false. */
  cCompatible?: boolean;
  /** Stops generation early (checked before each position). */
  signal?: AbortSignal;
}

export interface GenerateSummary {
  /** Positions the model ran (prompt included). */
  readonly positions: number;
  readonly promptTokens: number;
  /** Tokens produced after the prompt. */
  readonly generatedTokens: number;
  /** Why generation ended. */
  readonly stop: 'steps' | 'bos' | 'aborted';
  /** Milliseconds from the end of the first position to the end (run.c's tok/s timer). */
  readonly elapsedMs: number;
  /** run.c's "achieved tok/s": (positions - 1) / elapsed. */
  readonly tokensPerSecond: number;
}

/** The number of positions to run for a requested `steps`, as run.c clamps it. */
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

/**
 * Generates text, yielding each piece as soon as it is decoded; returns a summary. With the same
 * model, tokenizer, prompt, temperature, top-p and seed, the pieces concatenate to exactly what
 * run.c prints (before its final newline).
 */
export function* generate(transformer: Transformer, tokenizer: Tokenizer, options: GenerateOptions = {}): Generator<string, GenerateSummary, void> {
  const c = transformer.config;
  if (tokenizer.vocabSize !== c.vocabSize) {
    throw new LlamaError(`tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${c.vocabSize}`);
  }
  const steps = clampSteps(options.steps, c.seqLen);
  const promptTokens = encodePrompt(tokenizer, options.prompt ?? '', c.seqLen);
  const sampler = new Sampler(c.vocabSize, options);
  const decoder = new StreamingDecoder(tokenizer, { cCompatible: options.cCompatible ?? false });
  const stopAtBos = options.stopAtBos ?? true;

  let token = promptTokens[0]!;
  let pos = 0;
  let start = 0;
  let stop: GenerateSummary['stop'] = 'steps';
  while (pos < steps) {
    if (options.signal?.aborted) {
      stop = 'aborted';
      break;
    }
    const logits = transformer.forward(token, pos);
    // inside the prompt: force the next prompt token; after it: sample
    const next = pos < promptTokens.length - 1 ? promptTokens[pos + 1]! : sampler.sample(logits);
    pos++;
    if (stopAtBos && next === tokenizer.bosId) {
      stop = 'bos';
      break;
    }
    const piece = decoder.push(token, next);
    if (piece.length > 0) yield piece;
    token = next;
    if (start === 0) start = performance.now();
  }
  const rest = decoder.flush();
  if (rest.length > 0) yield rest;
  const elapsedMs = start === 0 ? 0 : performance.now() - start;
  return {
    positions: pos,
    promptTokens: promptTokens.length,
    generatedTokens: Math.max(0, pos - (promptTokens.length - 1)) - (stop === 'bos' ? 1 : 0),
    stop,
    elapsedMs,
    tokensPerSecond: pos > 1 && elapsedMs > 0 ? ((pos - 1) / elapsedMs) * 1000 : 0,
  };
}
