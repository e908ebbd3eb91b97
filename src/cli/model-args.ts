// What every model-running command (run, eval, bench, serve) shares: finding the tokenizer that
// goes with a model, and choosing kernels.

import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { UsageError } from '../errors.js';
import type { ModelConfig } from '../model/config.js';
import { withModelSource } from '../model/open.js';
import type { ChatTemplateRef } from '../model/source.js';
import { defaultModelFiles } from '../model/default-model.js';
import type { LoadModelOptions } from '../infer/load.js';
import { createKernels, type KernelSet } from '../kernels/kernel-set.js';
import { intFlag, type ParsedFlags, stringFlag } from './flags.js';

/** A model a command runs: its path, the tokenizer to use with it, and its shape. */
export interface ModelFiles {
  readonly model: string;
  readonly tokenizer: string;
  readonly config: ModelConfig;
  /** The chat template found with the model (tokenizer_config.json), if any. */
  readonly chatTemplate?: ChatTemplateRef;
}

/**
 * The model a command runs and its tokenizer: the one named on the command line (a llama2.c
 * .bin, a Hugging Face or Meta folder; its tokenizer from -z or found with it), or the embedded
 * default model and its tokenizer.
 */
export function resolveModelFiles(positionals: readonly string[], command: string, tokenizerFlag: string | undefined): ModelFiles {
  if (positionals.length > 1) throw new UsageError(`${command} takes one model, got ${positionals.length} arguments (quote a prompt and pass it with -i)`);
  const model = positionals.length === 0 ? defaultModelFiles().model : positionals[0]!;
  const found = withModelSource(model, (s) => ({ config: s.config, tokenizer: s.tokenizer?.path, chatTemplate: s.chatTemplate }));
  const tokenizer = positionals.length === 0 ? tokenizerFlag ?? defaultModelFiles().tokenizer : resolveTokenizerPath(model, tokenizerFlag, found.tokenizer);
  return { model, tokenizer, config: found.config, ...(found.chatTemplate !== undefined ? { chatTemplate: found.chatTemplate } : {}) };
}

/**
 * The tokenizer for `modelPath`: the one given with -z, else the one found with the model (for a
 * .bin: tokenizer.bin or tok<vocab>.bin beside it), else ./tokenizer.bin (run.c's default).
 */
export function resolveTokenizerPath(modelPath: string, explicit: string | undefined, found: string | undefined): string {
  if (explicit !== undefined) return explicit;
  if (found !== undefined) return found;
  if (existsSync('tokenizer.bin')) return 'tokenizer.bin';
  throw new UsageError(`no tokenizer given for ${basename(modelPath)} (-z FILE), none found with it, and no ./tokenizer.bin`);
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
