// `train-vocab`: learn a BPE vocabulary from story files and write it in both forms llama2.c uses,
//   PREFIX.model  a SentencePiece ModelProto, with the trainer and normalizer specs that
//                 llama2.c's tinystories.py train_vocab gives spm.SentencePieceTrainer.train
//   PREFIX.bin    the llama2.c tokenizer.bin (what tokenizer.py's export writes from the .model)

import { dirname } from 'node:path';
import { makeDirs, writeFileAtomic } from '../files.js';
import {
  ModelType, Tokenizer, serializeSentencePieceModel, type NormalizerSpec, type SentencePieceModel, type TrainerSpec,
} from '../tokenizer/index.js';
import { BpeTrainer, type BpeTrainingResult } from './bpe-trainer.js';
import { readStories } from './stories.js';

export interface TrainVocabOptions {
  readonly vocabSize: number;
  /** Called once per input file after it is read: (file, stories in it). */
  readonly onFile?: (file: string, stories: number) => void;
  readonly onMerge?: (done: number, total: number) => void;
}

export interface TrainedVocabulary extends BpeTrainingResult {
  readonly model: SentencePieceModel;
  readonly stories: number;
}

/** The TrainerSpec SentencePiece records for llama2.c's train_vocab settings (tok512.model's). */
export function trainerSpecFor(inputs: readonly string[], prefix: string, vocabSize: number): TrainerSpec {
  return {
    input: [...inputs],
    modelPrefix: prefix,
    modelType: ModelType.BPE,
    vocabSize,
    selfTestSampleSize: 0,
    inputFormat: 'text',
    characterCoverage: 1,
    inputSentenceSize: 0,
    seedSentencepieceSize: 1000000,
    shrinkingFactor: 0.75,
    numThreads: 1,
    numSubIterations: 2,
    maxSentenceLength: 4192,
    shuffleInputSentence: true,
    maxSentencepieceLength: 16,
    splitByUnicodeScript: true,
    splitByWhitespace: true,
    splitByNumber: true,
    treatWhitespaceAsSuffix: false,
    splitDigits: true,
    allowWhitespaceOnlyPieces: true,
    vocabularyOutputPieceScore: true,
    hardVocabLimit: true,
    useAllVocab: false,
    byteFallback: true,
    requiredChars: '',
    unkId: 0,
    bosId: 1,
    eosId: 2,
    padId: -1,
    unkSurface: ' \u2047 ',
    unkPiece: '<unk>',
    bosPiece: '<s>',
    eosPiece: '</s>',
    padPiece: '<pad>',
    trainExtremelyLargeCorpus: false,
    enableDifferentialPrivacy: false,
    differentialPrivacyNoiseLevel: 0,
    differentialPrivacyClippingThreshold: 0,
    pretokenizationDelimiter: '',
  };
}

/** normalization_rule_name=identity: no character mapping, whitespace handling only. */
export const IDENTITY_NORMALIZER: NormalizerSpec = {
  name: 'identity',
  precompiledCharsmap: new Uint8Array(0),
  addDummyPrefix: true,
  removeExtraWhitespaces: true,
  normalizationRuleTsv: '',
};

/** Reads every story of `inputs` and learns a vocabulary of `vocabSize` pieces. */
export function trainVocabulary(inputs: readonly string[], prefix: string, options: TrainVocabOptions): TrainedVocabulary {
  const trainer = new BpeTrainer();
  let stories = 0;
  for (const file of inputs) {
    const list = readStories(file);
    for (const story of list) trainer.addStory(story);
    stories += list.length;
    options.onFile?.(file, list.length);
  }
  const result = trainer.train({ vocabSize: options.vocabSize, onMerge: options.onMerge });
  const model: SentencePieceModel = {
    pieces: result.pieces,
    trainerSpec: trainerSpecFor(inputs, prefix, options.vocabSize),
    normalizerSpec: IDENTITY_NORMALIZER,
  };
  return { ...result, model, stories };
}

/** Writes PREFIX.model and PREFIX.bin (each atomically); returns their paths. */
export function writeVocabulary(prefix: string, model: SentencePieceModel): { model: string; bin: string } {
  const paths = { model: `${prefix}.model`, bin: `${prefix}.bin` };
  makeDirs(dirname(prefix));
  writeFileAtomic(paths.model, [serializeSentencePieceModel(model)]);
  writeFileAtomic(paths.bin, [Tokenizer.fromSentencePiece(model, paths.model).toLlama2cBytes()]);
  return paths;
}
