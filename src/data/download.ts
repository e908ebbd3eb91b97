// Downloading and unpacking TinyStories, as llama2.c's `tinystories.py download` does:
//   1. fetch TinyStories_all_data.tar.gz from the dataset's Hugging Face repository into DIR/
//   2. unpack its JSON shards (data00.json … data49.json) into DIR/TinyStories_all_data/
//
// The fetch follows redirects (http and https only), shows progress, and resumes: bytes go to
// ARCHIVE.part, a later attempt (after a dropped connection in the same run, or in a new run) asks
// for the rest with an HTTP Range request. A server that ignores Range answers 200 with the whole
// file: the part file is then restarted from byte 0. The final size is checked against
// Content-Length/Content-Range (and a cap, maxBytes) before ARCHIVE.part is flushed to disk and
// renamed to ARCHIVE. A connection that sends nothing for `stallTimeoutMs` is dropped. What a
// retry can fix is retried (dropped or stalled connections, HTTP 5xx, 408, 429, a temporary DNS
// failure); what it cannot (HTTP 4xx, an unknown host, a bad certificate, a bad redirect, a full
// or read-only disk) fails at once.
//
// Unpacking streams the archive through gunzip (node:zlib) and a tar parser (the `tar` package),
// flat: a shard is named by its file name alone, so two entries of one name (a/data00.json and
// b/data00.json) are refused, as are unsafe names. The unpacked size is capped (maxUnpackedBytes)
// and must stay within maxRatio × the compressed bytes read so far (a gzip bomb expands ~1000×,
// JSON text ~5×). Shards are written to hidden temporary files, flushed to disk and renamed into
// place only once the whole archive has been read without error, so a corrupt or truncated archive
// leaves no shard behind; then a completion marker (.complete, the shards' names and sizes) is
// written last. A later run skips unpacking only when that marker is there and every shard it
// lists has its size — a run killed half-way is unpacked again, never taken as a dataset.

import { type WriteStream, createReadStream, createWriteStream, existsSync, readFileSync, readdirSync, renameSync, statSync, unlinkSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { basename, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { FormatError, LlamaError, UsageError, describeFsError, quote } from '../errors.js';
import { commitFile, fsyncDir, fsyncPath, makeDirs, writeFileAtomic } from '../files.js';

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
  /**
   * Extra request headers (an Authorization for a gated model): sent to the URL's own origin
   * only, dropped when a redirect leads elsewhere.
   */
  readonly headers?: Readonly<Record<string, string>>;
  /** Largest file accepted (default 16 GiB): a bigger announced size is refused before downloading. */
  readonly maxBytes?: number;
  /** (bytes in the file so far, expected total or 0 when unknown) */
  readonly onProgress?: (done: number, total: number) => void;
  /** Human-readable notes (resuming, retrying, server ignored Range…). */
  readonly log?: (message: string) => void;
}

/** A failure that retrying will not fix (HTTP 404, a bad redirect, a full disk…). */
class FatalDownloadError extends LlamaError {}

/** The part file was thrown away (the server would not resume it): the next attempt starts over. */
class StartOverError extends LlamaError {}

const MAX_REDIRECTS = 10;
const DEFAULT_MAX_BYTES = 16 * 2 ** 30;

/** Whether another attempt can fix `err` (a connection problem), or not (anything else). */
function retryable(err: unknown): boolean {
  if (err instanceof FatalDownloadError || err instanceof UsageError) return false;
  const code = (err as NodeJS.ErrnoException).code ?? '';
  // an unknown host, a certificate the system does not trust: the same next time
  if (code === 'ENOTFOUND' || code.startsWith('CERT_') || code.startsWith('ERR_TLS_') || /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code)) return false;
  // the disk: full, read-only, not writable, not a folder
  if (['ENOSPC', 'EROFS', 'EACCES', 'EPERM', 'EISDIR', 'ENOTDIR', 'EDQUOT', 'EFBIG'].includes(code)) return false;
  return true;
}

/** HTTP statuses worth another attempt: timeouts, rate limits and server errors. */
function retryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

interface OpenResponse {
  readonly res: http.IncomingMessage;
  readonly req: http.ClientRequest;
}

