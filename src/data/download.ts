// Downloading and unpacking TinyStories, as llama2.c's `tinystories.py download` does:
//   1. fetch TinyStories_all_data.tar.gz from the dataset's Hugging Face repository into DIR/
//   2. unpack its JSON shards (data00.json … data49.json) into DIR/TinyStories_all_data/
//
// The fetch follows redirects, shows progress, and resumes: bytes go to ARCHIVE.part, a later
// attempt (after a dropped connection in the same run, or in a new run) asks for the rest with an
// HTTP Range request. A server that ignores Range answers 200 with the whole file: the part file
// is then restarted from byte 0. The final size is checked against Content-Length/Content-Range
// before ARCHIVE.part is renamed to ARCHIVE. A connection that sends nothing for `stallTimeoutMs`
// is dropped and retried.
//
// Unpacking streams the archive through gunzip (node:zlib) and a tar parser (the `tar` package).
// Shards are written to hidden temporary files and renamed into place only once the whole archive
// has been read without error, so a corrupt or truncated archive leaves no shard behind.

import { type WriteStream, createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, renameSync, statSync, unlinkSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { basename, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { FormatError, LlamaError, UsageError, describeFsError } from '../errors.js';

export const TINYSTORIES_URL = 'https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/TinyStories_all_data.tar.gz';
export const TINYSTORIES_DIR = 'TinyStories_all_data';
export const TINYSTORIES_ARCHIVE = 'TinyStories_all_data.tar.gz';

export interface DownloadOptions {
  /** Drop a connection that delivers no data for this long (default 30 s). */
  readonly stallTimeoutMs?: number;
  /** Attempts in total before giving up (default 6); each retry resumes where the last stopped. */
  readonly attempts?: number;
  /** Wait before retry n is n × this (default 1 s). */
  readonly retryDelayMs?: number;
  /** (bytes in the file so far, expected total or 0 when unknown) */
  readonly onProgress?: (done: number, total: number) => void;
  /** Human-readable notes (resuming, retrying, server ignored Range…). */
  readonly log?: (message: string) => void;
}

/** An HTTP failure that retrying will not fix (404, 403…). */
class HttpStatusError extends LlamaError {}

const MAX_REDIRECTS = 10;

interface OpenResponse {
  readonly res: http.IncomingMessage;
  readonly req: http.ClientRequest;
}

/** GET `url` (following redirects), sending `Range: bytes=from-` when from > 0. */
function open(url: string, from: number, stallTimeoutMs: number, redirects = 0): Promise<OpenResponse> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`not a valid URL: ${url}`);
  }
  const lib = parsed.protocol === 'https:' ? https : parsed.protocol === 'http:' ? http : undefined;
  if (lib === undefined) throw new UsageError(`unsupported URL scheme '${parsed.protocol}' (use http or https): ${url}`);
  const headers: Record<string, string> = { 'user-agent': 'llama2ts', 'accept-encoding': 'identity' };
  if (from > 0) headers['range'] = `bytes=${from}-`;
  return new Promise((resolve, reject) => {
    const req = lib.get(parsed, { headers }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location !== undefined) {
        res.resume();
        if (redirects >= MAX_REDIRECTS) return reject(new LlamaError(`${url}: too many redirects`));
        const next = new URL(res.headers.location, parsed).toString();
        open(next, from, stallTimeoutMs, redirects + 1).then(resolve, reject);
        return;
      }
      resolve({ res, req });
    });
    req.setTimeout(stallTimeoutMs, () => req.destroy(new LlamaError(`no data from ${parsed.host} for ${stallTimeoutMs / 1000}s (connection stalled)`)));
    req.on('error', reject);
  });
}

