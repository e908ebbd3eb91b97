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

import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { describeFsError } from './errors.js';

/** The folder of a path (node:path's dirname for '/' — and '\\' on Windows — separators; this module is also bundled for the browser, which has no node:path). */
function dirname(path: string): string {
  const windows = typeof process !== 'undefined' && process.platform === 'win32';
  const i = Math.max(path.lastIndexOf('/'), windows ? path.lastIndexOf('\\') : -1);
  return i < 0 ? '.' : i === 0 ? path.slice(0, 1) : path.slice(0, i);
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
 * Writes `chunks` to `path` atomically and durably: nothing is left half-written if anything
 * fails, and what is under `path` afterwards is on the disk.
 */
export function writeFileAtomic(path: string, chunks: Iterable<Uint8Array>): void {
  const tmp = tempPathFor(path);
  let fd: number;
  try {
    fd = openSync(tmp, 'w');
  } catch (err) {
    throw describeFsError(path, err);
  }
  let open = true;
  try {
    for (const chunk of chunks) {
      let done = 0;
      while (done < chunk.byteLength) done += writeSync(fd, chunk, done, chunk.byteLength - done);
    }
    fsyncSync(fd);
    open = false;
    closeSync(fd);
    renameSync(tmp, path);
    fsyncDir(dirname(path));
  } catch (err) {
    if (open) try { closeSync(fd); } catch { /* already closed */ }
    try { unlinkSync(tmp); } catch { /* never created, or already renamed */ }
    throw describeFsError(path, err);
  }
}
