// llama2.c's tokenizer.bin, as written by its tokenizer.py and read by run.c build_tokenizer:
//
//   int32   max_token_length          longest token text in bytes
//   then, for each token id 0, 1, 2, …:
//     float32 score                   merge priority (SentencePiece's piece score)
//     int32   len                     byte length of the text
//     uint8   text[len]               UTF-8, SentencePiece's ▁ written as a space,
//                                     BOS/EOS written as "\n<s>\n" / "\n</s>\n"
//
// All little-endian. The file does not store the token count: run.c takes vocab_size from the
// model. Without one, entries are read until the end of the file.

import { FormatError } from '../errors.js';
import { readWholeFile, writeFileAtomic } from '../files.js';

export interface Llama2cTokenizerFile {
  readonly maxTokenLength: number;
  readonly texts: string[];
  readonly scores: Float32Array;
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Parses tokenizer.bin bytes. With `vocabSize`, exactly that many entries must be there (more
 * or fewer is a vocabulary mismatch); without, entries run to the end of the file.
 */
export function parseLlama2cTokenizer(bytes: Uint8Array, file: string, vocabSize?: number): Llama2cTokenizerFile {
  if (bytes.length < 4) throw new FormatError(file, `too short for a tokenizer.bin (${bytes.length} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const maxTokenLength = view.getInt32(0, true);
  if (maxTokenLength <= 0 || maxTokenLength > bytes.length) {
    throw new FormatError(file, `not a llama2.c tokenizer.bin (max_token_length ${maxTokenLength} is impossible for a ${bytes.length}-byte file)`);
  }
  const texts: string[] = [];
  const scoreList: number[] = [];
  let off = 4;
  while (off < bytes.length && (vocabSize === undefined || texts.length < vocabSize)) {
    const id = texts.length;
    if (bytes.length - off < 8) throw new FormatError(file, `truncated: token ${id} header at byte ${off} needs 8 bytes, ${bytes.length - off} left`);
    const score = view.getFloat32(off, true);
    const len = view.getInt32(off + 4, true);
    off += 8;
    if (len <= 0 || len > maxTokenLength) {
      throw new FormatError(file, `token ${id} has length ${len}, outside 1..max_token_length (${maxTokenLength}) — not a llama2.c tokenizer.bin or corrupt`);
    }
    if (len > bytes.length - off) throw new FormatError(file, `truncated: token ${id} needs ${len} bytes at byte ${off}, ${bytes.length - off} left`);
    let text: string;
    try {
      text = fatalUtf8.decode(bytes.subarray(off, off + len));
    } catch {
      throw new FormatError(file, `token ${id} is not valid UTF-8`);
    }
    off += len;
    texts.push(text);
    scoreList.push(score);
  }
  if (vocabSize !== undefined && texts.length < vocabSize) {
    throw new FormatError(file, `has ${texts.length} tokens, but the model's vocabulary needs ${vocabSize}`);
  }
  if (off < bytes.length) {
    // Tell a longer vocabulary apart from junk at the end.
    let count: number | undefined;
    try {
      count = vocabSize! + parseLlama2cTokenizer(withHeader(bytes, off, maxTokenLength), file).texts.length;
    } catch {
      count = undefined;
    }
    throw new FormatError(file, count !== undefined
      ? `has ${count} tokens, but the model's vocabulary is ${vocabSize} (tokenizer and model do not match)`
      : `${bytes.length - off} unexpected bytes after token ${vocabSize! - 1}`);
  }
  if (texts.length === 0) throw new FormatError(file, 'holds no tokens');
  return { maxTokenLength, texts, scores: Float32Array.from(scoreList) };
}

/** The entries from `off` on, behind a copy of the header (to count the surplus tokens). */
function withHeader(bytes: Uint8Array, off: number, maxTokenLength: number): Uint8Array {
  const out = new Uint8Array(4 + bytes.length - off);
  new DataView(out.buffer).setInt32(0, maxTokenLength, true);
  out.set(bytes.subarray(off), 4);
  return out;
}

export function readLlama2cTokenizer(path: string, vocabSize?: number): Llama2cTokenizerFile {
  return parseLlama2cTokenizer(readWholeFile(path), path, vocabSize);
}

/** Serializes tokenizer.bin exactly as tokenizer.py's export() does. */
export function serializeLlama2cTokenizer(texts: readonly string[], scores: ArrayLike<number>): Uint8Array {
  const enc = new TextEncoder();
  const encoded = texts.map((t) => enc.encode(t));
  const maxTokenLength = encoded.reduce((m, b) => Math.max(m, b.length), 0);
  const total = 4 + encoded.reduce((n, b) => n + 8 + b.length, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  view.setUint32(0, maxTokenLength, true);
  let off = 4;
  encoded.forEach((b, id) => {
    view.setFloat32(off, scores[id]!, true);
    view.setUint32(off + 4, b.length, true);
    out.set(b, off + 8);
    off += 8 + b.length;
  });
  return out;
}

export function writeLlama2cTokenizer(path: string, texts: readonly string[], scores: ArrayLike<number>): void {
  writeFileAtomic(path, [serializeLlama2cTokenizer(texts, scores)]);
}
