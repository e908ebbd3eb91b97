// A Llama tokenizer as GGUF metadata (llama.cpp's tokenizer.ggml.* keys), read and written:
//
//   tokenizer.ggml.model              "llama": SentencePiece BPE (Llama 1/2, llama2.c's vocabularies)
//   tokenizer.ggml.tokens             string[]: the pieces in SentencePiece form (▁ for a space,
//                                     "<0x0A>" byte pieces, "<s>")
//   tokenizer.ggml.scores             f32[]: merge priority (higher merges first)
//   tokenizer.ggml.token_type         i32[]: 1 normal, 2 unknown, 3 control, 4 user-defined,
//                                     5 unused, 6 byte — SentencePiece's PieceType numbering
//   tokenizer.ggml.bos_token_id, eos_token_id, unknown_token_id   u32
//   tokenizer.ggml.add_bos_token, add_eos_token                    bool
//   tokenizer.ggml.add_space_prefix            bool: SentencePiece's add_dummy_prefix
//   tokenizer.ggml.remove_extra_whitespaces    bool: SentencePiece's remove_extra_whitespaces
//
// Byte fallback is on when all 256 byte pieces exist (as for a llama2.c tokenizer.bin). A file that
// does not record remove_extra_whitespaces (convert scripts often leave it out) gets it inferred
// the way fromLlama2c does: on unless some piece holds two spaces in a row — a vocabulary trained
// with it on never saw a space run (tok512: on; Llama 2's 32k, with "▁▁": off).

import { FormatError } from '../errors.js';
import { type GgufHeader, type GgufValue, ValueType } from '../model/gguf.js';
import { PieceType } from './sentencepiece-model.js';
import { fromPieces, type Vocabulary } from './vocabulary.js';

const SPACE_RUN = '\u2581\u2581';

/** An integer metadata value of any integer type, or undefined when the key is absent. */
function intValue(h: GgufHeader, key: string): number | undefined {
  const v = h.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type === ValueType.UINT64 || v.type === ValueType.INT64) return Number(v.value);
  if (v.type !== ValueType.FLOAT32 && v.type !== ValueType.FLOAT64 && typeof v.value === 'number') return v.value;
  throw new FormatError(h.path, `${key} must be an integer`);
}

function boolValue(h: GgufHeader, key: string): boolean | undefined {
  const v = h.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type !== ValueType.BOOL) throw new FormatError(h.path, `${key} must be a boolean`);
  return v.value;
}

/** True when the file carries a tokenizer (tokenizer.ggml.model). */
export function hasGgufTokenizer(h: GgufHeader): boolean {
  return h.metadata.has('tokenizer.ggml.model');
}

/** The vocabulary a GGUF file's metadata describes (SentencePiece BPE, tokenizer.ggml.model = llama). */
export function vocabularyFromGguf(h: GgufHeader): Vocabulary {
  const model = h.metadata.get('tokenizer.ggml.model');
  if (model === undefined) throw new FormatError(h.path, 'has no tokenizer (no tokenizer.ggml.model key); pass one with -z');
  if (model.type !== ValueType.STRING) throw new FormatError(h.path, 'tokenizer.ggml.model must be a string');
  if (model.value !== 'llama') {
    throw new FormatError(h.path, `tokenizer '${model.value}' is not supported (only 'llama', SentencePiece BPE); pass a tokenizer with -z`);
  }
  const tokens = h.metadata.get('tokenizer.ggml.tokens');
  if (tokens?.type !== ValueType.ARRAY || tokens.itemType !== ValueType.STRING) {
    throw new FormatError(h.path, 'tokenizer.ggml.tokens must be an array of strings');
  }
  const pieces = tokens.value as readonly string[];
  const n = pieces.length;
  const numbers = (key: string, fallback: number): ArrayLike<number> => {
    const v = h.metadata.get(key);
    if (v === undefined) return new Array<number>(n).fill(fallback);
    if (v.type !== ValueType.ARRAY || v.value.length !== n || typeof v.value[0] === 'bigint' || typeof v.value[0] === 'boolean' || typeof v.value[0] === 'string') {
      throw new FormatError(h.path, `${key} must be an array of ${n} numbers, one per token`);
    }
    return v.value as ArrayLike<number>;
  };
  const removeExtra = boolValue(h, 'tokenizer.ggml.remove_extra_whitespaces');
  const id = (key: string): number | undefined => {
    const v = intValue(h, key);
    if (v !== undefined && !(v >= 0 && v < n)) throw new FormatError(h.path, `${key} ${v} is outside the vocabulary (${n} tokens)`);
    return v;
  };
  return fromPieces({
    pieces,
    scores: numbers('tokenizer.ggml.scores', 0),
    types: numbers('tokenizer.ggml.token_type', PieceType.NORMAL),
    unkId: id('tokenizer.ggml.unknown_token_id'),
    bosId: id('tokenizer.ggml.bos_token_id'),
    eosId: id('tokenizer.ggml.eos_token_id'),
    normalizer: {
      addDummyPrefix: boolValue(h, 'tokenizer.ggml.add_space_prefix') ?? true,
      removeExtraWhitespaces: removeExtra ?? !pieces.some((p) => p.includes(SPACE_RUN)),
      escapeWhitespaces: true,
      treatWhitespaceAsSuffix: false,
    },
  }, h.path);
}

/** The tokenizer.ggml.* metadata entries of a vocabulary, in the order llama.cpp's writer puts them. */
export function ggufTokenizerMetadata(v: Vocabulary): Array<[string, GgufValue]> {
  if (v.normalizer.treatWhitespaceAsSuffix || !v.normalizer.escapeWhitespaces) {
    throw new FormatError('<tokenizer>', 'GGUF cannot record a tokenizer that treats whitespace as a suffix or does not escape it');
  }
  const entries: Array<[string, GgufValue]> = [
    ['tokenizer.ggml.model', { type: ValueType.STRING, value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: ValueType.ARRAY, itemType: ValueType.STRING, value: v.pieces }],
    ['tokenizer.ggml.scores', { type: ValueType.ARRAY, itemType: ValueType.FLOAT32, value: Float32Array.from(v.scores) }],
    ['tokenizer.ggml.token_type', { type: ValueType.ARRAY, itemType: ValueType.INT32, value: Int32Array.from(v.types) }],
  ];
  const id = (key: string, value: number): void => {
    if (value >= 0) entries.push([key, { type: ValueType.UINT32, value }]);
  };
  id('tokenizer.ggml.bos_token_id', v.bosId);
  id('tokenizer.ggml.eos_token_id', v.eosId);
  id('tokenizer.ggml.unknown_token_id', v.unkId);
  entries.push(
    ['tokenizer.ggml.add_bos_token', { type: ValueType.BOOL, value: v.bosId >= 0 }],
    ['tokenizer.ggml.add_eos_token', { type: ValueType.BOOL, value: false }],
    ['tokenizer.ggml.add_space_prefix', { type: ValueType.BOOL, value: v.normalizer.addDummyPrefix }],
    ['tokenizer.ggml.remove_extra_whitespaces', { type: ValueType.BOOL, value: v.normalizer.removeExtraWhitespaces }],
  );
  return entries;
}
