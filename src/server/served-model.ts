// Loading the model a server serves. The CLI passes a checkpoint path (and finds its tokenizer);
// when the project ships a default model, its paths come in here the same way.

import { statSync } from 'node:fs';
import { basename, extname } from 'node:path';
import type { ModelKernels } from '../infer/forward.js';
import { chatFormatFor } from '../infer/chat-format.js';
import type { InferenceEngine } from '../infer/engine.js';
import { loadTransformer, type LoadModelOptions } from '../infer/load.js';
import type { ModelSource } from '../model/source.js';
import { openModelSource } from '../model/open.js';
import { loadTokenizer } from '../tokenizer/index.js';
import type { ServedModel } from './http.js';

export interface ServedModelFiles {
  /** A model: a llama2.c checkpoint (v0, v1, v2), a Hugging Face or Meta folder. */
  readonly modelPath: string;
  /** Its tokenizer (tokenizer.bin, SentencePiece .model, tokenizer.json). */
  readonly tokenizerPath: string;
  /** The name clients use; default the checkpoint's file name without its extension, or the folder's name. */
  readonly id?: string;
}

/**
 * Loads the checkpoint into `kernels` (its first session) — or with `open`, onto another backend
 * (WebGPU) — and its tokenizer.
 */
export function loadServedModel(files: ServedModelFiles, kernels: ModelKernels, load: LoadModelOptions = {}, open?: (source: ModelSource) => InferenceEngine): ServedModel {
  const source = openModelSource(files.modelPath);
  let transformer;
  let tokenizer;
  let chatFormat;
  try {
    tokenizer = loadTokenizer(files.tokenizerPath, source.config.vocabSize);
    chatFormat = chatFormatFor(source.chatTemplate);
    transformer = open !== undefined ? open(source) : loadTransformer(source, kernels, load);
  } finally {
    source.close();
  }
  const st = statSync(files.modelPath);
  return {
    id: files.id ?? (st.isFile() ? basename(files.modelPath, extname(files.modelPath)) : basename(files.modelPath)),
    transformer, tokenizer, chatFormat, kernels,
    // the playground runs a single-file model in the page; a folder only through the API
    ...(st.isFile() ? { modelFile: files.modelPath, tokenizerFile: files.tokenizerPath } : {}),
    created: Math.floor(st.mtimeMs / 1000),
  };
}
