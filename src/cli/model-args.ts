// What every model-running command (run, eval, bench, serve) shares: finding the tokenizer that
// goes with a model, and choosing kernels.

import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { UsageError } from '../errors.js';
import { readCheckpointHeader } from '../model/checkpoint.js';
import { defaultModelFiles } from '../model/default-model.js';
import type { LoadModelOptions } from '../infer/forward.js';
import { createKernels, type KernelSet } from '../kernels/kernel-set.js';
import { intFlag, type ParsedFlags, stringFlag } from './flags.js';

/**
 * The checkpoint a command runs and its tokenizer: the one named on the command line (its
 * tokenizer from -z or found beside it), or the embedded default model and its tokenizer.
 */
export function resolveModelFiles(positionals: readonly string[], command: string, tokenizerFlag: string | undefined): { model: string; tokenizer: string } {
  if (positionals.length > 1) throw new UsageError(`${command} takes one model, got ${positionals.length} arguments (quote a prompt and pass it with -i)`);
  if (positionals.length === 0) {
    const embedded = defaultModelFiles();
    return { model: embedded.model, tokenizer: tokenizerFlag ?? embedded.tokenizer };
  }
  const model = positionals[0]!;
  return { model, tokenizer: resolveTokenizerPath(model, tokenizerFlag, readCheckpointHeader(model).config.vocabSize) };
}

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

/** The flags that choose how a model runs: kernels, threads, int8. */
export const engineFlagSpec = {
  kernels: { type: 'string' },
  threads: { type: 'string' },
  quantize: { type: 'string' },
} as const;

export const ENGINE_HELP = `  --kernels K           wasm (WebAssembly SIMD, default) or js (plain TypeScript reference)
  --threads N           threads for the wasm kernels (default: the number of cores)
  --quantize Q          q8: run with int8 Q8_0 weights (v2 files always can); none: float32 (default)`;

export interface Engine {
  readonly kernels: KernelSet;
  readonly load: LoadModelOptions;
}

/** Creates the kernels (and load options) the engine flags ask for. */
export async function engineFromFlags(values: ParsedFlags['values']): Promise<Engine> {
  const kind = stringFlag(values, 'kernels');
  if (kind !== undefined && kind !== 'js' && kind !== 'wasm') throw new UsageError(`--kernels must be js or wasm, got '${kind}'`);
  const threads = values['threads'] === undefined ? undefined : intFlag(values, 'threads', 1, 1, 256);
  if (kind === 'js' && threads !== undefined && threads > 1) throw new UsageError('--threads needs the wasm kernels');
  const quantize = stringFlag(values, 'quantize', 'none');
  if (quantize !== 'none' && quantize !== 'q8') throw new UsageError(`--quantize must be q8 or none, got '${quantize}'`);
  const kernels = await createKernels({ ...(kind ? { kind } : {}), ...(threads ? { threads } : {}) });
  return { kernels, load: { quantize } };
}
