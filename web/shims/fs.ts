// `node:fs` for the browser bundle: the few synchronous calls the checkpoint and tokenizer readers
// make, served from an in-memory table of files. The page fetches a model and a tokenizer, puts
// their bytes here under a name (putFile), and the unchanged readers (src/model/checkpoint.ts,
// src/tokenizer) parse them as if from disk — with the same size checks and error messages.
// Writing is not possible in a page: those calls throw.

/** Files by path. */
const files = new Map<string, Uint8Array>();
/** Open descriptors: the file each one reads. */
const open = new Map<number, { path: string; bytes: Uint8Array }>();
let nextFd = 3;

/** Makes `bytes` readable as `path`. */
export function putFile(path: string, bytes: Uint8Array): void {
  files.set(path, bytes);
}

/** Forgets `path` (its bytes can be garbage-collected once no descriptor reads them). */
export function removeFile(path: string): void {
  files.delete(path);
}

/** An error shaped like Node.js's, so describeFsError can name it. */
function fsError(code: string, path: string): Error {
  return Object.assign(new Error(`${code}: ${path}`), { code });
}

function fileOf(fd: number): { path: string; bytes: Uint8Array } {
  const f = open.get(fd);
  if (f === undefined) throw fsError('EBADF', `descriptor ${fd}`);
  return f;
}

export function openSync(path: string, flags = 'r'): number {
  if (flags !== 'r') throw fsError('EROFS', path);
  const bytes = files.get(path);
  if (bytes === undefined) throw fsError('ENOENT', path);
  const fd = nextFd++;
  open.set(fd, { path, bytes });
  return fd;
}

export function fstatSync(fd: number): { size: number; isDirectory(): boolean; isFile(): boolean } {
  const { bytes } = fileOf(fd);
  return { size: bytes.byteLength, isDirectory: () => false, isFile: () => true };
}

/** Copies up to `length` bytes at `position` into buffer[offset…]; returns the count (0 at the end). */
export function readSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number {
  const { bytes } = fileOf(fd);
  const n = Math.max(0, Math.min(length, bytes.byteLength - position));
  buffer.set(bytes.subarray(position, position + n), offset);
  return n;
}

export function closeSync(fd: number): void {
  open.delete(fd);
}

export function readFileSync(path: string): Uint8Array {
  const bytes = files.get(path);
  if (bytes === undefined) throw fsError('ENOENT', path);
  return bytes;
}

export function existsSync(path: string): boolean {
  return files.has(path);
}

function readOnly(): never {
  throw new Error('files cannot be written in the browser');
}

export const writeSync = readOnly;
export const renameSync = readOnly;
export const fsyncSync = readOnly;
export const unlinkSync = readOnly;
export const writeFileSync = readOnly;
