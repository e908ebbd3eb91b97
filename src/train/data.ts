// Training data: pretokenized uint16 token files (the TinyStories layout of llama2.c's
// tinystories.py: each *.bin is a flat little-endian array of uint16 token ids, stories joined
// with BOS before each). A data folder's validation shards are the files given with --val, else
// those named val*.bin (val.bin, valid.bin, validation.bin …), else data00.bin (tinystories.py
// validates on shard 0); the other shards train. Or explicit --train / --val file lists.
//
// Windows: each file is cut into non-overlapping windows of T+1 tokens starting at multiples of
// T (x = window[0..T), y = window[1..T]). The sampler visits every training window once per
// epoch in a shuffled order, as the reference PretokDataset does; the order of epoch e comes
// from a generator seeded with (seed, e), so the sampler's whole state is (epoch, cursor) and a
// resumed run draws the same batches as an uninterrupted one. Files are read window by window
// (never loaded whole); every token is checked against the vocabulary once, up front.

import { closeSync, readdirSync, readSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { describeFsError, FormatError, UsageError } from '../errors.js';
import { openForReading } from '../files.js';
import { Rng } from './rng.js';

/** An open token file. */
export interface TokenFile {
  readonly path: string;
  readonly fd: number;
  /** Number of uint16 tokens. */
  readonly tokens: number;
}

/** Opens a token file and checks it: even size, every id < vocabSize. */
export function openTokenFile(path: string, vocabSize: number): TokenFile {
  const { fd, size } = openForReading(path);
  if (size % 2 !== 0) {
    closeSync(fd);
    throw new FormatError(path, `not a uint16 token file: odd size ${size} bytes`);
  }
  // Validate every token once (in 1 MiB chunks).
  const chunk = new Uint16Array(1 << 19);
  const bytes = new Uint8Array(chunk.buffer);
  for (let pos = 0; pos < size; ) {
    const n = readSync(fd, bytes, 0, Math.min(bytes.length, size - pos), pos);
    if (n <= 0) {
      closeSync(fd);
      throw new FormatError(path, 'unexpected end of file');
    }
    for (let i = 0; i < n / 2; i++) {
      if (chunk[i]! >= vocabSize) {
        closeSync(fd);
        throw new FormatError(path, `token ${chunk[i]} at position ${pos / 2 + i} is outside the vocabulary (vocab_size ${vocabSize})`);
      }
    }
    pos += n;
  }
  return { path, fd, tokens: size / 2 };
}

export function closeTokenFile(f: TokenFile): void {
  try { closeSync(f.fd); } catch { /* already closed */ }
}

/** Reads tokens [start, start + dst.length) of a file into dst. */
export function readTokens(f: TokenFile, start: number, dst: Uint16Array): void {
  const bytes = new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength);
  let done = 0;
  while (done < bytes.length) {
    const n = readSync(f.fd, bytes, done, bytes.length - done, 2 * start + done);
    if (n <= 0) throw new FormatError(f.path, `unexpected end of file at token ${start + done / 2}`);
    done += n;
  }
}

/** Training and validation files, and how the validation files were chosen (printed at start). */
export interface DataChoice {
  readonly train: string[];
  readonly val: string[];
  readonly how: string;
}

/**
 * The shards (*.bin) of a data folder, split into training and validation: validation is `val`
 * when given (files inside the folder then leave the training set), else the shards named val*,
 * else data00.bin (TinyStories); with none of these it asks for --val.
 */
export function splitDataFolder(dir: string, val?: readonly string[]): DataChoice {
  let names: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new UsageError(`--data ${dir}: not a folder`);
    names = readdirSync(dir).filter((n) => n.endsWith('.bin') && !n.startsWith('.')).sort();
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw describeFsError(dir, err);
  }
  const paths = names.map((n) => join(dir, n));
  let valFiles: string[];
  let how: string;
  if (val !== undefined && val.length > 0) {
    valFiles = [...val];
    how = 'given with --val';
  } else if (names.some((n) => /^val/i.test(n))) {
    valFiles = paths.filter((p) => /^val/i.test(basename(p)));
    how = 'named val*';
  } else if (names.includes('data00.bin')) {
    valFiles = [join(dir, 'data00.bin')];
    how = 'data00.bin, as TinyStories does';
  } else {
    throw new UsageError(`--data ${dir}: which shard is validation? None is named val*.bin or data00.bin; give --val FILE`);
  }
  const valSet = new Set(valFiles.map((p) => resolve(p)));
  const train = paths.filter((p) => !valSet.has(resolve(p)));
  if (train.length === 0) throw new UsageError(`--data ${dir}: no training shard left (${names.length} *.bin, all validation)`);
  return { train, val: valFiles, how };
}

