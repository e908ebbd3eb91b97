// The library's front door: a model and its tokenizer loaded together, and text generation as
// OpenAI's API shapes it — a completion of a prompt, or the assistant's next message in a chat —
// streamed as an async iterator or awaited whole.
//
//   const lm = await LanguageModel.load();                      // the embedded model
//   for await (const piece of lm.stream({ prompt: 'Once upon a time', maxTokens: 100 })) …
//   const { text } = await lm.complete({ prompt: 'The cat', temperature: 0, stop: ['.'] });
//   for await (const piece of lm.chat([{ role: 'user', content: 'Hi!' }])) …
//
// A model loads from a path, a file: or http(s): URL, or the bytes of the file; the tokenizer from
// the same kinds of input, by default the one found with the model. Kernels: WebAssembly SIMD on
// every core unless told otherwise (kernels: 'webgpu' runs it on the GPU). Generation runs on the
// calling thread, but lets the event loop run every few milliseconds, so a server stays
// responsive; calls on one model run one at a time, in the order they were made (the model has one
// KV cache).
//
// Defaults are `llama2 run`'s (temperature 1, top-p 0.9), so a seeded completion is the text run
// prints after the prompt; the prompt itself is not part of the text unless `echo` is set.

import { LlamaError, UsageError } from '../errors.js';
import type { ModelConfig } from '../model/config.js';
import { defaultModelFiles } from '../model/default-model.js';
import { createKernels } from '../kernels/kernel-set.js';
import { jsKernels } from '../kernels/js.js';
import { type Tokenizer } from '../tokenizer/index.js';
import type { ModelSource } from '../model/source.js';
import { type ChatMessage, systemPromptTokens } from './chat.js';
import { type ChatFormat, chatFormatFor, encodeChat, LLAMA2_CHAT } from './chat-format.js';
import type { InferenceEngine } from './engine.js';
import type { ModelKernels } from './forward.js';
import { type LoadModelOptions, loadTransformer } from './load.js';
import { type GenerationRequest, type GenerationResult, encodePrompt, generateFromIds, promptText } from './generate.js';
import { type ModelInput, loadModelInput, loadTokenizerInput } from './model-input.js';

export type { ModelInput } from './model-input.js';

export interface LoadOptions {
  /** The tokenizer (tokenizer.bin or SentencePiece .model): a path, URL or bytes. Default: the one found with the model. */
  tokenizer?: ModelInput;
  /**
   * 'wasm' (WebAssembly SIMD, the default), 'js' (plain TypeScript), 'webgpu' (the GPU, through
   * WebGPU: navigator.gpu, or in Node.js the `webgpu` package), or a kernel set from createKernels().
   */
  kernels?: 'wasm' | 'js' | 'webgpu' | ModelKernels;
  /** Threads of the WebAssembly kernels (default: one per core). */
  threads?: number;
  /** 'q8' runs a float32 model with int8 Q8_0 weights; a model stored as Q8_0 (v2) runs as int8 anyway. */
  quantize?: LoadModelOptions['quantize'];
  /** A Q8_0 (v2) model run as float32. */
  dequantize?: boolean;
  /** The context window (default: the model's, at most 4096). */
  contextLength?: number;
}

/** How text is sampled; every field optional. */
export interface SamplingOptions {
  /**
   * Most tokens to generate (default: until the model stops or the context window is full); more
   * than the window holds runs on past it (the context shifts).
   */
  maxTokens?: number;
  /**
   * Positions at the start of the context that a context shift keeps (default: BOS; in a chat, BOS
   * and the system prompt), at most half the window.
   */
  keep?: number;
  /** Strings that end the text (not included); one or several. */
  stop?: string | readonly string[];
  /** 0 = greedy. Default 1. */
  temperature?: number;
  /** Nucleus sampling threshold in [0, 1]; 0 or 1 = plain sampling. Default 0.9 (as `llama2 run`). */
  topP?: number;
  /** Seed of the sampler: the same seed, the same text. Default: random. */
  seed?: number | bigint;
  /** Ends generation before the next token; the result's finishReason is then 'aborted'. */
  signal?: AbortSignal;
}

export interface CompletionOptions extends SamplingOptions {
  /** Text to continue (default '': the model starts from BOS alone). */
  prompt?: string;
  /** Start the text with the prompt (default false). */
  echo?: boolean;
}

export type { ChatMessage } from './chat.js';
export type { GenerationResult, FinishReason } from './generate.js';

/** A finished generation: its text and how it went. */
export interface Completion extends GenerationResult {
  readonly text: string;
}

/** Longest stretch of generation between two turns of the event loop. */
const SLICE_MS = 8;

export class LanguageModel {
  private queue: Promise<void> = Promise.resolve();
  private closer: (() => Promise<void>) | undefined;

