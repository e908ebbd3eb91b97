// What every model-running command (run, eval, bench, serve) shares: finding the tokenizer that
// goes with a model, and choosing kernels.

import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { UsageError } from '../errors.js';

/**
 * The tokenizer for `modelPath`: the one given with -z, else the first of
 * <model folder>/tokenizer.bin, <model folder>/tok<vocab>.bin, ./tokenizer.bin (run.c's default).
 */
export function resolveTokenizerPath(modelPath: string, explicit: string | undefined, vocabSize: number): string {
  if (explicit !== undefined) return explicit;
  const dir = dirname(modelPath);
  const candidates = [join(dir, 'tokenizer.bin'), join(dir, `tok${vocabSize}.bin`), 'tokenizer.bin'];
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) {
    throw new UsageError(`no tokenizer given for ${basename(modelPath)} (-z FILE); looked for ${candidates.join(', ')}`);
  }
  return found;
}