/** `url` parsed, if http or https. */
function parseHttpUrl(url: string, what: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new FatalDownloadError(`${what} is not a valid URL: ${url}`);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new FatalDownloadError(`${what} has an unsupported scheme '${parsed.protocol}' (only http and https): ${url}`);
  }
  return parsed;
}

/** GET `url` (following redirects), sending `Range: bytes=from-` when from > 0. */
function open(url: string, from: number, stallTimeoutMs: number, extra: Readonly<Record<string, string>> = {}, redirects = 0): Promise<OpenResponse> {
  let parsed: URL;
  try {
    parsed = parseHttpUrl(url, redirects === 0 ? 'the download address' : 'a redirect');
  } catch (err) {
    return Promise.reject(err);
  }
  const lib = parsed.protocol === 'https:' ? https : http;
  const headers: Record<string, string> = { ...extra, 'user-agent': 'llama2ts', 'accept-encoding': 'identity' };
  if (from > 0) headers['range'] = `bytes=${from}-`;
  return new Promise((resolve, reject) => {
    const req = lib.get(parsed, { headers }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location !== undefined) {
        res.resume();
        if (redirects >= MAX_REDIRECTS) return reject(new FatalDownloadError(`${url}: more than ${MAX_REDIRECTS} redirects`));
        let next: string;
        try {
          next = new URL(res.headers.location, parsed).toString();
        } catch {
          return reject(new FatalDownloadError(`${url} redirects to an invalid address: ${quote(res.headers.location)}`));
        }
        // credentials go to the host they were given for, never to where it redirects (a CDN)
        const keep = new URL(next).origin === parsed.origin ? extra : {};
        open(next, from, stallTimeoutMs, keep, redirects + 1).then(resolve, reject);
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
 * One attempt: continues ARCHIVE.part from its current size. Resolves when the file is complete;
 * rejects on a dropped or stalled connection (retryable), or with FatalDownloadError.
 */
async function attempt(url: string, part: string, opts: DownloadOptions): Promise<void> {
  const stall = opts.stallTimeoutMs ?? 30_000;
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  let have = sizeOf(part);
  const { res, req } = await open(url, have, stall, opts.headers);
  const status = res.statusCode ?? 0;
  const startOver = (why: string): StartOverError => {
    res.resume();
    opts.log?.(`${why}; starting over`);
    unlinkSync(part);
    return new StartOverError(why);
  };
  let total = 0;
  let append = false;
  if (status === 416 && have > 0) {
    // nothing left to send: the part file is complete if its size is the server's total
    const range = parseContentRange(res.headers['content-range']);
    if (range !== undefined && range[1] === have) {
      res.resume();
      return;
    }
    throw startOver('the server refused to resume the partial file');
  } else if (status === 206) {
    const range = parseContentRange(res.headers['content-range']);
    if (range === undefined || range[0] !== have) throw startOver('the server answered with a different byte range');
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
    const message = `HTTP ${status} ${res.statusMessage ?? ''}`.trim() + ` for ${url}`;
    if (retryableStatus(status)) throw new LlamaError(`the server answered ${message}`);
    throw new FatalDownloadError(`download failed: ${message}`);
  }
  if (total > maxBytes) {
    res.resume();
    req.destroy();
    throw new FatalDownloadError(`${url} is ${total} bytes, more than the limit of ${maxBytes}`);
  }

  let done = have;
  opts.onProgress?.(done, total);
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      done += chunk.length;
      if (total > 0 && done > total) return cb(new LlamaError(`the server sent more than the announced ${total} bytes`));
      if (done > maxBytes) return cb(new FatalDownloadError(`${url} is more than the limit of ${maxBytes} bytes`));
      opts.onProgress?.(done, total);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(res, counter, createWriteStream(part, { flags: append ? 'a' : 'w' }));
  } catch (err) {
    req.destroy();
    if (err instanceof LlamaError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (!retryable(err)) throw new FatalDownloadError(describeFsError(part, err).message); // the disk, not the connection
    throw new LlamaError(`connection lost after ${done} bytes (${code ?? (err as Error).message})`);
  }
  if (res.complete === false) throw new LlamaError(`connection closed after ${done} bytes`);
  if (total > 0 && done !== total) throw new LlamaError(`connection closed after ${done} of ${total} bytes`);
}

/**
 * Downloads `url` to `dest` atomically and durably: via `dest`.part, flushed to disk and renamed
 * when complete and verified. Retries what a retry can fix, resuming where the last attempt stopped.
 */
export async function downloadFile(url: string, dest: string, opts: DownloadOptions = {}): Promise<void> {
  parseHttpUrl(url, 'the download address');
  const part = `${dest}.part`;
  const attempts = opts.attempts ?? 6;
  if (sizeOf(part) > 0) opts.log?.(`resuming ${part} at ${sizeOf(part)} bytes`);
  for (let n = 1; ; n++) {
    try {
      await attempt(url, part, opts);
      break;
    } catch (err) {
      if (!retryable(err)) throw err instanceof LlamaError ? err : describeFsError(part, err);
      const why = (err as Error).message;
      if (n >= attempts) {
        const resume = sizeOf(part) > 0 ? ` (run again to resume from ${part})` : '';
        throw new LlamaError(`${why}; gave up after ${attempts} attempts${resume}`);
      }
      if (!(err instanceof StartOverError)) opts.log?.(`${why}; retrying (attempt ${n + 1} of ${attempts})`);
      await new Promise((r) => setTimeout(r, n * (opts.retryDelayMs ?? 1000)));
    }
  }
  commitFile(part, dest);
}

const TMP_MARK = '.partial-';
/** Written into the shard folder last, once every shard is in place: what a later run trusts. */
export const COMPLETE_MARKER = '.complete';
/** A shard's name: plain letters, digits, '-', '_' and '.', ending in .json (never a path). */
const SHARD_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*\.json$/;

export interface ExtractOptions {
  /** (compressed bytes read, archive size) */
  readonly onProgress?: (bytesRead: number, total: number) => void;
  /** Most bytes unpacked in all (default 64 GiB). */
  readonly maxUnpackedBytes?: number;
  /** Most unpacked bytes per compressed byte read so far (default 100; gzip's limit is ~1032). */
  readonly maxRatio?: number;
  /** Most files in the archive (default 10,000). */
  readonly maxEntries?: number;
}

interface Marker {
  readonly shards: ReadonlyArray<{ readonly name: string; readonly bytes: number }>;
}

/**
 * The shards of a folder that a complete unpacking left (its completion marker, every shard
 * listed there present with its size), or undefined.
 */
export function completeShards(outDir: string): string[] | undefined {
  let marker: Marker;
  try {
    marker = JSON.parse(readFileSync(join(outDir, COMPLETE_MARKER), 'utf8')) as Marker;
  } catch {
    return undefined;
  }
  if (!Array.isArray(marker.shards) || marker.shards.length === 0) return undefined;
  for (const s of marker.shards) {
    if (typeof s?.name !== 'string' || !SHARD_NAME.test(s.name) || sizeOf(join(outDir, s.name)) !== s.bytes) return undefined;
  }
  return marker.shards.map((s) => s.name).sort();
}

/**
 * Unpacks the *.json files of a .tar.gz into `outDir` (flat: directories inside the archive are
 * dropped; two files of one name are an error). Returns the shard names, sorted. Nothing is left
 * in `outDir` if the archive is bad; the completion marker is written last.
 */
export async function extractShards(archive: string, outDir: string, options: ExtractOptions = {}): Promise<string[]> {
  const archiveBytes = sizeOf(archive);
  const maxUnpacked = options.maxUnpackedBytes ?? 64 * 2 ** 30;
  const maxRatio = options.maxRatio ?? 100;
  const maxEntries = options.maxEntries ?? 10_000;
  makeDirs(outDir);
  try {
    // a marker from before no longer vouches for this folder; temporaries of a run killed mid-way
    unlinkSync(join(outDir, COMPLETE_MARKER));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw describeFsError(outDir, err);
  }
  try {
    for (const f of readdirSync(outDir)) if (f.startsWith('.') && f.includes(TMP_MARK)) unlinkSync(join(outDir, f));
  } catch (err) {
    throw describeFsError(outDir, err);
  }
  const temps: Array<[string, string]> = []; // [temporary, final]
  const seen = new Map<string, string>(); // shard name → its path in the archive
  const writes: Array<Promise<void>> = [];
  const streams: WriteStream[] = [];
  let entries = 0;
  let refused: Error | undefined;
  const refuse = (why: string): void => {
    refused ??= new FormatError(archive, why);
    source.destroy(refused);
  };
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      if (++entries > maxEntries) refuse(`more than ${maxEntries} files in the archive`);
      const name = basename(entry.path);
      if (refused !== undefined || entry.type !== 'File' || !name.endsWith('.json') || name.startsWith('.')) {
        entry.resume();
        return;
      }
      if (!SHARD_NAME.test(name)) {
        refuse(`unsafe shard name ${quote(entry.path)}`);
        entry.resume();
        return;
      }
      const earlier = seen.get(name);
      if (earlier !== undefined) {
        refuse(`two files are named ${name} (${earlier} and ${entry.path}); the archive is not a flat set of shards`);
        entry.resume();
        return;
      }
      seen.set(name, entry.path);
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
  let unpacked = 0;
  const source = createReadStream(archive);
  source.on('data', (chunk) => {
    read += chunk.length;
    options.onProgress?.(read, archiveBytes);
  });
  // the gzip bomb guard, on gunzip's output
  const guard = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      unpacked += chunk.length;
      if (unpacked > maxUnpacked) return cb(new FormatError(archive, `unpacks to more than ${maxUnpacked} bytes`));
      if (unpacked > maxRatio * read + (1 << 20)) {
        return cb(new FormatError(archive, `unpacks to more than ${maxRatio} times its compressed size (${unpacked} bytes from ${read}): a gzip bomb, not a dataset`));
      }
      cb(null, chunk);
    },
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
    await pipeline(source, createGunzip(), guard, parser as unknown as NodeJS.WritableStream);
    await Promise.all(writes);
    if (refused !== undefined) throw refused;
  } catch (caught) {
    const err = refused ?? caught;
    // stop the open write streams and let them settle before deleting what they wrote
    for (const out of streams) if (!out.writableFinished) out.destroy();
    await Promise.allSettled(writes);
    removeTemps();
    if (err instanceof FormatError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT' && e.path === archive) throw describeFsError(archive, err);
    if (e.code === 'ENOSPC' || e.code === 'EACCES' || e.code === 'EROFS') throw describeFsError(outDir, err);
    const why = e.code === 'Z_DATA_ERROR' || e.code === 'Z_BUF_ERROR' ? `not a valid gzip stream (${e.message})` : e.message.replace(/^TAR_\w+: /, '');
    throw new FormatError(archive, `corrupt archive: ${why}; delete it and download again`);
  }
  if (temps.length === 0) throw new FormatError(archive, 'the archive holds no .json shards');
  // on disk before they get their names; the marker last, once every name is on disk too
  try {
    for (const [tmp] of temps) fsyncPath(tmp);
    for (const [tmp, final] of temps) renameSync(tmp, final);
    fsyncDir(outDir);
  } catch (err) {
    removeTemps();
    throw describeFsError(outDir, err);
  }
  const shards = temps.map(([, final]) => ({ name: basename(final), bytes: sizeOf(final) })).sort((a, b) => (a.name < b.name ? -1 : 1));
  writeFileAtomic(join(outDir, COMPLETE_MARKER), [Buffer.from(JSON.stringify({ archive: basename(archive), shards } satisfies Marker & { archive: string }) + '\n')]);
  return shards.map((s) => s.name);
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
  makeDirs(dir);
  const archive = join(dir, TINYSTORIES_ARCHIVE); // whatever the URL's file is called
  let downloaded = false;
  if (existsSync(archive)) opts.log?.(`${archive} already exists, skipping download`);
  else {
    await downloadFile(url, archive, opts);
    downloaded = true;
  }
  const shardDir = join(dir, TINYSTORIES_DIR);
  const complete = completeShards(shardDir);
  if (complete !== undefined) {
    opts.log?.(`${shardDir} already has its ${complete.length} shards, skipping unpacking`);
    return { archive, shardDir, shards: complete, downloaded, extracted: false };
  }
  if (existsSync(shardDir) && readdirSync(shardDir).some((f) => f.endsWith('.json') && !f.startsWith('.'))) {
    opts.log?.(`${shardDir} has shards but no completion marker (an earlier unpacking did not finish): unpacking again`);
  }
  const shards = await extractShards(archive, shardDir, { ...(opts.onExtract ? { onProgress: opts.onExtract } : {}) });
  return { archive, shardDir, shards, downloaded, extracted: true };
}
