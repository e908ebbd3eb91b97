// The training checkpoint: everything a run needs to continue exactly where it stopped.
// Written atomically and durably (files.ts writeFileAtomic: temp file, fsync, rename), so a run killed
// at any moment leaves either the previous checkpoint or the new one, never half of one.
//
// Layout (little-endian):
//   0   8 bytes   magic "L2TSCKPT"
//   8   uint32    version = 1
//   12  uint32    J = byte length of the JSON state
//   16  J bytes   JSON (UTF-8): TrainState — model config, training settings, the data files
//                 and tokenizer, iteration, AdamW step count, tokens seen, best validation
//                 loss, generator states
//   …   zero padding to a multiple of 4 bytes
//   then float32 parameters (n), AdamW first moments m (n), second moments v (n), where
//   n = parameterCount(config), parameters in v1 order (model/weights.ts).

import { closeSync, readSync } from 'node:fs';
import { FormatError } from '../errors.js';
import { type ModelConfig, validateConfig } from '../model/config.js';
import { openForReading, writeFileAtomic } from '../files.js';
import { parameterCount } from '../model/weights.js';
import type { SamplerState } from './data.js';
import type { RngState } from './rng.js';

const MAGIC = 'L2TSCKPT';
const VERSION = 1;

export interface TrainState {
  readonly config: ModelConfig;
  /** The training settings of the run that wrote it (a resumed run's defaults; its explicit flags win). */
  readonly settings: Readonly<Record<string, unknown>>;
  /** What else a resumed run reuses unless told otherwise (absent in older checkpoints). */
  readonly run?: TrainRunRecord;
  /** The next iteration to run. */
  readonly iter: number;
  /** AdamW updates done (the bias-correction step count). */
  readonly adamSteps: number;
  readonly tokensSeen: number;
  /** Best validation loss so far (Infinity before the first evaluation). */
  readonly bestValLoss: number;
  readonly sampler: SamplerState;
  readonly dropoutRng: RngState;
}

/** The run's inputs and outputs besides the settings: absolute paths. */
export interface TrainRunRecord {
  readonly trainFiles: readonly string[];
  readonly valFiles: readonly string[];
  readonly exportFormat?: string;
  readonly tokenizer?: string;
}

export interface TrainCheckpoint {
  readonly state: TrainState;
  readonly params: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;
}

function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export function writeTrainCheckpoint(path: string, ckpt: TrainCheckpoint): void {
  const n = parameterCount(ckpt.state.config);
  for (const a of [ckpt.params, ckpt.m, ckpt.v]) if (a.length !== n) throw new RangeError(`checkpoint tensors need ${n} floats, got ${a.length}`);
  const json = Buffer.from(JSON.stringify({ ...ckpt.state, bestValLoss: Number.isFinite(ckpt.state.bestValLoss) ? ckpt.state.bestValLoss : null }), 'utf8');
  const head = new Uint8Array((16 + json.length + 3) & ~3);
  head.set(Buffer.from(MAGIC, 'latin1'), 0);
  const dv = new DataView(head.buffer);
  dv.setUint32(8, VERSION, true);
  dv.setUint32(12, json.length, true);
  head.set(json, 16);
  writeFileAtomic(path, [head, bytesOf(ckpt.params), bytesOf(ckpt.m), bytesOf(ckpt.v)]);
}

/** The state (header) of a training checkpoint, without reading its tensors. */
export function readTrainState(path: string): TrainState {
  return readCheckpointFile(path, false).state;
}

export function readTrainCheckpoint(path: string): TrainCheckpoint {
  return readCheckpointFile(path, true) as TrainCheckpoint;
}

