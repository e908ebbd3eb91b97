// Opening a model wherever a path is taken (run, chat, serve, eval, bench, info, export, the
// library): which format a path holds is decided here, once, by a table of formats — each with a
// test on the path and a constructor of its ModelSource. The first format whose test passes opens
// it. Adding a format is one entry.
//
//   a folder with config.json                       Hugging Face (safetensors)
//   a folder with params.json + consolidated.*.pth  Meta
//   a file that starts with "GGUF"                  GGUF (llama.cpp)
//   any other file                                  llama2.c .bin (v0, v1, v2; the header decides)

import { closeSync, existsSync, readSync } from 'node:fs';
import { openFileOrFolder } from '../files.js';
import { describeFsError, LlamaError } from '../errors.js';
import { joinPath, type ModelFile } from './file-reader.js';
import { isGguf } from './gguf.js';
import { GgufSource } from './gguf-source.js';
import { openHfFolder } from './hf-source.js';
import { Llama2cSource } from './llama2c-source.js';
import { openMetaFolder } from './meta-source.js';
import type { ModelSource } from './source.js';

/** What the format tests look at: whether the path is a folder, and a file's first bytes. */
export interface ModelPathProbe {
  readonly path: string;
  readonly isDirectory: boolean;
  /** A file's first (up to) 16 bytes; empty for a folder. */
  readonly head: Uint8Array;
  /** Whether the folder has an entry `name`. */
  has(name: string): boolean;
}

export interface ModelFormat {
  /** Its name, for messages. */
  readonly name: string;
  /** True when this format reads `probe`. */
  detect(probe: ModelPathProbe): boolean;
  /** Opens a path — or, for a format of single files, bytes in memory (ModelFile). */
  open(file: ModelFile): ModelSource;
}

/** The formats, tried in order; llama2.c's `.bin` (no magic in v0) takes any file no one else claims. */
export const MODEL_FORMATS: ModelFormat[] = [
  {
    name: 'GGUF', detect: (p) => !p.isDirectory && isGguf(p.head),
    open: (file) => new GgufSource(pathOf(file, 'a GGUF model')),
  },
  { name: 'Hugging Face', detect: (p) => p.isDirectory && p.has('config.json'), open: (file) => openHfFolder(pathOf(file, 'a folder')) },
  { name: 'Meta', detect: (p) => p.isDirectory && p.has('params.json') && p.has('consolidated.00.pth'), open: (file) => openMetaFolder(pathOf(file, 'a folder')) },
  { name: 'llama2.c', detect: (p) => !p.isDirectory, open: (file) => new Llama2cSource(file) },
];

/** The path of a format that reads only from files. */
function pathOf(file: ModelFile, what: string): string {
  if (typeof file !== 'string') throw new LlamaError(`${file.name}: ${what} is read from a path, not from bytes in memory`);
  return file;
}

/** Looks at a model path once, for the format tests. */
export function probeModelPath(path: string): ModelPathProbe {
  let fd: number;
  let isDirectory: boolean;
  const head = new Uint8Array(16);
  let n = 0;
  try {
    ({ fd, isDirectory } = openFileOrFolder(path)); // (a FIFO or a device: refused, without waiting)
  } catch (err) {
    throw describeFsError(path, err);
  }
  try {
    if (!isDirectory) n = readSync(fd, head, 0, head.length, 0);
  } catch (err) {
    throw describeFsError(path, err);
  } finally {
    closeSync(fd);
  }
  return { path, isDirectory, head: head.subarray(0, n), has: (name) => isDirectory && existsSync(joinPath(path, name)) };
}

/** The first 16 bytes (fewer in a shorter file) of a model given as bytes or read in parts. */
function headOf(file: Exclude<ModelFile, string>): Uint8Array {
  if ('bytes' in file) return file.bytes.subarray(0, 16);
  const head = new Uint8Array(Math.min(16, file.size));
  file.readAt(head, 0);
  return head;
}

/** Opens the model at `path` (a file or a folder), or in bytes, as a ModelSource, whatever its format. */
export function openModelSource(file: ModelFile): ModelSource {
  const path = typeof file === 'string' ? file : file.name;
  const probe = typeof file === 'string' ? probeModelPath(file)
    : { path, isDirectory: false, head: headOf(file), has: () => false };
  const format = MODEL_FORMATS.find((f) => f.detect(probe));
  if (format === undefined) {
    throw new LlamaError(probe.isDirectory
      ? `${path}: not a model folder (no config.json for a Hugging Face model, no params.json + consolidated.00.pth for a Meta one)`
      : `${path}: not a model file this version reads`);
  }
  return format.open(file);
}

/** Runs `fn` on the source at `path`, closing it afterwards. */
export function withModelSource<T>(path: string, fn: (source: ModelSource) => T): T {
  const source = openModelSource(path);
  try {
    return fn(source);
  } finally {
    source.close();
  }
}
