// `node:fs` for the browser bundle. The engine's readers take a path or bytes in memory
// (src/model/file-reader.ts's ModelFile, parseTokenizer); the page only ever gives them bytes, so
// a page has no files: every path is missing and nothing can be written. What remains here is
// what the bundled modules import, each answering as an empty, read-only file system would.

/** An error shaped like Node.js's, so describeFsError can name it. */
function fsError(code: string, path: string): Error {
  return Object.assign(new Error(`${code}: ${path}`), { code });
}

export function openSync(path: string): number {
  throw fsError('ENOENT', path);
}

export function fstatSync(fd: number): never {
  throw fsError('EBADF', `descriptor ${fd}`);
}

export function readSync(fd: number): never {
  throw fsError('EBADF', `descriptor ${fd}`);
}

export function closeSync(): void {}

export function readFileSync(path: string): never {
  throw fsError('ENOENT', path);
}

export function existsSync(): boolean {
  return false;
}

function readOnly(): never {
  throw new Error('files cannot be written in the browser');
}

export const writeSync = readOnly;
export const renameSync = readOnly;
export const fsyncSync = readOnly;
export const mkdirSync = readOnly;
/** No O_NONBLOCK here: files.ts then opens with plain 'r' (the page's files are all in memory). */
export const constants = {};
export const unlinkSync = readOnly;
export const writeFileSync = readOnly;
