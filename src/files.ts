// Files the project writes and reads.
//
// Reading: openForReading / readWholeFile open only regular files. A FIFO named as a model would
// make the open wait forever for a writer, a device (/dev/zero) would never end: the open does not
// wait (O_NONBLOCK, which changes nothing for a regular file) and anything but a file is refused.
//
// Durable writes: a file that appears under its final name has reached the disk first.
//
// Renaming a finished temporary file over the final name is atomic — a reader sees the old file
// or the new one, never half of one — but on its own not durable: the file's data may still be in
// the page cache when the rename is, and after a power loss the final name can point at an empty
// or partial file (ext4's delayed allocation, XFS). What survives a power loss, in this order:
//
//   1. write the temporary file (same folder as the final name, so the rename stays in one file system)
//   2. fsync it                       its data and size are on disk
//   3. rename it over the final name
//   4. fsync the folder               the rename (an entry of the folder) is on disk
//
// Every file this project renames into place — checkpoints, exported models and tokenizers,
// token shards, downloads and their unpacked shards — goes through commitFile or writeFileAtomic.

import { closeSync, constants, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { LlamaError, describeFsError } from './errors.js';

/** The folder of a path (node:path's dirname for '/' — and '\\' on Windows — separators; this module is also bundled for the browser, which has no node:path). */
function dirname(path: string): string {
  const windows = typeof process !== 'undefined' && process.platform === 'win32';
  const i = Math.max(path.lastIndexOf('/'), windows ? path.lastIndexOf('\\') : -1);
  return i < 0 ? '.' : i === 0 ? path.slice(0, 1) : path.slice(0, i);
}

/** Flags of an open for reading that does not wait (a FIFO without a writer); plain 'r' where unknown (Windows, the browser shim). */
const READ_NOW: number | string = typeof constants?.O_NONBLOCK === 'number' ? constants.O_RDONLY | constants.O_NONBLOCK : 'r';

/** What a path is, when not a regular file. */
function kindOf(st: { isDirectory(): boolean; isFIFO?(): boolean; isSocket?(): boolean; isCharacterDevice?(): boolean; isBlockDevice?(): boolean }): string {
  if (st.isDirectory()) return 'is a directory';
  if (st.isFIFO?.()) return 'is a FIFO (named pipe)';
  if (st.isSocket?.()) return 'is a socket';
  if (st.isCharacterDevice?.() || st.isBlockDevice?.()) return 'is a device';
  return 'is not a regular file';
}

/**
 * Opens `path` for reading: a regular file's descriptor and size, or a one-line LlamaError (no
 * such file, permission denied, a folder, a FIFO, a device…). The caller closes the descriptor.
 */
export function openForReading(path: string): { fd: number; size: number } {
  const { fd, isDirectory, size } = openFileOrFolder(path);
  if (isDirectory) {
    closeSync(fd);
    throw new LlamaError(`${path}: is a directory, expected a file`);
  }
  return { fd, size };
}

/**
 * Opens a regular file or a folder for reading (a model can be either): its descriptor, what it
 * is, its size. Anything else (a FIFO, a device, a socket) is refused without waiting.
 */
export function openFileOrFolder(path: string): { fd: number; isDirectory: boolean; size: number } {
  let fd: number;
  try {
    fd = openSync(path, READ_NOW);
  } catch (err) {
    throw describeFsError(path, err);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() && !st.isDirectory()) throw new LlamaError(`${path}: ${kindOf(st)}, expected a file`);
    return { fd, isDirectory: st.isDirectory(), size: st.size };
  } catch (err) {
    closeSync(fd);
    throw describeFsError(path, err);
  }
}

/** The whole of a regular file (see openForReading). */
export function readWholeFile(path: string): Uint8Array {
  const { fd, size } = openForReading(path);
  try {
    const bytes = new Uint8Array(size);
    let done = 0;
    while (done < size) {
      const n = readSync(fd, bytes, done, size - done, done);
      if (n <= 0) break; // the file shrank meanwhile
      done += n;
    }
    return done === size ? bytes : bytes.subarray(0, done);
  } catch (err) {
    throw describeFsError(path, err);
  } finally {
    closeSync(fd);
  }
}

