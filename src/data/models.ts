// Downloading models into a cache folder, and finding them there by name:
//
//   llama2.c's checkpoints by name   stories260K (+ tok512), stories15M, stories42M, stories110M
//                                    (+ llama2.c's tokenizer.bin): the files llama2.c's README
//                                    fetches, from Hugging Face (karpathy/tinyllamas) and GitHub
//   Hugging Face repositories        hf:ORG/NAME[@REVISION]: config.json, the tokenizer files and
//                                    every safetensors shard, through the Hub's API (the file list,
//                                    sizes and LFS sha256) and its resolve URLs; HF_TOKEN is sent
//                                    (to the Hub only) for gated and private models
//
// Layout of the cache (--dir, else $LLAMA2TS_CACHE, else $XDG_CACHE_HOME/llama2ts or
// ~/.cache/llama2ts):
//
//   <cache>/stories15M/stories15M.bin, tokenizer.bin            a llama2.c checkpoint
//   <cache>/hf/ORG/NAME/config.json, model.safetensors, …       a Hugging Face model (main)
//   <cache>/hf/ORG/NAME@REVISION/…                              another revision
//
// Every file goes through download.ts's downloadFile (resumable .part file, retries, size checked
// against the server's and the Hub's sizes, fsync + rename); LFS files are checked against their
// sha256. A folder gets its completion marker (.complete: the files and their sizes) last, and a
// model is found by name only when the marker is there and every file has its size — so an
// interrupted download is resumed by running the command again, never taken for a model.

import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { FormatError, LlamaError, UsageError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import { withModelSource } from '../model/open.js';
import { type DownloadOptions, downloadFile } from './download.js';

/** The cache folder: `dir`, else $LLAMA2TS_CACHE, else $XDG_CACHE_HOME/llama2ts, else ~/.cache/llama2ts. */
export function modelCacheDir(dir?: string): string {
  if (dir !== undefined) return dir;
  const env = process.env['LLAMA2TS_CACHE'];
  if (env) return env;
  const xdg = process.env['XDG_CACHE_HOME'];
  return join(xdg ? xdg : join(homedir(), '.cache'), 'llama2ts');
}

const HF = 'https://huggingface.co/karpathy/tinyllamas/resolve/main';
const LLAMA2C_TOKENIZER = 'https://raw.githubusercontent.com/karpathy/llama2.c/master/tokenizer.bin';

export interface KnownModel {
  readonly description: string;
  /** The checkpoint's file name in its folder. */
  readonly model: string;
  /** The files: where from, and their name in the folder. */
  readonly files: ReadonlyArray<{ readonly url: string; readonly name: string }>;
}

/** llama2.c's checkpoints (its README's "models" table). */
export const KNOWN_MODELS: Readonly<Record<string, KnownModel>> = {
  stories260K: {
    description: 'dim 64, 5 layers, 512-token vocabulary (tok512), 1 MB',
    model: 'stories260K.bin',
    files: [
      { url: `${HF}/stories260K/stories260K.bin`, name: 'stories260K.bin' },
      { url: `${HF}/stories260K/tok512.bin`, name: 'tok512.bin' },
      { url: `${HF}/stories260K/tok512.model`, name: 'tok512.model' },
    ],
  },
  stories15M: {
    description: 'dim 288, 6 layers, Llama 2 vocabulary, 61 MB',
    model: 'stories15M.bin',
    files: [{ url: `${HF}/stories15M.bin`, name: 'stories15M.bin' }, { url: LLAMA2C_TOKENIZER, name: 'tokenizer.bin' }],
  },
  stories42M: {
    description: 'dim 512, 8 layers, context 1024, Llama 2 vocabulary, 167 MB',
    model: 'stories42M.bin',
    files: [{ url: `${HF}/stories42M.bin`, name: 'stories42M.bin' }, { url: LLAMA2C_TOKENIZER, name: 'tokenizer.bin' }],
  },
  stories110M: {
    description: 'dim 768, 12 layers, context 1024, Llama 2 vocabulary, 439 MB',
    model: 'stories110M.bin',
    files: [{ url: `${HF}/stories110M.bin`, name: 'stories110M.bin' }, { url: LLAMA2C_TOKENIZER, name: 'tokenizer.bin' }],
  },
};

/** A Hugging Face model id: hf:ORG/NAME or hf:ORG/NAME@REVISION. */
export interface HfModelId {
  readonly repo: string;
  readonly revision: string;
}

const REPO = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}\/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;
const REVISION = /^[A-Za-z0-9][A-Za-z0-9._\/-]{0,127}$/;

