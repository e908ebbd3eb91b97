// SentencePiece `.model` files: a serialized `sentencepiece.ModelProto` (proto2), read and
// written with the small wire-format layer in protobuf.ts.
//
//   ModelProto
//     1  pieces            repeated SentencePiece { 1 piece: string, 2 score: float, 3 type: enum }
//     2  trainer_spec      TrainerSpec    (how the model was trained; byte_fallback, bos/eos pieces…)
//     3  normalizer_spec   NormalizerSpec (name, precompiled_charsmap, add_dummy_prefix,
//                                          remove_extra_whitespaces, escape_whitespaces)
//     4  self_test_data, 5 denormalizer_spec: kept verbatim, not interpreted
//
// The piece id is its index in `pieces`. The C++ library serializes known fields in field-number
// order, so reading then writing a file it produced gives the same bytes (fields this module
// does not know are kept verbatim and written back after the known ones).

import { FormatError } from '../errors.js';
import { readWholeFile, writeFileAtomic } from '../files.js';
import {
  ProtobufError, ProtobufReader, ProtobufWriter, fieldBool, fieldBytes, fieldFloat, fieldInt32, fieldString, fieldUint64,
  type RawField,
} from './protobuf.js';

/** `ModelProto.SentencePiece.Type`. */
export const PieceType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;
export type PieceType = (typeof PieceType)[keyof typeof PieceType];

/** `TrainerSpec.ModelType`. */
export const ModelType = { UNIGRAM: 1, BPE: 2, WORD: 3, CHAR: 4 } as const;
export type ModelType = (typeof ModelType)[keyof typeof ModelType];

export interface ModelPiece {
  piece: string;
  score: number;
  /** Absent on the wire means NORMAL; kept absent so a round trip writes the same bytes. */
  type?: PieceType;
}

/** `TrainerSpec`: every field optional (absent = the proto default, shown in the comments). */
export interface TrainerSpec {
  input?: string[];
  modelPrefix?: string;
  modelType?: ModelType;                  // UNIGRAM
  vocabSize?: number;                     // 8000
  acceptLanguage?: string[];
  selfTestSampleSize?: number;
  inputFormat?: string;
  characterCoverage?: number;             // 0.9995
  inputSentenceSize?: number;
  miningSentenceSize?: number;
  trainingSentenceSize?: number;
  seedSentencepieceSize?: number;
  shrinkingFactor?: number;
  numThreads?: number;
  numSubIterations?: number;
  maxSentenceLength?: number;             // 4192
  shuffleInputSentence?: boolean;
  maxSentencepieceLength?: number;        // 16
  splitByUnicodeScript?: boolean;         // true
  splitByWhitespace?: boolean;            // true
  splitByNumber?: boolean;                // true
  treatWhitespaceAsSuffix?: boolean;      // false
  splitDigits?: boolean;                  // false
  allowWhitespaceOnlyPieces?: boolean;    // false
  controlSymbols?: string[];
  userDefinedSymbols?: string[];
  vocabularyOutputPieceScore?: boolean;
  hardVocabLimit?: boolean;
  useAllVocab?: boolean;
  byteFallback?: boolean;                 // false
  requiredChars?: string;
  unkId?: number;                         // 0
  bosId?: number;                         // 1
  eosId?: number;                         // 2
  padId?: number;                         // -1
  unkSurface?: string;                    // " \u2047 "
  unkPiece?: string;                      // "<unk>"
  bosPiece?: string;                      // "<s>"
  eosPiece?: string;                      // "</s>"
  padPiece?: string;                      // "<pad>"
  trainExtremelyLargeCorpus?: boolean;
  enableDifferentialPrivacy?: boolean;
  differentialPrivacyNoiseLevel?: number;
  differentialPrivacyClippingThreshold?: number;
  pretokenizationDelimiter?: string;
  seedSentencepiecesFile?: string;
  /** Encoded fields this module does not know, written back verbatim. */
  unknownFields?: Uint8Array[];
}

/** `NormalizerSpec`. */
export interface NormalizerSpec {
  name?: string;
  precompiledCharsmap?: Uint8Array;
  addDummyPrefix?: boolean;               // true
  removeExtraWhitespaces?: boolean;       // true
  escapeWhitespaces?: boolean;            // true
  normalizationRuleTsv?: string;
  unknownFields?: Uint8Array[];
}

export interface SentencePieceModel {
  pieces: ModelPiece[];
  trainerSpec: TrainerSpec;
  normalizerSpec: NormalizerSpec;
  /** Encoded ModelProto fields after normalizer_spec (self_test_data, denormalizer_spec, …). */
  extraFields?: Uint8Array[];
}

// --- field tables ----------------------------------------------------------------------------

