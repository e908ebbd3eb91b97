// The vocabulary both tokenizer file formats load into: pieces in SentencePiece form (a space is
// ▁ U+2581, byte tokens are "<0xNN>", control tokens are "<s>"/"</s>"), float32 scores (merge
// priority: higher merges first), piece types, and the normalizer settings.
//
// From a .model file everything is read as stored. A llama2.c tokenizer.bin keeps only the
// pieces (with ▁ written as a space, <s>/</s> written as "\n<s>\n"/"\n</s>\n") and scores, so the
// rest is inferred (see fromLlama2c).

import { FormatError, quote } from '../errors.js';
import type { NormalizerOptions } from './normalizer.js';
import { ModelType, PieceType, type SentencePieceModel } from './sentencepiece-model.js';

export interface Vocabulary {
  readonly pieces: readonly string[];
  readonly scores: Float32Array;
  readonly types: Uint8Array; // PieceType per id
  readonly unkId: number; // -1 if the vocabulary has no <unk>
  readonly bosId: number; // -1 if none
  readonly eosId: number; // -1 if none
  readonly byteFallback: boolean; // unknown characters become their UTF-8 byte tokens
  readonly byteIds: Int32Array; // [256]: id of <0xNN>, or -1
  readonly normalizer: NormalizerOptions;
  readonly unkSurface: string; // what decode prints for <unk>
}

const BYTE_PIECE = /^<0x([0-9A-F]{2})>$/;
const DEFAULT_UNK_SURFACE = ' \u2047 ';

/** The byte a "<0xNN>" piece stands for, or -1. */
export function pieceToByte(piece: string): number {
  const m = BYTE_PIECE.exec(piece);
  return m === null ? -1 : parseInt(m[1]!, 16);
}

function byteIdTable(pieces: readonly string[], types: Uint8Array): Int32Array {
  const ids = new Int32Array(256).fill(-1);
  for (let id = 0; id < pieces.length; id++) {
    if (types[id] !== PieceType.BYTE) continue;
    const b = pieceToByte(pieces[id]!);
    if (b >= 0 && ids[b] === -1) ids[b] = id;
  }
  return ids;
}

/**
 * A vocabulary as a list of pieces — what every tokenizer source comes down to (a SentencePiece
 * model, GGUF's tokenizer.ggml.* metadata, tokenizer.json): piece texts in SentencePiece form,
 * scores, SentencePiece piece types, and what the source says about its special ids and normalizer.
 */
export interface PieceList {
  readonly pieces: readonly string[];
  readonly scores: ArrayLike<number>;
  /** PieceType per id. */
  readonly types: ArrayLike<number>;
  /** <unk>: an explicit id, or undefined for the one piece of type UNKNOWN. */
  readonly unkId?: number;
  /** BOS / EOS: explicit ids (−1: none), or undefined for the CONTROL pieces <s> and </s>. */
  readonly bosId?: number;
  readonly eosId?: number;
  /** SentencePiece's byte_fallback; undefined: on when all 256 byte pieces <0x00>…<0xFF> exist. */
  readonly byteFallback?: boolean;
  readonly normalizer: NormalizerOptions;
  readonly unkSurface?: string;
}

