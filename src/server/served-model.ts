// Loading the model a server serves. The CLI passes a checkpoint path (and finds its tokenizer);
// when the project ships a default model, its paths come in here the same way.

import { statSync } from 'node:fs';
import { basename, extname } from 'node:path';
import type { ModelKernels } from '../infer/forward.js';
import { loadTransformer, type LoadModelOptions } from '../infer/load.js';
import { openModelSource } from '../model/open.js';
import { loadTokenizer } from '../tokenizer/index.js';
import type { ServedModel } from './http.js';

export interface ServedModelFiles {
  /** A model: a llama2.c checkpoint (v0, v1, v2), a Hugging Face or Meta folder. */
  readonly modelPath: string;
  /** Its tokenizer (tokenizer.bin or SentencePiece .model). */
  readonly tokenizerPath: string;
  /** The name clients use; default the checkpoint's file name without its extension. */
  readonly id?: string;
}

/** Loads the checkpoint into `kernels` (its first session) and its tokenizer. */
export function loadServedModel(files: ServedModelFiles, kernels: ModelKernels, load: LoadModelOptions = {}): ServedModel {
  const source = openModelSource(files.modelPath);
  let transformer;
  let tokenizer;
  try {
    tokenizer = loadTokenizer(files.tokenizerPath, source.config.vocabSize);
    transformer = loadTransformer(source, kernels, load);
  } finally {
    source.close();
  }
  return {
    id: files.id ?? basename(files.modelPath, extname(files.modelPath)),
    transformer, tokenizer, kernels,
    modelFile: files.modelPath,
    tokenizerFile: files.tokenizerPath,
    created: Math.floor(statSync(files.modelPath).mtimeMs / 1000),
  };
}