type Kind = 'string' | 'strings' | 'bytes' | 'int32' | 'uint64' | 'float' | 'bool';
type FieldTable<T> = ReadonlyArray<readonly [number, Exclude<keyof T, 'unknownFields'>, Kind]>;

const TRAINER_FIELDS: FieldTable<TrainerSpec> = [
  [1, 'input', 'strings'],
  [2, 'modelPrefix', 'string'],
  [3, 'modelType', 'int32'],
  [4, 'vocabSize', 'int32'],
  [5, 'acceptLanguage', 'strings'],
  [6, 'selfTestSampleSize', 'int32'],
  [7, 'inputFormat', 'string'],
  [10, 'characterCoverage', 'float'],
  [11, 'inputSentenceSize', 'uint64'],
  [12, 'miningSentenceSize', 'int32'],
  [13, 'trainingSentenceSize', 'int32'],
  [14, 'seedSentencepieceSize', 'int32'],
  [15, 'shrinkingFactor', 'float'],
  [16, 'numThreads', 'int32'],
  [17, 'numSubIterations', 'int32'],
  [18, 'maxSentenceLength', 'int32'],
  [19, 'shuffleInputSentence', 'bool'],
  [20, 'maxSentencepieceLength', 'int32'],
  [21, 'splitByUnicodeScript', 'bool'],
  [22, 'splitByWhitespace', 'bool'],
  [23, 'splitByNumber', 'bool'],
  [24, 'treatWhitespaceAsSuffix', 'bool'],
  [25, 'splitDigits', 'bool'],
  [26, 'allowWhitespaceOnlyPieces', 'bool'],
  [30, 'controlSymbols', 'strings'],
  [31, 'userDefinedSymbols', 'strings'],
  [32, 'vocabularyOutputPieceScore', 'bool'],
  [33, 'hardVocabLimit', 'bool'],
  [34, 'useAllVocab', 'bool'],
  [35, 'byteFallback', 'bool'],
  [36, 'requiredChars', 'string'],
  [40, 'unkId', 'int32'],
  [41, 'bosId', 'int32'],
  [42, 'eosId', 'int32'],
  [43, 'padId', 'int32'],
  [44, 'unkSurface', 'string'],
  [45, 'unkPiece', 'string'],
  [46, 'bosPiece', 'string'],
  [47, 'eosPiece', 'string'],
  [48, 'padPiece', 'string'],
  [49, 'trainExtremelyLargeCorpus', 'bool'],
  [50, 'enableDifferentialPrivacy', 'bool'],
  [51, 'differentialPrivacyNoiseLevel', 'float'],
  [52, 'differentialPrivacyClippingThreshold', 'uint64'],
  [53, 'pretokenizationDelimiter', 'string'],
  [54, 'seedSentencepiecesFile', 'string'],
];

const NORMALIZER_FIELDS: FieldTable<NormalizerSpec> = [
  [1, 'name', 'string'],
  [2, 'precompiledCharsmap', 'bytes'],
  [3, 'addDummyPrefix', 'bool'],
  [4, 'removeExtraWhitespaces', 'bool'],
  [5, 'escapeWhitespaces', 'bool'],
  [6, 'normalizationRuleTsv', 'string'],
];

type FieldValue = string | string[] | Uint8Array | number | boolean;

function readMessage<T extends { unknownFields?: Uint8Array[] }>(bytes: Uint8Array, table: FieldTable<T>, what: string): T {
  const out: Record<string, FieldValue | Uint8Array[]> = {};
  const unknown: Uint8Array[] = [];
  const byNumber = new Map(table.map((row) => [row[0], row]));
  const r = new ProtobufReader(bytes);
  while (!r.done) {
    const f = r.next();
    const row = byNumber.get(f.number);
    if (row === undefined) {
      unknown.push(f.encoded);
      continue;
    }
    const [, key, kind] = row;
    const name = `${what}.${String(key)}`;
    const k = key as string;
    switch (kind) {
      case 'string': out[k] = fieldString(f, name); break;
      case 'strings': ((out[k] ??= []) as string[]).push(fieldString(f, name)); break;
      case 'bytes': out[k] = fieldBytes(f, name).slice(); break;
      case 'int32': out[k] = fieldInt32(f, name); break;
      case 'uint64': out[k] = fieldUint64(f, name); break;
      case 'float': out[k] = fieldFloat(f, name); break;
      case 'bool': out[k] = fieldBool(f, name); break;
    }
  }
  if (unknown.length > 0) out['unknownFields'] = unknown;
  return out as T;
}

