// What every model-running command (run, eval, bench, serve) shares: finding the tokenizer that
// goes with a model, and choosing the backend that runs it.

import { existsSync } from 'node:fs';
import { freemem } from 'node:os';
import { basename } from 'node:path';
import { LlamaError, UsageError } from '../errors.js';
import type { ModelConfig } from '../model/config.js';
import { downloadedModelPath, isDownloadableName } from '../data/models.js';
import { withModelSource } from '../model/open.js';
import type { ChatTemplateRef } from '../model/source.js';
import { defaultModelFiles } from '../model/default-model.js';
import type { InferenceEngine } from '../infer/engine.js';
import { DEFAULT_MAX_CONTEXT } from '../infer/forward.js';
import { type LoadModelOptions, loadTransformer } from '../infer/load.js';
import { createKernels, jsKernelSet, type KernelSet } from '../kernels/kernel-set.js';
import type { ModelSource } from '../model/source.js';
import { intFlag, type ParsedFlags, stringFlag, threadsFlag } from './flags.js';

/**
 * The path of the model named on the command line: an existing file or folder as it is; a name
 * `llama2 download` knows (stories15M, hf:ORG/NAME) as the downloaded copy in the cache.
 */
export function modelArg(arg: string): string {
  if (existsSync(arg) || !isDownloadableName(arg)) return arg;
  return downloadedModelPath(arg);
}

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
  const model = positionals.length === 0 ? defaultModelFiles().model : modelArg(positionals[0]!);
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

/** The flags that choose how a model runs: backend, threads, int8, context window. */
export const engineFlagSpec = {
  backend: { type: 'string' },
  kernels: { type: 'string' },
  threads: { type: 'string' },
  quantize: { type: 'string' },
  dequantize: { type: 'boolean' },
  ctx: { type: 'string' },
} as const;

export const ENGINE_HELP = `  --backend B           wasm (WebAssembly SIMD, default), webgpu (the GPU, through WebGPU), or js
                        (plain TypeScript reference); --kernels is the same flag
  --threads N           threads for the wasm kernels (default: the number of cores)
  --quantize Q          q8: run a float32 file (v0, v1) with int8 Q8_0 weights; none: as float32 (default)
  --dequantize          run a v2 file as float32 (4× the memory); by default it runs as the int8 it holds
  --ctx N               context window: positions the KV cache holds (default: the model's, at most ${DEFAULT_MAX_CONTEXT})`;

export type Backend = 'js' | 'wasm' | 'webgpu';

export interface Engine {
  /** What runs the model. */
  readonly backend: Backend;
  /** The CPU kernels (the model's with wasm or js; the reference ones beside webgpu). */
  readonly kernels: KernelSet;
  readonly load: LoadModelOptions;
  /** Loads a model (a path in any format, or an open source) onto the backend; `options` override the flags'. */
  open(model: string | ModelSource, options?: LoadModelOptions): InferenceEngine;
  /** Releases the kernels' threads or the GPU. */
  close(): Promise<void>;
}

/** Creates the backend (and load options) the engine flags ask for. */
export async function engineFromFlags(values: ParsedFlags['values']): Promise<Engine> {
  const backendFlag = stringFlag(values, 'backend');
  const kernelsFlag = stringFlag(values, 'kernels');
  if (backendFlag !== undefined && kernelsFlag !== undefined && backendFlag !== kernelsFlag) {
    throw new UsageError(`--backend ${backendFlag} and --kernels ${kernelsFlag} disagree (they are the same flag)`);
  }
  const kind = backendFlag ?? kernelsFlag;
  if (kind !== undefined && kind !== 'js' && kind !== 'wasm' && kind !== 'webgpu') throw new UsageError(`--backend must be wasm, webgpu or js, got '${kind}'`);
  const threads = threadsFlag(values);
  if (kind !== undefined && kind !== 'wasm' && threads !== undefined && threads > 1) throw new UsageError('--threads needs the wasm backend');
  const quantize = stringFlag(values, 'quantize', 'none');
  if (quantize !== 'none' && quantize !== 'q8') throw new UsageError(`--quantize must be q8 or none, got '${quantize}'`);
  const dequantize = values['dequantize'] === true;
  if (dequantize && quantize === 'q8') throw new UsageError('--dequantize and --quantize q8 contradict each other');
  const contextLength = values['ctx'] === undefined ? undefined : intFlag(values, 'ctx', 0, 1);
  // a model that needs more memory than the machine has available is refused up front (saying what
  // would fit) rather than left to the kernel's out-of-memory killer
  const load: LoadModelOptions = { quantize, dequantize, ...(contextLength !== undefined ? { contextLength } : {}), memoryBudget: freemem() };
  if (kind === 'webgpu') {
    const { WebGpuDevice, loadWebGpuEngine } = await import('../backends/webgpu/engine.js');
    const { probeAdapter } = await import('../backends/webgpu/probe.js');
    const missing = probeAdapter();
    if (missing !== undefined) throw new LlamaError(`--backend webgpu: ${missing}`);
    const device = await WebGpuDevice.open();
    return {
      backend: 'webgpu', kernels: jsKernelSet, load,
      open: (model, options) => loadWebGpuEngine(device, model, { ...load, ...options }),
      close: () => device.close(),
    };
  }
  const kernels = await createKernels({ ...(kind ? { kind } : {}), ...(threads ? { threads } : {}) });
  return {
    backend: kernels.name === 'js' ? 'js' : 'wasm', kernels, load,
    open: (model, options) => loadTransformer(model, kernels, { ...load, ...options }),
    close: () => kernels.close(),
  };
}
