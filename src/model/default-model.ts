// The model that ships with llama2ts, in models/: trained by llama2ts itself on TinyStories
// (`npm run train:default`; models/README.md is its card). `llama2 run` and `llama2 serve` use it
// when no checkpoint is named, so `npx llama2 "Once upon a time"` tells a story out of the box.

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LlamaError } from '../errors.js';

/** models/ of the installed package (this file is dist/src/model/default-model.js). */
const modelsDir = new URL('../../../models/', import.meta.url);

export const DEFAULT_MODEL_PATH = fileURLToPath(new URL('default.bin', modelsDir));
export const DEFAULT_TOKENIZER_PATH = fileURLToPath(new URL('tokenizer.bin', modelsDir));

/** The embedded model's files, checked to be there. */
export function defaultModelFiles(): { model: string; tokenizer: string } {
  for (const f of [DEFAULT_MODEL_PATH, DEFAULT_TOKENIZER_PATH]) {
    if (!existsSync(f)) throw new LlamaError(`the embedded model is missing (${f}); reinstall llama2ts or name a checkpoint`);
  }
  return { model: DEFAULT_MODEL_PATH, tokenizer: DEFAULT_TOKENIZER_PATH };
}