/** Builds a vocabulary from a piece list, with the checks SentencePiece makes when it loads a model. */
export function fromPieces(list: PieceList, file: string): Vocabulary {
  const n = list.pieces.length;
  if (list.scores.length !== n || list.types.length !== n) {
    throw new FormatError(file, `${n} pieces but ${list.scores.length} scores and ${list.types.length} piece types`);
  }
  const pieces: string[] = new Array<string>(n);
  const scores = new Float32Array(n);
  const types = new Uint8Array(n);
  const normal = new Set<string>();
  const reserved = new Set<string>();
  let unkId = -1;
  for (let id = 0; id < n; id++) {
    const piece = list.pieces[id]!;
    const type = list.types[id]!;
    if (!(type >= PieceType.NORMAL && type <= PieceType.BYTE)) throw new FormatError(file, `piece ${id} has unknown type ${type}`);
    if (piece.length === 0) throw new FormatError(file, `piece ${id} is empty`);
    if (piece.includes('\0')) throw new FormatError(file, `piece ${id} contains a NUL character`);
    const isNormal = type === PieceType.NORMAL || type === PieceType.USER_DEFINED || type === PieceType.UNUSED;
    const set = isNormal ? normal : reserved;
    if (set.has(piece)) throw new FormatError(file, `piece ${id} ${quote(piece)} is defined twice`);
    set.add(piece);
    if (type === PieceType.UNKNOWN && list.unkId === undefined) {
      if (unkId >= 0) throw new FormatError(file, `a second <unk> piece at id ${id}`);
      unkId = id;
    }
    if (type === PieceType.BYTE && pieceToByte(piece) < 0) throw new FormatError(file, `byte piece ${id} ${quote(piece)} is not of the form <0xNN>`);
    pieces[id] = piece;
    scores[id] = list.scores[id]!;
    types[id] = type;
  }
  const checkId = (what: string, id: number): number => {
    if (!(Number.isInteger(id) && id >= -1 && id < n)) throw new FormatError(file, `${what} id ${id} is outside the vocabulary (${n} pieces)`);
    return id;
  };
  if (list.unkId !== undefined) unkId = checkId('<unk>', list.unkId);
  if (unkId < 0) throw new FormatError(file, 'the vocabulary has no <unk> piece');
  const byteIds = byteIdTable(pieces, types);
  const byteFallback = list.byteFallback ?? !byteIds.includes(-1);
  if (byteFallback && byteIds.includes(-1)) throw new FormatError(file, 'byte_fallback is on but not all 256 byte pieces <0x00>…<0xFF> exist');
  if (!byteFallback && byteIds.some((id) => id >= 0)) throw new FormatError(file, 'byte pieces found although byte_fallback is off');
  // bos/eos by default: the CONTROL pieces <s> and </s>, if they exist
  const controlId = (piece: string): number => {
    const id = pieces.indexOf(piece);
    return id >= 0 && types[id] === PieceType.CONTROL ? id : -1;
  };
  return {
    pieces, scores, types, unkId,
    bosId: list.bosId !== undefined ? checkId('BOS', list.bosId) : controlId('<s>'),
    eosId: list.eosId !== undefined ? checkId('EOS', list.eosId) : controlId('</s>'),
    byteFallback, byteIds,
    normalizer: list.normalizer,
    unkSurface: list.unkSurface ?? DEFAULT_UNK_SURFACE,
  };
}

/** Builds the vocabulary of a SentencePiece model, with the checks SentencePiece itself makes. */
export function fromSentencePiece(model: SentencePieceModel, file: string): Vocabulary {
  const ts = model.trainerSpec;
  const ns = model.normalizerSpec;
  const modelType = ts.modelType ?? ModelType.UNIGRAM;
  if (modelType !== ModelType.BPE) {
    const name = Object.entries(ModelType).find(([, v]) => v === modelType)?.[0] ?? String(modelType);
    throw new FormatError(file, `SentencePiece model type ${name} is not supported (only BPE, as Llama 2 uses)`);
  }
  if ((ns.precompiledCharsmap?.length ?? 0) > 0) {
    throw new FormatError(file, `normalization rule '${ns.name ?? '?'}' is not supported (only 'identity')`);
  }
  const pieces = model.pieces.map((p) => p.piece);
  // bos/eos: the piece named in the trainer spec, if it exists and is a control piece
  const controlId = (piece: string): number => {
    const id = pieces.indexOf(piece);
    return id >= 0 && (model.pieces[id]!.type ?? PieceType.NORMAL) === PieceType.CONTROL ? id : -1;
  };
  return fromPieces({
    pieces,
    scores: model.pieces.map((p) => p.score),
    types: model.pieces.map((p) => p.type ?? PieceType.NORMAL),
    bosId: controlId(ts.bosPiece || '<s>'),
    eosId: controlId(ts.eosPiece || '</s>'),
    byteFallback: ts.byteFallback ?? false,
    normalizer: {
      addDummyPrefix: ns.addDummyPrefix ?? true,
      removeExtraWhitespaces: ns.removeExtraWhitespaces ?? true,
      escapeWhitespaces: ns.escapeWhitespaces ?? true,
      treatWhitespaceAsSuffix: ts.treatWhitespaceAsSuffix ?? false,
    },
    unkSurface: ts.unkSurface ?? DEFAULT_UNK_SURFACE,
  }, file);
}