  /**
   * A model from a running engine and its tokenizer. `chatFormat`: how chats become tokens — the
   * model's chat template when it has one (load finds it), else Llama 2's [INST] format; `close`
   * releases what the model owns.
   */
  constructor(readonly transformer: InferenceEngine, readonly tokenizer: Tokenizer, readonly chatFormat: ChatFormat = LLAMA2_CHAT, close?: () => Promise<void>) {
    if (tokenizer.vocabSize !== transformer.config.vocabSize) {
      throw new LlamaError(`tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${transformer.config.vocabSize}`);
    }
    this.closer = close;
  }

  /**
   * Loads a model and its tokenizer: with no model, the one that ships with llama2ts; else a path
   * (a llama2.c checkpoint), a file: or http(s): URL, or a file's bytes.
   */
  static async load(model?: ModelInput, options: LoadOptions = {}): Promise<LanguageModel> {
    let input = model;
    let tokenizerInput = options.tokenizer;
    if (input === undefined) {
      const embedded = defaultModelFiles();
      input = embedded.model;
      tokenizerInput ??= embedded.tokenizer;
    }
    const kernelChoice = options.kernels ?? 'wasm';
    const { quantize, dequantize, contextLength } = options;
    const loadOptions: LoadModelOptions = { quantize, dequantize, contextLength };
    let open: (source: ModelSource) => InferenceEngine;
    let close: () => Promise<void> = async () => {};
    if (kernelChoice === 'webgpu') {
      // the GPU backend: a device on its own thread (its module loaded only when asked for)
      const { WebGpuDevice, loadWebGpuEngine } = await import('../backends/webgpu/engine.js');
      const device = await WebGpuDevice.open();
      open = (source) => loadWebGpuEngine(device, source, loadOptions);
      close = () => device.close();
    } else if (typeof kernelChoice === 'string') {
      if (kernelChoice !== 'wasm' && kernelChoice !== 'js') throw new UsageError(`kernels: expected 'wasm', 'js', 'webgpu' or a kernel set, got '${String(kernelChoice)}'`);
      if (options.threads !== undefined && !(Number.isInteger(options.threads) && options.threads >= 1)) {
        throw new UsageError(`threads must be a positive integer, got ${options.threads}`);
      }
      const set = kernelChoice === 'js' ? undefined : await createKernels(options.threads !== undefined ? { threads: options.threads } : {});
      const kernels = set ?? jsKernels;
      open = (source) => loadTransformer(source, kernels, loadOptions);
      if (set !== undefined) close = () => set.close();
    } else {
      open = (source) => loadTransformer(source, kernelChoice, loadOptions);
    }
    try {
      const loaded = await loadModelInput(input, open);
      const tokenizer = await loadTokenizerInput(tokenizerInput ?? loaded.tokenizer, loaded.engine.config.vocabSize, loaded.name);
      return new LanguageModel(loaded.engine, tokenizer, chatFormatFor(loaded.chatTemplate), close);
    } catch (err) {
      await close();
      throw err;
    }
  }

  get config(): ModelConfig {
    return this.transformer.config;
  }

  /**
   * Streams the completion of `options.prompt` piece by piece (or of a prompt given as a string);
   * the iterator's return value says how it ended and how many tokens it took.
   */
  async *stream(options: CompletionOptions | string = {}): AsyncGenerator<string, GenerationResult, void> {
    const o = typeof options === 'string' ? { prompt: options } : options;
    const ids = encodePrompt(this.tokenizer, o.prompt ?? '');
    if (o.echo === true) {
      const text = promptText(this.tokenizer, ids);
      if (text.length > 0) yield text;
    }
    return yield* this.run({ ...this.sampling(o), promptIds: ids, stopTokens: [this.tokenizer.bosId] });
  }

  /** The whole completion: its text and how it ended. */
  async complete(options: CompletionOptions | string = {}): Promise<Completion> {
    return collect(this.stream(options));
  }

  /**
   * The assistant's next message in a conversation (system, user and assistant messages, ending
   * with the user's), streamed piece by piece; the model's chat template renders the messages
   * (Llama 2's [INST] format when it has none). A seeded answer is what the server's chat endpoint
   * sends, and for the Llama 2 format what `llama2 run -m chat` answers.
   */
  async *chat(messages: readonly ChatMessage[], options: SamplingOptions = {}): AsyncGenerator<string, GenerationResult, void> {
    checkMessages(messages);
    const ids = this.encodeChat(messages);
    // the answer ends at EOS (BOS could only start another turn); run.c's chat draws a sample at
    // every prompt position too, which the seeded text depends on
    const keep = options.keep ?? systemPromptTokens(this.tokenizer, messages, ids, this.config.seqLen, (m) => this.chatFormat.parts(m, this.tokenizer));
    return yield* this.run({ ...this.sampling(options), keep, promptIds: ids, stopTokens: [this.tokenizer.eosId, this.tokenizer.bosId], samplePrompt: true });
  }

