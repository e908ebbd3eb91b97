// Random access to a model file: an open descriptor and its size, and reads that are checked
// against the size before they happen — every reader in src/model goes through this, so a header
// that points past the end of its file is a one-line FormatError, never a short read.
//
// Only the synchronous node:fs calls the browser shim (web/shims/fs.ts) also offers are used, and
// paths are joined without node:path, so the readers run unchanged in the playground's worker.

import { closeSync, existsSync, readSync } from 'node:fs';
import { FormatError, LlamaError } from '../errors.js';
import { openForReading } from '../files.js';

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new LlamaError('llama2ts needs a little-endian machine (model files are little-endian)');
}

/**
 * A model file: its path, its name and bytes when it is already in memory (a download, bytes a
 * program holds), or its name and size with a way to read any part of it (a file picked in a web
 * page, read a piece at a time by the engine's worker: never whole); the readers treat all alike.
 */
export type ModelFile = string | { readonly name: string; readonly bytes: Uint8Array } | RandomAccessFile;

/** A file read a part at a time: readAt fills dst with the bytes at `position` (within size). */
export interface RandomAccessFile {
  readonly name: string;
  readonly size: number;
  readAt(dst: Uint8Array, position: number): void;
}

export class FileReader {
  /** The path, or the name of bytes in memory (for messages). */
  readonly path: string;
  readonly size: number;
  /** The open descriptor (-1 for bytes in memory). */
  private readonly fd: number = -1;
  private readonly memory: Uint8Array | undefined;
  private readonly parts: RandomAccessFile | undefined;

  constructor(file: ModelFile) {
    if (typeof file !== 'string') {
      this.path = file.name;
      if ('bytes' in file) {
        this.memory = file.bytes;
        this.size = file.bytes.byteLength;
      } else {
        this.parts = file;
        this.size = file.size;
      }
      return;
    }
    this.path = file;
    ({ fd: this.fd, size: this.size } = openForReading(file));
  }

  /** Reads exactly dst.byteLength bytes at `position`. */
  readInto(dst: Uint8Array, position: number): void {
    if (!(Number.isSafeInteger(position) && position >= 0 && position + dst.byteLength <= this.size)) {
      throw new FormatError(this.path, `file is truncated: needs ${position + dst.byteLength} bytes, has ${this.size}`);
    }
    if (this.memory !== undefined) {
      dst.set(this.memory.subarray(position, position + dst.byteLength));
      return;
    }
    if (this.parts !== undefined) {
      this.parts.readAt(dst, position);
      return;
    }
    let done = 0;
    while (done < dst.byteLength) {
      const chunk = Math.min(dst.byteLength - done, 1 << 30);
      const n = readSync(this.fd, dst, done, chunk, position + done);
      if (n <= 0) throw new FormatError(this.path, 'unexpected end of file');
      done += n;
    }
  }

  readFloats(dst: Float32Array, position: number): void {
    this.readInto(bytesOf(dst), position);
  }

  /** `length` bytes at `position` in a new array. */
  bytes(position: number, length: number): Uint8Array {
    const b = new Uint8Array(length);
    this.readInto(b, position);
    return b;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
  }
}

/** The bytes of a typed array, in place. */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** `dir/name` (the readers avoid node:path, which the browser bundle lacks). */
export function joinPath(dir: string, name: string): string {
  return dir === '' ? name : dir.endsWith('/') ? `${dir}${name}` : `${dir}/${name}`;
}

/** The folder of a file path ('' for a bare name). */
export function folderOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : i === 0 ? '/' : path.slice(0, i);
}

/** The first of `paths` that exists. */
export function firstExisting(paths: readonly string[]): string | undefined {
  return paths.find((p) => existsSync(p));
}