/** Parses `hf:ORG/NAME[@REVISION]`; undefined when `spec` does not start with hf:. */
export function parseHfModelId(spec: string, revision?: string): HfModelId | undefined {
  if (!spec.startsWith('hf:')) return undefined;
  const [repo, rev] = spec.slice(3).split('@', 2) as [string, string | undefined];
  if (!REPO.test(repo) || repo.includes('..')) throw new UsageError(`${spec}: a Hugging Face model id is hf:ORG/NAME (letters, digits, '-', '_', '.')`);
  if (rev !== undefined && revision !== undefined && rev !== revision) throw new UsageError(`${spec}: two revisions (@${rev} and --revision ${revision})`);
  const r = rev ?? revision ?? 'main';
  if (!REVISION.test(r) || r.includes('..')) throw new UsageError(`${spec}: bad revision ${JSON.stringify(r)}`);
  return { repo, revision: r };
}

/** The cache folder of a known model or a Hugging Face id. */
export function modelFolder(spec: string, cache: string): string {
  const hf = parseHfModelId(spec);
  if (hf !== undefined) {
    const [org, name] = hf.repo.split('/') as [string, string];
    return join(cache, 'hf', org, hf.revision === 'main' ? name : `${name}@${hf.revision.replaceAll('/', '--')}`);
  }
  if (spec in KNOWN_MODELS) return join(cache, spec);
  throw new UsageError(`unknown model ${JSON.stringify(spec)}: llama2 download knows ${Object.keys(KNOWN_MODELS).join(', ')} and hf:ORG/NAME`);
}

/** True for a name `llama2 download` knows (a llama2.c checkpoint or hf:…). */
export function isDownloadableName(spec: string): boolean {
  return spec in KNOWN_MODELS || spec.startsWith('hf:');
}

const COMPLETE = '.complete';

interface Marker {
  readonly files: ReadonlyArray<{ readonly name: string; readonly bytes: number }>;
}

/** The files of a completely downloaded folder (marker present, every size right), or undefined. */
function completeFiles(dir: string): string[] | undefined {
  let marker: Marker;
  try {
    marker = JSON.parse(readFileSync(join(dir, COMPLETE), 'utf8')) as Marker;
  } catch {
    return undefined;
  }
  if (!Array.isArray(marker.files) || marker.files.length === 0) return undefined;
  for (const f of marker.files) {
    if (typeof f?.name !== 'string' || f.name.includes('/') || f.name.startsWith('.')) return undefined;
    try {
      if (statSync(join(dir, f.name)).size !== f.bytes) return undefined;
    } catch {
      return undefined;
    }
  }
  return marker.files.map((f) => f.name);
}

function writeMarker(dir: string, names: readonly string[]): void {
  const files = names.map((name) => ({ name, bytes: statSync(join(dir, name)).size }));
  writeFileAtomic(join(dir, COMPLETE), [new TextEncoder().encode(JSON.stringify({ files }, null, 1) + '\n')]);
}

/**
 * The local path of a downloaded model named `spec` (a known name → its .bin; hf:… → its folder);
 * a UsageError saying how to download it when it is not (completely) there.
 */
export function downloadedModelPath(spec: string, cache = modelCacheDir()): string {
  const dir = modelFolder(spec, cache);
  if (completeFiles(dir) === undefined) {
    throw new UsageError(`${spec} is not downloaded${existsSync(dir) ? ' completely' : ''} (looked in ${dir}): run llama2 download ${spec}`);
  }
  return spec in KNOWN_MODELS ? join(dir, KNOWN_MODELS[spec]!.model) : dir;
}