/** `bytes START-END/TOTAL` → [START, TOTAL] (TOTAL -1 when '*'). */
function parseContentRange(value: string | undefined): [number, number] | undefined {
  const m = /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(value ?? '');
  if (m === null) return undefined;
  return [Number(m[1]), m[3] === '*' ? -1 : Number(m[3])];
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/**
 * One attempt: continues ARCHIVE.part from its current size. Resolves with true when the file is
 * complete; rejects on a dropped or stalled connection (retryable) or an HTTP error (not).
 */
async function attempt(url: string, part: string, opts: DownloadOptions): Promise<void> {
  const stall = opts.stallTimeoutMs ?? 30_000;
  let have = sizeOf(part);
  const { res, req } = await open(url, have, stall);
  const status = res.statusCode ?? 0;
  let total = 0;
  let append = false;
  if (status === 416 && have > 0) {
    // nothing left to send: the part file is complete if its size is the server's total
    res.resume();
    const range = parseContentRange(res.headers['content-range']);
    if (range !== undefined && range[1] === have) return;
    opts.log?.('server refused to resume this partial file; starting over');
    unlinkSync(part);
    throw new LlamaError('restart');
  } else if (status === 206) {
    const range = parseContentRange(res.headers['content-range']);
    if (range === undefined || range[0] !== have) {
      res.resume();
      opts.log?.('server answered with a different byte range; starting over');
      unlinkSync(part);
      throw new LlamaError('restart');
    }
    total = range[1] > 0 ? range[1] : 0;
    append = true;
  } else if (status === 200) {
    if (have > 0) opts.log?.('server ignored the resume request (HTTP 200); downloading from the start');
    have = 0;
    const length = Number(res.headers['content-length']);
    total = Number.isFinite(length) && length > 0 ? length : 0;
  } else {
    res.resume();
    req.destroy();
    throw new HttpStatusError(`download failed: HTTP ${status} ${res.statusMessage ?? ''} for ${url}`.replace(/\s+for/, ' for'));
  }

  let done = have;
  opts.onProgress?.(done, total);
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      done += chunk.length;
      if (total > 0 && done > total) return cb(new LlamaError(`server sent more than the announced ${total} bytes`));
      opts.onProgress?.(done, total);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(res, counter, createWriteStream(part, { flags: append ? 'a' : 'w' }));
  } catch (err) {
    req.destroy();
    throw err instanceof LlamaError ? err : new LlamaError(`connection lost after ${done} bytes (${(err as Error).message})`);
  }
  if (res.complete === false) throw new LlamaError(`connection closed after ${done} bytes`);
  if (total > 0 && done !== total) throw new LlamaError(`connection closed after ${done} of ${total} bytes`);
}

/** Downloads `url` to `dest` (atomically: via `dest`.part, renamed when complete and verified). */
export async function downloadFile(url: string, dest: string, opts: DownloadOptions = {}): Promise<void> {
  const part = `${dest}.part`;
  const attempts = opts.attempts ?? 6;
  if (sizeOf(part) > 0) opts.log?.(`resuming ${part} at ${sizeOf(part)} bytes`);
  for (let n = 1; ; n++) {
    try {
      await attempt(url, part, opts);
      break;
    } catch (err) {
      if (err instanceof HttpStatusError || err instanceof UsageError) throw err;
      if (n >= attempts) {
        throw new LlamaError(`${(err as Error).message}; gave up after ${attempts} attempts (run again to resume from ${part})`);
      }
      if ((err as Error).message !== 'restart') opts.log?.(`${(err as Error).message}; retrying (${n + 1}/${attempts})`);
      await new Promise((r) => setTimeout(r, n * (opts.retryDelayMs ?? 1000)));
    }
  }
  try {
    renameSync(part, dest);
  } catch (err) {
    throw describeFsError(dest, err);
  }
}

const TMP_MARK = '.partial-';

/**
 * Unpacks the *.json files of a .tar.gz into `outDir` (flat: directories inside the archive are
 * dropped). Returns the shard names, sorted. Nothing is left in `outDir` if the archive is bad.
 */
