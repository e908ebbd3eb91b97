// llama.cpp from Node.js, on demand: node-llama-cpp (pinned 3.21.1) and its prebuilt CPU binary for
// this platform, installed the first time a test or benchmark asks for them into a folder of their
// own (node_modules/.cache/node-llama-cpp-3.21.1: about 83 MB, ~10 s) — never into the project's
// dependencies or lockfile. Where it cannot be installed or its binary cannot load, the caller gets
// the reason and skips.
//
// Only the few calls the GGUF test and the side-by-side benchmark make are typed here.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const NODE_LLAMA_CPP_VERSION = '3.21.1';

const projectRoot = fileURLToPath(new URL('../..', import.meta.url));
const cacheDir = join(projectRoot, 'node_modules', '.cache', `node-llama-cpp-${NODE_LLAMA_CPP_VERSION}`);

export interface LlamaCppSequence {
  /** Feeds `tokens`, then yields the tokens it samples, one per step, until the caller stops. */
  evaluate(tokens: number[], options: { temperature: number; yieldEogToken?: boolean }): AsyncGenerator<number, void, void>;
  evaluateWithoutGeneratingNewTokens(tokens: number[]): Promise<void>;
  clearHistory(): Promise<void>;
}
export interface LlamaCppContext {
  getSequence(): LlamaCppSequence;
  printTimings(): Promise<void>;
  dispose(): Promise<void>;
}
export interface LlamaCppModel {
  tokenize(text: string): number[];
  readonly tokens: { readonly bos: number | null; readonly eos: number | null };
  createContext(options: {
    contextSize: number; threads: number | { ideal: number; min: number }; batchSize?: number; sequences?: number; performanceTracking?: boolean;
  }): Promise<LlamaCppContext>;
  dispose(): Promise<void>;
}
export interface LlamaCpp {
  loadModel(options: { modelPath: string; gpuLayers?: number }): Promise<LlamaCppModel>;
  dispose(): Promise<void>;
}
interface NodeLlamaCppModule {
  getLlama(options: Record<string, unknown>): Promise<LlamaCpp>;
}

/** node-llama-cpp's package of prebuilt binaries for this machine, if it has one. */
function platformPackage(): string | undefined {
  const names: Record<string, string> = {
    'linux-x64': 'linux-x64', 'linux-arm64': 'linux-arm64', 'linux-arm': 'linux-armv7l',
    'darwin-arm64': 'mac-arm64-metal', 'darwin-x64': 'mac-x64', 'win32-x64': 'win-x64', 'win32-arm64': 'win-arm64',
  };
  const name = names[`${process.platform}-${process.arch}`];
  return name === undefined ? undefined : `@node-llama-cpp/${name}`;
}

function installedVersion(): string | undefined {
  const pkg = join(cacheDir, 'node_modules', 'node-llama-cpp', 'package.json');
  if (!existsSync(pkg)) return undefined;
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version?: string }).version;
}

/** Installs node-llama-cpp into its cache folder unless it is there; returns why not on failure. */
function install(): string | undefined {
  if (installedVersion() === NODE_LLAMA_CPP_VERSION) return undefined;
  const binary = platformPackage();
  if (binary === undefined) return `node-llama-cpp has no prebuilt binary for ${process.platform}-${process.arch}`;
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(join(cacheDir, 'package.json'), '{ "name": "llama2ts-node-llama-cpp", "private": true }\n');
  const r = spawnSync('npm', [
    'install', '--prefix', cacheDir, '--no-save', '--no-package-lock', '--omit=optional', '--ignore-scripts',
    '--no-audit', '--no-fund', '--fetch-retries=1', '--fetch-timeout=60000',
    `node-llama-cpp@${NODE_LLAMA_CPP_VERSION}`, `${binary}@${NODE_LLAMA_CPP_VERSION}`,
  ], { encoding: 'utf8', timeout: 240_000, shell: process.platform === 'win32' });
  if (r.status !== 0) {
    const why = r.error?.message ?? r.stderr.trim().split('\n').filter((l) => l.includes('ERR')).slice(0, 2).join(' ');
    return `could not install node-llama-cpp@${NODE_LLAMA_CPP_VERSION} (${why || `npm exited with ${r.status}`})`;
  }
  return installedVersion() === NODE_LLAMA_CPP_VERSION ? undefined : 'node-llama-cpp installed but not found';
}

/**
 * llama.cpp on the CPU (no GPU, prebuilt binary only; errors-only logging, or every message to
 * `logger`), installing node-llama-cpp first when needed; or the reason it is not available here.
 */
export async function loadLlamaCpp(logger?: (level: string, message: string) => void): Promise<LlamaCpp | string> {
  const failed = install();
  if (failed !== undefined) return failed;
  try {
    const entry = join(cacheDir, 'node_modules', 'node-llama-cpp', 'dist', 'index.js');
    const mod = (await import(pathToFileURL(entry).href)) as NodeLlamaCppModule;
    const logging = logger === undefined ? { logLevel: 'error' } : { logLevel: 'info', logger };
    return await mod.getLlama({ gpu: false, build: 'never', usePrebuiltBinaries: true, progressLogs: false, ...logging });
  } catch (err) {
    return `node-llama-cpp cannot load llama.cpp here: ${(err as Error).message.split('\n')[0]}`;
  }
}

/**
 * llama.cpp's greedy continuation: feeds `promptIds` (BOS included) to the model at `modelPath`
 * and returns the next `n` tokens it picks at temperature 0.
 */
export async function llamaCppGreedy(llama: LlamaCpp, modelPath: string, promptIds: readonly number[], n: number, threads = 1): Promise<number[]> {
  const model = await llama.loadModel({ modelPath });
  try {
    const context = await model.createContext({ contextSize: promptIds.length + n + 1, threads: { ideal: threads, min: threads } });
    try {
      const out: number[] = [];
      if (n === 0) return out;
      // (an end-of-generation token such as EOS is yielded and generation goes on, as llama2ts's argmax loop does)
      for await (const token of context.getSequence().evaluate([...promptIds], { temperature: 0, yieldEogToken: true })) {
        out.push(token);
        if (out.length >= n) break;
      }
      return out;
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}