function readCheckpointFile(path: string, tensors: boolean): { state: TrainState } & Partial<TrainCheckpoint> {
  const { fd, size } = openForReading(path);
  try {
    const read = (dst: Uint8Array, pos: number): void => {
      if (pos + dst.length > size) throw new FormatError(path, `training checkpoint is truncated (needs ${pos + dst.length} bytes, has ${size})`);
      let done = 0;
      while (done < dst.length) {
        const k = readSync(fd, dst, done, dst.length - done, pos + done);
        if (k <= 0) throw new FormatError(path, 'unexpected end of file');
        done += k;
      }
    };
    const head = new Uint8Array(16);
    read(head, 0);
    if (Buffer.from(head.subarray(0, 8)).toString('latin1') !== MAGIC) throw new FormatError(path, 'not a llama2ts training checkpoint (bad magic)');
    const dv = new DataView(head.buffer);
    const version = dv.getUint32(8, true);
    if (version !== VERSION) throw new FormatError(path, `unsupported training checkpoint version ${version}`);
    const jsonBytes = dv.getUint32(12, true);
    if (16 + jsonBytes > size) throw new FormatError(path, 'training checkpoint is truncated (state)');
    const json = new Uint8Array(jsonBytes);
    read(json, 16);
    let raw: TrainState & { bestValLoss: number | null };
    try {
      raw = JSON.parse(Buffer.from(json).toString('utf8')) as TrainState & { bestValLoss: number | null };
    } catch {
      throw new FormatError(path, 'training checkpoint state is not valid JSON');
    }
    if (typeof raw !== 'object' || raw === null || typeof raw.config !== 'object' || raw.config === null) throw new FormatError(path, 'training checkpoint state has no model config');
    validateConfig(raw.config, path);
    for (const k of ['iter', 'adamSteps', 'tokensSeen'] as const) {
      if (!Number.isInteger(raw[k]) || raw[k] < 0) throw new FormatError(path, `training checkpoint: bad ${k}`);
    }
    if (typeof raw.settings !== 'object' || raw.settings === null || Array.isArray(raw.settings)) throw new FormatError(path, 'training checkpoint: bad settings');
    // (what resuming hands to the sampler and the dropout generator: checked here, not found broken there)
    const sampler = raw.sampler as unknown as Record<string, unknown> | null;
    if (typeof sampler !== 'object' || sampler === null || !isCount(sampler['epoch']) || !isCount(sampler['cursor'])) throw new FormatError(path, 'training checkpoint: bad sampler state');
    const rng = raw.dropoutRng as unknown;
    if (!Array.isArray(rng) || rng.length !== 4 || !rng.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32) || rng.every((w) => w === 0)) {
      throw new FormatError(path, 'training checkpoint: bad dropout generator state');
    }
    if (raw.bestValLoss !== null && typeof raw.bestValLoss !== 'number') throw new FormatError(path, 'training checkpoint: bad bestValLoss');
    if (raw.run !== undefined) checkRunRecord(raw.run, path);
    const state: TrainState = { ...raw, bestValLoss: raw.bestValLoss ?? Infinity };
    const n = parameterCount(state.config);
    const start = (16 + jsonBytes + 3) & ~3;
    if (size !== start + 12 * n) throw new FormatError(path, `training checkpoint has ${size} bytes, its header implies ${start + 12 * n}`);
    if (!tensors) return { state };
    const all = new Float32Array(3 * n);
    read(new Uint8Array(all.buffer), start);
    return { state, params: all.subarray(0, n), m: all.subarray(n, 2 * n), v: all.subarray(2 * n) };
  } finally {
    closeSync(fd);
  }
}

function isCount(v: unknown): boolean {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

function checkRunRecord(run: unknown, path: string): void {
  const r = run as Partial<Record<keyof TrainRunRecord, unknown>>;
  const paths = (a: unknown): boolean => Array.isArray(a) && a.every((p) => typeof p === 'string' && p !== '');
  if (typeof run !== 'object' || run === null || !paths(r.trainFiles) || !paths(r.valFiles) ||
    (r.exportFormat !== undefined && typeof r.exportFormat !== 'string') || (r.tokenizer !== undefined && typeof r.tokenizer !== 'string')) {
    throw new FormatError(path, 'training checkpoint: bad run record');
  }
}
