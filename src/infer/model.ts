// The library's front door: a model and its tokenizer loaded together, with generation as an
// async iterator (for servers and UIs: it yields to the event loop between tokens), a callback
// form, and the lower-level pieces (encode, decode, logits) one call away.

import { openModelSource } from '../model/open.js';
import type { ModelConfig } from '../model/config.js';
import { loadTokenizer, type Tokenizer } from '../tokenizer/index.js';
import { LlamaError } from '../errors.js';
import type { ChatMessage } from './chat.js';
import { type ChatFormat, chatFormatFor, encodeChat, LLAMA2_CHAT } from './chat-format.js';
import type { InferenceEngine } from './engine.js';
import type { ModelKernels } from './forward.js';
import { type LoadModelOptions, loadTransformer } from './load.js';
import { generate, type GenerateOptions, type GenerationResult } from './generate.js';

export interface LoadOptions {
  /** The tokenizer file (tokenizer.bin, SentencePiece .model, tokenizer.json); default: the one found with the model. */
  tokenizer?: string;
  /** Kernel set (see createKernels); default the plain TypeScript kernels. */
  kernels?: ModelKernels;
  /** 'q8' runs a float32 file with int8 Q8_0 weights (see LoadModelOptions); v2 files run as int8. */
  quantize?: LoadModelOptions['quantize'];
  /** A v2 file run as float32 (see LoadModelOptions). */
  dequantize?: boolean;
  /** The context window (default: the model's, at most 4096; see LoadModelOptions). */
  contextLength?: number;
}

export class LanguageModel {
  /**
   * @param chatFormat how chats are turned into tokens: the model's chat template when it has
   *   one (LanguageModel.load finds it), else Llama 2's [INST] format
   */
  constructor(readonly transformer: InferenceEngine, readonly tokenizer: Tokenizer, readonly chatFormat: ChatFormat = LLAMA2_CHAT) {
    if (tokenizer.vocabSize !== transformer.config.vocabSize) {
      throw new LlamaError(`tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${transformer.config.vocabSize}`);
    }
  }

  /** Loads a model (a llama2.c checkpoint, a Hugging Face or Meta folder) and its tokenizer. */
  static load(modelPath: string, options: LoadOptions = {}): LanguageModel {
    const { quantize, dequantize, contextLength } = options;
    const source = openModelSource(modelPath);
    try {
      const tokenizerPath = options.tokenizer ?? source.tokenizer?.path;
      if (tokenizerPath === undefined) throw new LlamaError(`${modelPath}: no tokenizer found with the model; pass { tokenizer: FILE }`);
      const tokenizer = loadTokenizer(tokenizerPath, source.config.vocabSize);
      const format = chatFormatFor(source.chatTemplate);
      return new LanguageModel(loadTransformer(source, options.kernels, { quantize, dequantize, contextLength }), tokenizer, format);
    } finally {
      source.close();
    }
  }

  get config(): ModelConfig {
    return this.transformer.config;
  }

  /** Streams the generated text piece by piece; the iterator's return value is the summary. */
  async *stream(options: GenerateOptions = {}): AsyncGenerator<string, GenerationResult, void> {
    const gen = generate(this.transformer, this.tokenizer, options);
    for (;;) {
      const r = gen.next();
      if (r.done) return r.value;
      yield r.value;
      // let timers and I/O run between tokens
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** Generates synchronously, calling `onText` with each piece; returns the whole text and summary. */
  complete(options: GenerateOptions = {}, onText?: (piece: string) => void): { text: string; summary: GenerationResult } {
    const gen = generate(this.transformer, this.tokenizer, options);
    let text = '';
    for (;;) {
      const r = gen.next();
      if (r.done) return { text, summary: r.value };
      text += r.value;
      onText?.(r.value);
    }
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
    for (let pos = 0; pos < last; pos++) this.transformer.advance(tokens[pos]!, pos);
    return Float32Array.from(this.transformer.forward(tokens[last]!, last));
  }
}
