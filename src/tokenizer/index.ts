// The tokenizer module's public surface.

export { Tokenizer, StreamingDecoder, loadTokenizer, parseTokenizer, checkVocabMatch } from './tokenizer.js';
export type { EncodeOptions, LoadTokenizerOptions, TokenizerFormat } from './tokenizer.js';
export type { StreamingDecoderOptions } from './decoder.js';
export type { Vocabulary } from './vocabulary.js';
export {
  PieceType, ModelType, parseSentencePieceModel, readSentencePieceModel, serializeSentencePieceModel, writeSentencePieceModel,
} from './sentencepiece-model.js';
export type { ModelPiece, NormalizerSpec, SentencePieceModel, TrainerSpec } from './sentencepiece-model.js';
export { parseLlama2cTokenizer, readLlama2cTokenizer, serializeLlama2cTokenizer, writeLlama2cTokenizer } from './llama2c-format.js';