/**
 * mkdir -p, with the real reason when it fails: Node.js's recursive mkdir reports ENOENT ("no
 * such file") for a folder it cannot create on a read-only file system, so on failure the first
 * missing folder is made alone to learn the true error (EROFS, EACCES, ENOTDIR…).
 */
export function makeDirs(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw describeFsError(dir, err);
    let missing = dir;
    for (let parent = dirname(missing); parent !== missing && !existsSync(parent); parent = dirname(parent)) missing = parent;
    try {
      mkdirSync(missing);
    } catch (inner) {
      throw describeFsError(dir, inner);
    }
    throw describeFsError(dir, err);
  }
}

/** A temporary name beside `path` (name.tmp-PID-TIME), in the same folder. */
export function tempPathFor(path: string): string {
  return `${path}.tmp-${process.pid}-${Date.now()}`;
}

/** Flushes a file's data, or a folder's entries, to the disk. */
export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Flushes a folder's entries (a rename into it). Some file systems cannot fsync a folder
 * (EINVAL, EISDIR on some platforms, EPERM/EACCES when it cannot be opened): there the rename is
 * as durable as the system makes it, and that is not an error.
 */
export function fsyncDir(dir: string): void {
  try {
    fsyncPath(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'EACCES' && code !== 'ENOTSUP') throw err;
  }
}

/** Puts a finished temporary file in place durably: fsync it, rename it to `final`, fsync the folder. */
export function commitFile(tmp: string, final: string): void {
  try {
    fsyncPath(tmp);
    renameSync(tmp, final);
    fsyncDir(dirname(final));
  } catch (err) {
    throw describeFsError(final, err);
  }
}

/**
 * A file written under a temporary name beside `path` (tempPathFor), put in place by commit()
 * (commitFile: fsync, rename, fsync of the folder) or removed by abort(): nothing at `path`
 * changes until commit. Errors name `path` (describeFsError).
 */
export class TempFile {
  private readonly tmp: string;
  private readonly fd: number;
  private open = true;
  /** Bytes written so far by write() (writeAt() does not move it). */
  position = 0;

  constructor(readonly path: string) {
    this.tmp = tempPathFor(path);
    try {
      this.fd = openSync(this.tmp, 'w');
    } catch (err) {
      throw describeFsError(path, err);
    }
  }

  /** Appends `bytes`. */
  write(bytes: Uint8Array): void {
    this.writeAt(bytes, this.position);
    this.position += bytes.byteLength;
  }

  /** Writes `bytes` at byte `at` (a header patched once its contents are known). */
  writeAt(bytes: Uint8Array, at: number): void {
    try {
      let done = 0;
      while (done < bytes.byteLength) done += writeSync(this.fd, bytes, done, bytes.byteLength - done, at + done);
    } catch (err) {
      throw describeFsError(this.path, err);
    }
  }

  commit(): void {
    this.open = false;
    try {
      closeSync(this.fd);
    } catch (err) {
      throw describeFsError(this.path, err);
    }
    commitFile(this.tmp, this.path);
  }

  /** Removes the temporary file (nothing at `path` changes). */
  abort(): void {
    if (this.open) try { closeSync(this.fd); } catch { /* already closed */ }
    this.open = false;
    try { unlinkSync(this.tmp); } catch { /* never created, or already renamed */ }
  }
}

/**
 * Writes `chunks` to `path` atomically and durably: nothing is left half-written if anything
 * fails, and what is under `path` afterwards is on the disk.
 */
export function writeFileAtomic(path: string, chunks: Iterable<Uint8Array>): void {
  const file = new TempFile(path);
  try {
    for (const chunk of chunks) file.write(chunk);
    file.commit();
  } catch (err) {
    file.abort();
    throw describeFsError(path, err);
  }
}