export interface ModelDownloadOptions extends Pick<DownloadOptions, 'log' | 'stallTimeoutMs' | 'attempts' | 'retryDelayMs'> {
  /** (bytes done in all files, total bytes or 0 when unknown) */
  readonly onProgress?: (done: number, total: number) => void;
  /** Known models: fetch every file from this folder URL instead (a mirror; BASE + file name). */
  readonly mirror?: string;
  /** Hugging Face: the Hub's address (default $HF_ENDPOINT or https://huggingface.co). */
  readonly endpoint?: string;
  /** Hugging Face: the access token (default $HF_TOKEN), for gated and private models. */
  readonly token?: string;
}

/** Downloads a known model or hf:ORG/NAME into the cache; returns the path to run it by. */
export async function downloadModel(spec: string, cache: string, opts: ModelDownloadOptions = {}, revision?: string): Promise<string> {
  const hf = parseHfModelId(spec, revision);
  if (hf !== undefined) return downloadHf(hf, cache, opts);
  if (revision !== undefined) throw new UsageError('--revision is for hf:ORG/NAME models');
  const known = KNOWN_MODELS[spec];
  if (known === undefined) modelFolder(spec, cache); // throws the list of known names
  const dir = modelFolder(spec, cache);
  if (completeFiles(dir) !== undefined) {
    opts.log?.(`${spec} is already in ${dir}`);
    return join(dir, known!.model);
  }
  mkdirSync(dir, { recursive: true });
  const base = opts.mirror === undefined ? undefined : opts.mirror.endsWith('/') ? opts.mirror : `${opts.mirror}/`;
  let before = 0;
  for (const f of known!.files) {
    const url = base === undefined ? f.url : base + f.name;
    const dest = join(dir, f.name);
    if (!existsSync(dest)) {
      await downloadFile(url, dest, { ...opts, onProgress: (done, total) => opts.onProgress?.(before + done, total === 0 ? 0 : before + total) });
    }
    before += statSync(dest).size;
  }
  // the checkpoint's header must account for its size exactly (and the model must open)
  const model = join(dir, known!.model);
  try {
    withModelSource(model, () => undefined);
  } catch (err) {
    unlinkSync(model);
    throw new LlamaError(`${model} is not the checkpoint it should be (${(err as Error).message}); it was removed: run the command again`);
  }
  writeMarker(dir, known!.files.map((f) => f.name));
  return model;
}

// ----------------------------------------------------------------------------------------------
// Hugging Face

interface Sibling {
  readonly rfilename: string;
  readonly size?: number;
  readonly lfs?: { readonly size?: number; readonly sha256?: string };
}

/** The files of a model this engine needs (config, tokenizer, safetensors), present in the repo. */
const WANTED = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json'];

async function hubJson(url: string, token: string | undefined, what: string): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, { headers: { 'user-agent': 'llama2ts', ...(token ? { authorization: `Bearer ${token}` } : {}) }, signal: AbortSignal.timeout(60_000) });
  } catch (err) {
    throw new LlamaError(`cannot reach ${new URL(url).host} (${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message})`);
  }
  if (res.status === 401 || res.status === 403) {
    await res.body?.cancel();
    throw new LlamaError(`${what}: access denied (HTTP ${res.status}) — a gated or private model: accept its license on the Hub, then set HF_TOKEN to an access token${token ? ' (the one given was refused)' : ''}`);
  }
  if (res.status === 404) {
    await res.body?.cancel();
    throw new LlamaError(`${what}: not found (no such repository or revision, or it is private: set HF_TOKEN)`);
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new LlamaError(`${what}: the Hub answered HTTP ${res.status}`);
  }
  const text = await res.text();
  if (text.length > 64 << 20) throw new LlamaError(`${what}: the Hub's answer is too large`);
  try {
    return JSON.parse(text);
  } catch {
    throw new LlamaError(`${what}: the Hub's answer is not JSON`);
  }
}