function writeMessage<T extends { unknownFields?: Uint8Array[] }>(msg: T, table: FieldTable<T>): Uint8Array {
  const w = new ProtobufWriter();
  const values = msg as Record<string, unknown>;
  for (const [number, key, kind] of table) {
    const v = values[key as string];
    if (v === undefined) continue;
    switch (kind) {
      case 'string': w.string(number, v as string); break;
      case 'strings': for (const s of v as string[]) w.string(number, s); break;
      case 'bytes': w.bytes(number, v as Uint8Array); break;
      case 'int32': w.int32(number, v as number); break;
      case 'uint64': w.uint64(number, v as number); break;
      case 'float': w.float(number, v as number); break;
      case 'bool': w.bool(number, v as boolean); break;
    }
  }
  for (const raw of msg.unknownFields ?? []) w.raw(raw);
  return w.finish();
}

function readPiece(f: RawField, index: number): ModelPiece {
  const what = `piece ${index}`;
  const r = new ProtobufReader(fieldBytes(f, what));
  let piece: string | undefined;
  let score = 0;
  let type: PieceType | undefined;
  while (!r.done) {
    const g = r.next();
    if (g.number === 1) piece = fieldString(g, `${what} text`);
    else if (g.number === 2) score = fieldFloat(g, `${what} score`);
    else if (g.number === 3) {
      const t = fieldInt32(g, `${what} type`);
      if (t < PieceType.NORMAL || t > PieceType.BYTE) throw new ProtobufError(`${what} has unknown type ${t}`);
      type = t as PieceType;
    }
  }
  if (piece === undefined || piece === '') throw new ProtobufError(`${what} has no text`);
  const out: ModelPiece = { piece, score };
  if (type !== undefined) out.type = type;
  return out;
}

// --- public API ------------------------------------------------------------------------------

/** Parses a `.model` file's bytes. `file` names it in errors. */
export function parseSentencePieceModel(bytes: Uint8Array, file: string): SentencePieceModel {
  const pieces: ModelPiece[] = [];
  let trainerSpec: TrainerSpec = {};
  let normalizerSpec: NormalizerSpec = {};
  const extraFields: Uint8Array[] = [];
  let sawTrainer = false;
  try {
    const r = new ProtobufReader(bytes);
    while (!r.done) {
      const f = r.next();
      if (f.number === 1) pieces.push(readPiece(f, pieces.length));
      else if (f.number === 2) {
        trainerSpec = readMessage(fieldBytes(f, 'trainer_spec'), TRAINER_FIELDS, 'trainer_spec');
        sawTrainer = true;
      } else if (f.number === 3) normalizerSpec = readMessage(fieldBytes(f, 'normalizer_spec'), NORMALIZER_FIELDS, 'normalizer_spec');
      else extraFields.push(f.encoded.slice());
    }
  } catch (err) {
    if (err instanceof ProtobufError) throw new FormatError(file, `not a SentencePiece model (${err.message})`);
    throw err;
  }
  if (pieces.length === 0) throw new FormatError(file, 'not a SentencePiece model (no pieces)');
  if (!sawTrainer) throw new FormatError(file, 'not a SentencePiece model (no trainer_spec)');
  const model: SentencePieceModel = { pieces, trainerSpec, normalizerSpec };
  if (extraFields.length > 0) model.extraFields = extraFields;
  return model;
}

export function readSentencePieceModel(path: string): SentencePieceModel {
  return parseSentencePieceModel(readWholeFile(path), path);
}

/** Serializes a model to `.model` bytes (field-number order, as the C++ library does). */
export function serializeSentencePieceModel(model: SentencePieceModel): Uint8Array {
  const w = new ProtobufWriter();
  for (const p of model.pieces) {
    const pw = new ProtobufWriter();
    pw.string(1, p.piece);
    pw.float(2, p.score);
    if (p.type !== undefined) pw.int32(3, p.type);
    w.bytes(1, pw.finish());
  }
  w.bytes(2, writeMessage(model.trainerSpec, TRAINER_FIELDS));
  w.bytes(3, writeMessage(model.normalizerSpec, NORMALIZER_FIELDS));
  for (const raw of model.extraFields ?? []) w.raw(raw);
  return w.finish();
}

/**
 * Writes a SentencePiece `.model` file (atomically). For a BPE vocabulary trained by llama2ts,
 * pass e.g.
 *   pieces: <unk> (UNKNOWN), <s>, </s> (CONTROL), <0x00>…<0xFF> (BYTE), then the merges and
 *           characters as NORMAL pieces with descending scores,
 *   trainerSpec: { modelType: ModelType.BPE, vocabSize, byteFallback: true, … },
 *   normalizerSpec: { name: 'identity', addDummyPrefix: true, removeExtraWhitespaces: …, escapeWhitespaces: true }.
 */
export function writeSentencePieceModel(path: string, model: SentencePieceModel): void {
  writeFileAtomic(path, [serializeSentencePieceModel(model)]);
}