  /** The whole chat answer. */
  async chatComplete(messages: readonly ChatMessage[], options: SamplingOptions = {}): Promise<Completion> {
    return collect(this.chat(messages, options));
  }

  encode(text: string, options: { bos?: boolean; eos?: boolean } = { bos: true }): number[] {
    return this.tokenizer.encode(text, options);
  }

  decode(ids: readonly number[]): string {
    return this.tokenizer.decode(ids);
  }

  /** Token ids of a conversation in the model's chat format, ready for the assistant's answer. */
  encodeChat(messages: readonly ChatMessage[]): number[] {
    return encodeChat(this.chatFormat, this.tokenizer, messages);
  }

  /** Feeds `tokens` from position 0 and returns a copy of the logits after the last one. */
  logits(tokens: readonly number[]): Float32Array {
    if (tokens.length === 0 || tokens.length > this.config.seqLen) {
      throw new LlamaError(`logits needs 1 to ${this.config.seqLen} tokens, got ${tokens.length}`);
    }
    const last = tokens.length - 1;
    this.transformer.prefill(tokens.slice(0, last), 0);
    return Float32Array.from(this.transformer.forward(tokens[last]!, last));
  }

  /** Releases the kernels' threads the model started (when load created them). */
  async close(): Promise<void> {
    const c = this.closer;
    this.closer = undefined;
    await c?.();
  }

  /** The sampling options checked and in the generation loop's terms. */
  private sampling(o: SamplingOptions): Omit<GenerationRequest, 'promptIds'> {
    const { maxTokens, keep, temperature, topP, seed, signal } = o;
    if (maxTokens !== undefined && !(Number.isInteger(maxTokens) && maxTokens >= 0)) throw new UsageError(`maxTokens must be a non-negative integer, got ${maxTokens}`);
    if (temperature !== undefined && !(Number.isFinite(temperature) && temperature >= 0)) throw new UsageError(`temperature must be a number ≥ 0, got ${temperature}`);
    if (topP !== undefined && !(Number.isFinite(topP) && topP >= 0 && topP <= 1)) throw new UsageError(`topP must be in [0, 1], got ${topP}`);
    if (seed !== undefined && typeof seed !== 'bigint' && !Number.isSafeInteger(seed)) throw new UsageError(`seed must be an integer, got ${seed}`);
    const stop = o.stop === undefined ? [] : typeof o.stop === 'string' ? [o.stop] : [...o.stop];
    for (const s of stop) if (typeof s !== 'string' || s.length === 0) throw new UsageError('a stop string must be a non-empty string');
    return {
      ...(maxTokens !== undefined ? { maxTokens } : {}),
      ...(keep !== undefined ? { keep } : {}),
      ...(temperature !== undefined ? { temperature } : {}),
      ...(topP !== undefined ? { topp: topP } : {}),
      seed: seed === undefined || seed === 0 ? randomSeed() : seed,
      stopSequences: stop,
      ...(signal !== undefined ? { signal } : {}),
    };
  }

  /** Runs one request when the calls before it are done, yielding to the event loop as it goes. */
  private async *run(request: GenerationRequest): AsyncGenerator<string, GenerationResult, void> {
    let release!: () => void;
    const previous = this.queue;
    this.queue = new Promise<void>((resolve) => (release = resolve));
    await previous;
    try {
      const gen = generateFromIds(this.transformer, this.tokenizer, request);
      let slice = performance.now();
      for (;;) {
        const r = gen.next();
        if (r.done) return r.value;
        if (r.value.length > 0) yield r.value;
        if (performance.now() - slice > SLICE_MS) {
          await new Promise<void>((resolve) => setImmediate(resolve));
          slice = performance.now();
        }
      }
    } finally {
      release();
    }
  }
}

async function collect(it: AsyncGenerator<string, GenerationResult, void>): Promise<Completion> {
  let text = '';
  for (;;) {
    const r = await it.next();
    if (r.done) return { ...r.value, text };
    text += r.value;
  }
}

function checkMessages(messages: readonly ChatMessage[]): void {
  if (!Array.isArray(messages) || messages.length === 0) throw new UsageError('chat needs an array of messages');
  for (const m of messages) {
    if (typeof m !== 'object' || m === null || !['system', 'user', 'assistant'].includes(m.role) || typeof m.content !== 'string') {
      throw new UsageError('each message needs a role (system, user or assistant) and a string content');
    }
  }
}

function randomSeed(): bigint {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return ((BigInt(words[0]!) << 32n) | BigInt(words[1]!)) || 1n;
}