/** sha256 of a file, hex. */
async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 22 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function downloadHf(id: HfModelId, cache: string, opts: ModelDownloadOptions): Promise<string> {
  const spec = `hf:${id.repo}${id.revision === 'main' ? '' : `@${id.revision}`}`;
  const dir = modelFolder(spec, cache);
  if (completeFiles(dir) !== undefined) {
    opts.log?.(`${spec} is already in ${dir}`);
    return dir;
  }
  const endpoint = (opts.endpoint ?? process.env['HF_ENDPOINT'] ?? 'https://huggingface.co').replace(/\/+$/, '');
  const token = opts.token ?? process.env['HF_TOKEN'] ?? process.env['HUGGING_FACE_HUB_TOKEN'] ?? undefined;
  const info = await hubJson(`${endpoint}/api/models/${id.repo}/revision/${encodeURIComponent(id.revision)}?blobs=true`, token, spec) as { siblings?: unknown };
  if (!Array.isArray(info.siblings)) throw new LlamaError(`${spec}: the Hub's answer lists no files`);
  const files = new Map<string, Sibling>();
  for (const s of info.siblings as Sibling[]) if (typeof s?.rfilename === 'string' && !s.rfilename.includes('/')) files.set(s.rfilename, s);
  if (!files.has('config.json')) throw new LlamaError(`${spec}: no config.json (not a transformers model)`);
  const names = WANTED.filter((n) => files.has(n));
  const hasIndex = files.has('model.safetensors.index.json');
  if (files.has('model.safetensors')) names.push('model.safetensors');
  else if (hasIndex) names.push('model.safetensors.index.json');
  else {
    const other = [...files.keys()].find((n) => n.endsWith('.bin') || n.endsWith('.pth') || n.endsWith('.gguf'));
    throw new LlamaError(`${spec}: no safetensors weights${other ? ` (${other} is not downloaded: llama2ts reads safetensors)` : ''}`);
  }
  mkdirSync(dir, { recursive: true });
  const headers = token ? { authorization: `Bearer ${token}` } : undefined;
  const total = () => names.reduce((n, f) => n + (files.get(f)?.lfs?.size ?? files.get(f)?.size ?? 0), 0);
  let before = 0;
  const fetchFile = async (name: string): Promise<void> => {
    const s = files.get(name)!;
    const size = s.lfs?.size ?? s.size;
    const dest = join(dir, name);
    const url = `${endpoint}/${id.repo}/resolve/${encodeURIComponent(id.revision)}/${encodeURIComponent(name)}`;
    if (!(existsSync(dest) && size !== undefined && statSync(dest).size === size)) {
      if (existsSync(dest)) unlinkSync(dest);
      await downloadFile(url, dest, {
        ...opts, ...(headers ? { headers } : {}), ...(size !== undefined ? { maxBytes: size } : {}),
        onProgress: (done) => opts.onProgress?.(before + done, total()),
      });
      const got = statSync(dest).size;
      if (size !== undefined && got !== size) {
        unlinkSync(dest);
        throw new LlamaError(`${name}: downloaded ${got} bytes, the Hub lists ${size}; removed it: run the command again`);
      }
      const sha = s.lfs?.sha256;
      if (sha !== undefined && (await sha256File(dest)) !== sha) {
        unlinkSync(dest);
        throw new LlamaError(`${name}: its sha256 is not the Hub's; removed it: run the command again`);
      }
    }
    before += statSync(dest).size;
  };
  for (let i = 0; i < names.length; i++) {
    await fetchFile(names[i]!);
    if (names[i] === 'model.safetensors.index.json') {
      // then every shard its weight_map names (each must be a file of the repository)
      let map: unknown;
      try {
        map = (JSON.parse(readFileSync(join(dir, names[i]!), 'utf8')) as { weight_map?: unknown }).weight_map;
      } catch {
        throw new FormatError(join(dir, names[i]!), 'not valid JSON');
      }
      if (typeof map !== 'object' || map === null) throw new FormatError(join(dir, names[i]!), 'no weight_map');
      for (const shard of new Set(Object.values(map as Record<string, unknown>))) {
        if (typeof shard !== 'string' || !files.has(shard) || !shard.endsWith('.safetensors')) {
          throw new FormatError(join(dir, names[i]!), `weight_map names ${JSON.stringify(shard)}, not a safetensors file of ${spec}`);
        }
        if (!names.includes(shard)) names.push(shard);
      }
    }
  }
  // the folder must open as a model before it is marked complete
  withModelSource(dir, () => undefined);
  writeMarker(dir, names);
  return dir;
}