/** Number of windows of T+1 tokens, starting at multiples of T, in a file of `tokens` tokens. */
export function windowCount(tokens: number, T: number): number {
  return tokens > T ? Math.floor((tokens - 1) / T) : 0;
}

export interface SamplerState {
  readonly epoch: number;
  readonly cursor: number;
}

/** Draws batches of B windows of T+1 tokens from a set of token files, in shuffled epochs. */
export class BatchSampler {
  readonly B: number;
  readonly T: number;
  readonly windows: number;
  private readonly files: readonly TokenFile[];
  /** First global window index of each file, and one past the last. */
  private readonly firstWindow: Int32Array;
  private readonly order: Uint32Array;
  private readonly window: Uint16Array;
  private epoch = -1;
  private cursor = 0;

  constructor(files: readonly TokenFile[], B: number, T: number, readonly seed: number) {
    this.B = B;
    this.T = T;
    this.files = files;
    this.firstWindow = new Int32Array(files.length + 1);
    files.forEach((f, i) => {
      this.firstWindow[i + 1] = this.firstWindow[i]! + windowCount(f.tokens, T);
    });
    this.windows = this.firstWindow[files.length]!;
    if (this.windows === 0) {
      throw new FormatError(files.map((f) => f.path).join(', '), `too short: no window of ${T + 1} tokens (max_seq_len ${T} + 1)`);
    }
    this.order = new Uint32Array(this.windows);
    this.window = new Uint16Array(T + 1);
    this.setState({ epoch: 0, cursor: 0 });
  }

  /** Shuffles the window order of epoch e (Fisher–Yates with a generator seeded by seed and e). */
  private shuffle(e: number): void {
    const rng = new Rng(this.seed * 1000003 + e);
    for (let i = 0; i < this.windows; i++) this.order[i] = i;
    for (let i = this.windows - 1; i > 0; i--) {
      const j = rng.nextInt(i + 1);
      const t = this.order[i]!;
      this.order[i] = this.order[j]!;
      this.order[j] = t;
    }
    this.epoch = e;
  }

  /** Reads window `w` (global index) into x[offset..offset+T), y[offset..offset+T). */
  readWindow(w: number, x: Int32Array, y: Int32Array, offset: number): void {
    let f = 0;
    while (w >= this.firstWindow[f + 1]!) f++;
    const T = this.T;
    readTokens(this.files[f]!, (w - this.firstWindow[f]!) * T, this.window);
    for (let t = 0; t < T; t++) {
      x[offset + t] = this.window[t]!;
      y[offset + t] = this.window[t + 1]!;
    }
  }

  /** Fills x and y (B·T each) with the next B windows. */
  next(x: Int32Array, y: Int32Array): void {
    for (let b = 0; b < this.B; b++) {
      if (this.cursor >= this.windows) {
        this.shuffle(this.epoch + 1);
        this.cursor = 0;
      }
      this.readWindow(this.order[this.cursor++]!, x, y, b * this.T);
    }
  }

  getState(): SamplerState {
    return { epoch: this.epoch, cursor: this.cursor };
  }

  setState(s: SamplerState): void {
    if (!Number.isInteger(s.epoch) || s.epoch < 0 || !Number.isInteger(s.cursor) || s.cursor < 0 || s.cursor > this.windows) {
      throw new RangeError(`bad sampler state ${JSON.stringify(s)}`);
    }
    if (s.epoch !== this.epoch) this.shuffle(s.epoch);
    this.cursor = s.cursor;
  }
}