export async function extractShards(archive: string, outDir: string, onProgress?: (bytesRead: number, total: number) => void): Promise<string[]> {
  const archiveBytes = sizeOf(archive);
  try {
    mkdirSync(outDir, { recursive: true });
    // temporaries of an earlier run that was killed mid-way
    for (const f of readdirSync(outDir)) if (f.startsWith('.') && f.includes(TMP_MARK)) unlinkSync(join(outDir, f));
  } catch (err) {
    throw describeFsError(outDir, err);
  }
  const temps: Array<[string, string]> = []; // [temporary, final]
  const writes: Array<Promise<void>> = [];
  const streams: WriteStream[] = [];
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      const name = basename(entry.path);
      if (entry.type !== 'File' || !name.endsWith('.json') || name.startsWith('.')) {
        entry.resume();
        return;
      }
      const tmp = join(outDir, `.${name}${TMP_MARK}${process.pid}`);
      temps.push([tmp, join(outDir, name)]);
      const out = createWriteStream(tmp);
      streams.push(out);
      writes.push(new Promise<void>((resolve, reject) => {
        out.on('finish', resolve);
        out.on('close', () => (out.writableFinished ? resolve() : reject(new Error(`${name}: not completely written`))));
        out.on('error', reject);
        entry.on('error', reject);
      }));
      entry.pipe(out);
    },
  });
  let read = 0;
  const source = createReadStream(archive);
  source.on('data', (chunk) => {
    read += chunk.length;
    onProgress?.(read, archiveBytes);
  });
  const removeTemps = (): void => {
    for (const [tmp] of temps) {
      try {
        unlinkSync(tmp);
      } catch {
        // never created, or already gone
      }
    }
  };
  try {
    await pipeline(source, createGunzip(), parser as unknown as NodeJS.WritableStream);
    await Promise.all(writes);
  } catch (err) {
    // stop the open write streams and let them settle before deleting what they wrote
    for (const out of streams) if (!out.writableFinished) out.destroy();
    await Promise.allSettled(writes);
    removeTemps();
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT' && e.path === archive) throw describeFsError(archive, err);
    if (e.code === 'ENOSPC' || e.code === 'EACCES') throw describeFsError(outDir, err);
    const why = e.code === 'Z_DATA_ERROR' || e.code === 'Z_BUF_ERROR' ? `not a valid gzip stream (${e.message})` : e.message.replace(/^TAR_\w+: /, '');
    throw new FormatError(archive, `corrupt archive: ${why}; delete it and download again`);
  }
  if (temps.length === 0) throw new FormatError(archive, 'the archive holds no .json shards');
  for (const [tmp, final] of temps) {
    try {
      renameSync(tmp, final);
    } catch (err) {
      removeTemps();
      throw describeFsError(final, err);
    }
  }
  return temps.map(([, f]) => basename(f)).sort();
}

export interface TinyStoriesResult {
  readonly archive: string;
  readonly shardDir: string;
  readonly shards: string[];
  readonly downloaded: boolean;
  readonly extracted: boolean;
}

/** `download tinystories`: fetch the archive into `dir` unless present, unpack unless unpacked. */
export async function downloadTinyStories(dir: string, url: string, opts: DownloadOptions & { onExtract?: (read: number, total: number) => void } = {}): Promise<TinyStoriesResult> {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw describeFsError(dir, err);
  }
  const archive = join(dir, TINYSTORIES_ARCHIVE); // whatever the URL's file is called
  let downloaded = false;
  if (existsSync(archive)) opts.log?.(`${archive} already exists, skipping download`);
  else {
    await downloadFile(url, archive, opts);
    downloaded = true;
  }
  const shardDir = join(dir, TINYSTORIES_DIR);
  const existing = existsSync(shardDir) ? readdirSync(shardDir).filter((f) => f.endsWith('.json') && !f.startsWith('.')).sort() : [];
  if (existing.length > 0) {
    opts.log?.(`${shardDir} already has ${existing.length} shards, skipping unpacking`);
    return { archive, shardDir, shards: existing, downloaded, extracted: false };
  }
  const shards = await extractShards(archive, shardDir, opts.onExtract);
  return { archive, shardDir, shards, downloaded, extracted: true };
}
