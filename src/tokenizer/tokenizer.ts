// The tokenizer: load either file form, encode text to ids exactly as SentencePiece does, decode
// ids back to text (all at once, or streaming during generation).
//
//   const tok = loadTokenizer('tok512.bin', 512);       // or 'tok512.model'
//   tok.encode('Once upon a time', { bos: true })       // → [1, 403, 407, 261, 378]
//   tok.decode([1, 403, 407, 261, 378])                 // → 'Once upon a time'

import { closeSync, readSync } from 'node:fs';
import { FormatError, LlamaError, describeFsError } from '../errors.js';
import { openForReading, readWholeFile } from '../files.js';
import { isGguf, readGgufHeader } from '../model/gguf.js';
import { BpeEncoder } from './bpe.js';
import { StreamingDecoderCore, checkId, decodeIds, type StreamingDecoderOptions } from './decoder.js';
import { vocabularyFromGguf } from './gguf-vocabulary.js';
import { parseLlama2cTokenizer, serializeLlama2cTokenizer } from './llama2c-format.js';
import { parseSentencePieceModel, type SentencePieceModel } from './sentencepiece-model.js';
import { vocabularyFromTokenizerJson } from './tokenizer-json.js';
import { fromLlama2c, fromSentencePiece, llama2cTexts, type Llama2cVocabularyOptions, type Vocabulary } from './vocabulary.js';

/** Where a tokenizer came from: a SentencePiece .model, a llama2.c tokenizer.bin, a GGUF model's metadata, a Hugging Face tokenizer.json. */
export type TokenizerFormat = 'sentencepiece' | 'llama2c' | 'gguf' | 'tokenizer.json';

/** encodeAsync's slices: milliseconds of work between two turns of the event loop. */
const SLICE_MS = 4;
/** encodeAsync keeps up to KEEP_IDLE encoders of at most KEEP_CAPACITY positions for reuse. */
const KEEP_IDLE = 8;
const KEEP_CAPACITY = 1 << 17;

/** Lets the event loop run (timers, I/O) before continuing: setImmediate in Node.js, a timer in browsers. */
function yieldToEventLoop(): Promise<void> {
  const immediate = (globalThis as { setImmediate?: (f: () => void) => unknown }).setImmediate;
  return new Promise((resolve) => (immediate !== undefined ? immediate(resolve) : setTimeout(resolve, 0)));
}

export interface EncodeOptions {
  /** Put BOS first (default true, as llama2.c and SentencePiece's add_bos do). */
  bos?: boolean;
  /** Put EOS last (default false). */
  eos?: boolean;
}

export class Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  private encoder: BpeEncoder | undefined; // built on first encode (decoding does not need it)
  /** Forks of `encoder` for encodeAsync, kept for the next ones. */
  private readonly idle: BpeEncoder[] = [];

  constructor(readonly vocabulary: Vocabulary, readonly format: TokenizerFormat) {
    this.vocabSize = vocabulary.pieces.length;
    this.bosId = vocabulary.bosId;
    this.eosId = vocabulary.eosId;
    this.unkId = vocabulary.unkId;
  }

  /** A tokenizer for a parsed SentencePiece model (e.g. one just trained). */
  static fromSentencePiece(model: SentencePieceModel, name = '<model>'): Tokenizer {
    return new Tokenizer(fromSentencePiece(model, name), 'sentencepiece');
  }

  /** Text → ids, identical to SentencePiece's EncodeAsIds (plus BOS/EOS as asked). */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids = this.start(opts);
    this.encoderOf().encode(text, ids);
    return this.finish(ids, opts);
  }

  /**
   * encode(), in slices of about SLICE_MS milliseconds with the event loop running between them
   * (a server encoding a long prompt keeps answering). Rejects with the signal's reason once it
   * is aborted. Encodes may interleave: each runs on an encoder of its own (sharing the tables).
   */
  async encodeAsync(text: string, opts: EncodeOptions = {}, signal?: AbortSignal): Promise<number[]> {
    const ids = this.start(opts);
    const encoder = this.idle.pop() ?? this.encoderOf().fork();
    try {
      let sliceStart = performance.now();
      for (const steps = encoder.encodeSteps(text, ids); !steps.next().done;) {
        if (performance.now() - sliceStart < SLICE_MS) continue;
        await yieldToEventLoop();
        signal?.throwIfAborted();
        sliceStart = performance.now();
      }
    } finally {
      // (an encoder that grew for a very long text is dropped, not kept)
      if (encoder.capacity <= KEEP_CAPACITY && this.idle.length < KEEP_IDLE) this.idle.push(encoder);
    }
    signal?.throwIfAborted();
    return this.finish(ids, opts);
  }

  /**
   * A lower bound of encode(text, opts).length, from one cheap pass over the text (no encoding):
   * a prompt whose bound exceeds a context window can be refused without tokenizing it.
   */
  minTokens(text: string, opts: EncodeOptions = {}): number {
    return ((opts.bos ?? true) ? 1 : 0) + this.encoderOf().minTokens(text) + ((opts.eos ?? false) ? 1 : 0);
  }

  private encoderOf(): BpeEncoder {
    this.encoder ??= new BpeEncoder(this.vocabulary);
    return this.encoder;
  }

  private start(opts: EncodeOptions): number[] {
    const ids: number[] = [];
    if (opts.bos ?? true) {
      if (this.bosId < 0) throw new LlamaError('this tokenizer has no BOS token');
      ids.push(this.bosId);
    }
    return ids;
  }

  private finish(ids: number[], opts: EncodeOptions): number[] {
    if (opts.eos ?? false) {
      if (this.eosId < 0) throw new LlamaError('this tokenizer has no EOS token');
      ids.push(this.eosId);
    }
    return ids;
  }

  /** Ids → text, as SentencePiece's DecodeIds (control tokens print nothing). */
  decode(ids: readonly number[]): string {
    return decodeIds(this.vocabulary, ids);
  }

  /** The piece of `id` as SentencePiece spells it: "▁the", "<0x0A>", "<s>". */
  piece(id: number): string {
    checkId(this.vocabulary, id);
    return this.vocabulary.pieces[id]!;
  }

  /** The score (merge priority) of `id`. */
  score(id: number): number {
    checkId(this.vocabulary, id);
    return this.vocabulary.scores[id]!;
  }

  /** The llama2.c tokenizer.bin form of this vocabulary (what tokenizer.py's export writes). */
  toLlama2cBytes(): Uint8Array {
    return serializeLlama2cTokenizer(llama2cTexts(this.vocabulary), this.vocabulary.scores);
  }
}

