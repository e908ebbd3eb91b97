// llama2ts as a library: everything the CLI uses, for programs. (In a web page: 'llama2ts/web'.)
//
//   import { LanguageModel } from 'llama2ts';
//   const lm = await LanguageModel.load();                  // the embedded model; or a path, URL or bytes
//   for await (const piece of lm.stream({ prompt: 'Once upon a time', maxTokens: 100, seed: 42 })) process.stdout.write(piece);

export { LlamaError, UsageError, FormatError } from './errors.js';
export type { ModelConfig } from './model/config.js';
export { headSize, kvDim, hiddenDimFor } from './model/config.js';
export { parameterTable, parameterCount, weightsView, allocateWeights } from './model/weights.js';
export type { TransformerWeights, TensorSpec } from './model/weights.js';
export {
  readCheckpoint, readCheckpointHeader, writeCheckpoint, writeQ8Checkpoint, quantizeWeights, dequantizeWeights,
} from './model/checkpoint.js';
export type { Checkpoint, CheckpointFormat, CheckpointHeader, Q8Weights, QuantizedTensor } from './model/checkpoint.js';
export { Tokenizer, StreamingDecoder, loadTokenizer, parseTokenizer } from './tokenizer/index.js';
export type { Kernels, AttentionShape } from './kernels/types.js';
export { jsKernels } from './kernels/js.js';
export { createKernels, jsKernelSet, defaultThreads } from './kernels/kernel-set.js';
export type { KernelSet, KernelChoice, KernelKind } from './kernels/kernel-set.js';
export { Transformer } from './infer/forward.js';
export type { RunState, ModelKernels } from './infer/forward.js';
export { loadTransformer, loadWeights } from './infer/load.js';
export type { LoadModelOptions } from './infer/load.js';
export { openModelSource } from './model/open.js';
export type { ModelSource, StorageType, TokenizerRef, ChatTemplateRef } from './model/source.js';
export { Sampler, Xorshift64Star } from './infer/sampler.js';
export type { SamplerOptions } from './infer/sampler.js';
export { generate, generateFromIds, StopMatcher, promptText } from './infer/generate.js';
export type { GenerateOptions, GenerationRequest, GenerationResult, FinishReason } from './infer/generate.js';
export { chat, encodeConversation, renderUserTurn } from './infer/chat.js';
export type { ChatMessage, ChatIO, ChatOptions } from './infer/chat.js';
export { evaluateLoss, readTokenFile, crossEntropy } from './infer/eval.js';
export { evaluateLossOnThreads } from './infer/eval-windows.js';
export { benchmark } from './infer/bench.js';
export { LanguageModel } from './infer/model.js';
export { KNOWN_MODELS, downloadModel, downloadedModelPath, modelCacheDir, parseHfModelId } from './data/models.js';
export type { ModelDownloadOptions } from './data/models.js';
export { ChatTemplate, LLAMA2_CHAT, chatFormatFor, encodeChat } from './infer/chat-format.js';
export type { ChatFormat } from './infer/chat-format.js';
export { templateChat } from './infer/template-chat.js';
export type { LoadOptions, ModelInput, SamplingOptions, CompletionOptions, Completion } from './infer/model.js';
export { defaultModelFiles } from './model/default-model.js';