/** Options for vocabularies read from a llama2.c tokenizer.bin (which does not store them). */
export interface Llama2cVocabularyOptions {
  /**
   * SentencePiece's remove_extra_whitespaces. Default: inferred — true unless some piece holds two
   * spaces in a row. A vocabulary trained with the option on never saw a space run, so it cannot
   * contain one (tok512: no such piece → on; Llama 2's 32k: "▁▁", "▁▁▁▁"… → off).
   */
  removeExtraWhitespaces?: boolean;
}

/** The llama2.c spellings of the control pieces (tokenizer.py writes them this way). */
export const LLAMA2C_BOS = '\n<s>\n';
export const LLAMA2C_EOS = '\n</s>\n';

/**
 * Builds the vocabulary of a llama2.c tokenizer.bin from its decoded piece texts and scores.
 * Types are recovered from the texts tokenizer.py writes: "<unk>" is UNKNOWN, "\n<s>\n" and
 * "\n</s>\n" are the BOS/EOS control pieces, "<0xNN>" are byte pieces (byte fallback is on when
 * all 256 exist); every space in a piece is SentencePiece's ▁ again.
 */
export function fromLlama2c(texts: readonly string[], scoreList: Float32Array, file: string, options: Llama2cVocabularyOptions = {}): Vocabulary {
  const n = texts.length;
  const pieces: string[] = new Array<string>(n);
  const types = new Uint8Array(n);
  let unkId = -1;
  let bosId = -1;
  let eosId = -1;
  let hasSpaceRun = false;
  const seen = new Set<string>();
  for (let id = 0; id < n; id++) {
    const t = texts[id]!;
    let piece: string;
    let type: PieceType;
    if (t === LLAMA2C_BOS && bosId < 0) {
      piece = '<s>'; type = PieceType.CONTROL; bosId = id;
    } else if (t === LLAMA2C_EOS && eosId < 0) {
      piece = '</s>'; type = PieceType.CONTROL; eosId = id;
    } else if (t === '<unk>' && unkId < 0) {
      piece = t; type = PieceType.UNKNOWN; unkId = id;
    } else if (pieceToByte(t) >= 0) {
      piece = t; type = PieceType.BYTE;
    } else {
      if (t.includes('  ')) hasSpaceRun = true;
      piece = t.replaceAll(' ', '\u2581');
      type = PieceType.NORMAL;
    }
    if (piece.length === 0) throw new FormatError(file, `token ${id} is empty`);
    if (piece.includes('\0')) throw new FormatError(file, `token ${id} contains a NUL byte`);
    if (seen.has(piece)) throw new FormatError(file, `token ${id} ${quote(t)} is defined twice`);
    seen.add(piece);
    pieces[id] = piece;
    types[id] = type;
  }
  const byteIds = byteIdTable(pieces, types);
  const byteFallback = !byteIds.includes(-1);
  return {
    pieces, scores: scoreList, types, unkId, bosId, eosId, byteFallback, byteIds,
    normalizer: {
      addDummyPrefix: true,
      removeExtraWhitespaces: options.removeExtraWhitespaces ?? !hasSpaceRun,
      escapeWhitespaces: true,
      treatWhitespaceAsSuffix: false,
    },
    unkSurface: DEFAULT_UNK_SURFACE,
  };
}

/** The llama2.c text of each piece: ▁ → space, BOS/EOS → "\n<s>\n"/"\n</s>\n" (tokenizer.py). */
export function llama2cTexts(v: Vocabulary): string[] {
  return v.pieces.map((p, id) => (id === v.bosId ? LLAMA2C_BOS : id === v.eosId ? LLAMA2C_EOS : p.replaceAll('\u2581', ' ')));
}
