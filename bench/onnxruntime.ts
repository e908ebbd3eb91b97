// onnxruntime from Node.js, on demand: onnxruntime-node (pinned) installed the first time the
// side-by-side benchmark asks for it, into a folder of its own (node_modules/.cache/
// onnxruntime-node-VERSION, ~290 MB with every platform's CPU binary, ~10 s) with --ignore-scripts
// (its install script only fetches GPU libraries; the CPU binary is in the package) — never into
// the project's dependencies or lockfile. Where it cannot be installed or loaded, the caller gets
// the reason and skips.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ONNXRUNTIME_VERSION = '1.30.0';

const projectRoot = fileURLToPath(new URL('../..', import.meta.url));
const cacheDir = join(projectRoot, 'node_modules', '.cache', `onnxruntime-node-${ONNXRUNTIME_VERSION}`);

/** The few calls the benchmark makes. */
export interface OrtTensor { readonly data: Float32Array }
export interface OrtSession {
  run(feeds: Record<string, unknown>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
export interface Ort {
  readonly InferenceSession: {
    create(path: string, options: { intraOpNumThreads: number; interOpNumThreads: number; graphOptimizationLevel: string; executionMode: string }): Promise<OrtSession>;
  };
  readonly Tensor: new (type: string, data: BigInt64Array, dims: number[]) => unknown;
}

function installedVersion(): string | undefined {
  const pkg = join(cacheDir, 'node_modules', 'onnxruntime-node', 'package.json');
  if (!existsSync(pkg)) return undefined;
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version?: string }).version;
}

/** onnxruntime-node, installed if needed; or the reason it is not available. */
export async function loadOnnxRuntime(): Promise<Ort | string> {
  if (installedVersion() !== ONNXRUNTIME_VERSION) {
    mkdirSync(cacheDir, { recursive: true });
    writeFileSync(join(cacheDir, 'package.json'), '{ "name": "llama2ts-onnxruntime", "private": true }\n');
    const r = spawnSync('npm', [
      'install', '--prefix', cacheDir, '--no-save', '--no-package-lock', '--ignore-scripts', '--no-audit', '--no-fund',
      '--fetch-retries=1', '--fetch-timeout=60000', `onnxruntime-node@${ONNXRUNTIME_VERSION}`,
    ], { encoding: 'utf8', timeout: 300_000, shell: process.platform === 'win32' });
    if (r.status !== 0 || installedVersion() !== ONNXRUNTIME_VERSION) {
      const why = r.error?.message ?? r.stderr.trim().split('\n').filter((l) => l.includes('ERR')).slice(0, 2).join(' ');
      return `could not install onnxruntime-node@${ONNXRUNTIME_VERSION} (${why || `npm exited with ${r.status}`})`;
    }
  }
  try {
    const entry = join(cacheDir, 'node_modules', 'onnxruntime-node', 'dist', 'index.js');
    return (await import(pathToFileURL(entry).href)) as Ort;
  } catch (err) {
    return `onnxruntime-node does not load here: ${(err as Error).message.split('\n')[0]}`;
  }
}