/** One per generation: turns each new token into the text it completes. */
export class StreamingDecoder extends StreamingDecoderCore {
  constructor(tokenizer: Tokenizer, opts: StreamingDecoderOptions = {}) {
    super(tokenizer.vocabulary, opts);
  }
}

export type LoadTokenizerOptions = Llama2cVocabularyOptions;

/**
 * A `.model` file is a protobuf ModelProto: it starts with field 1 (a piece, tag 0x0A), whose
 * body starts with field 1 again (the piece text). A tokenizer.bin starts with a small int32; for
 * it to look like that its max_token_length would have to be ≥ 655370.
 */
function looksLikeSentencePiece(b: Uint8Array): boolean {
  if (b.length < 3 || b[0] !== 0x0a) return false;
  let i = 1;
  let len = 0;
  for (let shift = 0; i < b.length && shift < 35; shift += 7) {
    const x = b[i++]!;
    len += (x & 0x7f) * 2 ** shift;
    if (x < 0x80) break;
  }
  return len > 0 && i < b.length && b[i] === 0x0a;
}

/** A JSON object (tokenizer.json): '{' after optional whitespace. Neither binary form starts so. */
function looksLikeJson(b: Uint8Array): boolean {
  let i = 0;
  while (i < b.length && (b[i] === 0x20 || b[i] === 0x0a || b[i] === 0x0d || b[i] === 0x09)) i++;
  return b[i] === 0x7b;
}

/**
 * The JSON in `bytes`; undefined when it does not parse and the file is not named .json (a
 * tokenizer.bin whose first int32 happens to read as '{' is still a tokenizer.bin).
 */
function parseJson(bytes: Uint8Array, path: string): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    if (path.endsWith('.json')) throw new FormatError(path, `not valid JSON (${(err as Error).message.split('\n')[0]})`);
    return undefined;
  }
}

/** The first bytes of a file (fewer when it is shorter). */
function fileHead(path: string, n: number): Uint8Array {
  const head = new Uint8Array(n);
  const fd = openForReading(path).fd;
  try {
    return head.subarray(0, readSync(fd, head, 0, n, 0));
  } catch (err) {
    throw describeFsError(path, err);
  } finally {
    closeSync(fd);
  }
}

/**
 * Loads a tokenizer from a SentencePiece `.model`, a llama2.c `tokenizer.bin`, a Hugging Face
 * `tokenizer.json` (Llama 2 style) or a GGUF model file's metadata (told apart by content; a GGUF
 * file's tensors are not read). `vocabSize` (the model's) is
 * how many tokens a .bin holds; for every form a different count is a vocabulary mismatch error.
 */
export function loadTokenizer(path: string, vocabSize?: number, options: LoadTokenizerOptions = {}): Tokenizer {
  let tokenizer: Tokenizer;
  if (isGguf(fileHead(path, 4))) {
    tokenizer = new Tokenizer(vocabularyFromGguf(readGgufHeader(path)), 'gguf');
    if (vocabSize !== undefined) checkVocabMatch(tokenizer, vocabSize, { tokenizer: path });
    return tokenizer;
  }
  return parseTokenizer(readWholeFile(path), path, vocabSize, options);
}

/**
 * A tokenizer from the bytes of a `.model`, `tokenizer.bin` or `tokenizer.json` (see
 * loadTokenizer; a GGUF file is read from its path); `name` is for messages.
 */
export function parseTokenizer(bytes: Uint8Array, name: string, vocabSize?: number, options: LoadTokenizerOptions = {}): Tokenizer {
  let tokenizer: Tokenizer;
  const json = looksLikeJson(bytes) ? parseJson(bytes, name) : undefined;
  if (json !== undefined) {
    tokenizer = new Tokenizer(vocabularyFromTokenizerJson(json, name), 'tokenizer.json');
  } else if (looksLikeSentencePiece(bytes)) {
    tokenizer = new Tokenizer(fromSentencePiece(parseSentencePieceModel(bytes, name), name), 'sentencepiece');
  } else {
    const file = parseLlama2cTokenizer(bytes, name, vocabSize);
    tokenizer = new Tokenizer(fromLlama2c(file.texts, file.scores, name, options), 'llama2c');
  }
  if (vocabSize !== undefined) checkVocabMatch(tokenizer, vocabSize, { tokenizer: name });
  return tokenizer;
}

/** Throws a clear error when a model's vocab_size and its tokenizer disagree. */
export function checkVocabMatch(tokenizer: Tokenizer, modelVocabSize: number, paths: { model?: string; tokenizer?: string } = {}): void {
  if (tokenizer.vocabSize === modelVocabSize) return;
  const tok = paths.tokenizer ?? 'the tokenizer';
  const model = paths.model ?? 'the model';
  throw new FormatError(tok, `has ${tokenizer.vocabSize} tokens, but ${model} has vocab_size ${modelVocabSize} (tokenizer and model do not match)`);
}
