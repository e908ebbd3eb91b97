// The knobs of `llama2 train`: llama2.c train.py's configuration variables (same names in a JSON
// config file, spelled with dashes as flags), their defaults (train.py's) and checks. One table
// drives the flag parser, the config-file reader and the help text.

import { describeFsError, UsageError, quote } from '../errors.js';
import { readWholeFile } from '../files.js';

export interface TrainSettings {
  // I/O
  outDir: string;
  evalInterval: number;
  evalIters: number;
  logInterval: number;
  alwaysSaveCheckpoint: boolean;
  initFrom: 'scratch' | 'resume';
  // data
  batchSize: number;
  maxSeqLen: number;
  vocabSize: number;
  // model
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  multipleOf: number;
  /** 0: derived from dim and multiple_of as model.py does. */
  hiddenDim: number;
  dropout: number;
  // optimiser
  gradientAccumulationSteps: number;
  learningRate: number;
  maxIters: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  gradClip: number;
  // schedule
  decayLr: boolean;
  warmupIters: number;
  /** 0: = max_iters (train.py's default). */
  lrDecayIters: number;
  minLr: number;
  // system
  seed: number;
}

type Kind = 'int' | 'number' | 'bool' | 'string';

interface Knob {
  /** train.py's name (JSON config); the flag is the same with dashes. */
  readonly name: string;
  readonly key: keyof TrainSettings;
  readonly kind: Kind;
  readonly help: string;
  /** Smallest allowed value (numbers). */
  readonly min?: number;
  /** Value must be strictly greater than min. */
  readonly exclusiveMin?: boolean;
  readonly max?: number;
  readonly choices?: readonly string[];
}

export const DEFAULT_SETTINGS: Readonly<TrainSettings> = {
  outDir: 'out', evalInterval: 2000, evalIters: 100, logInterval: 1, alwaysSaveCheckpoint: false, initFrom: 'scratch',
  batchSize: 128, maxSeqLen: 256, vocabSize: 32000,
  dim: 288, nLayers: 6, nHeads: 6, nKvHeads: 6, multipleOf: 32, hiddenDim: 0, dropout: 0,
  gradientAccumulationSteps: 4, learningRate: 5e-4, maxIters: 100000, weightDecay: 0.1, beta1: 0.9, beta2: 0.95, gradClip: 1.0,
  decayLr: true, warmupIters: 1000, lrDecayIters: 0, minLr: 0,
  seed: 1337,
};

export const KNOBS: readonly Knob[] = [
  { name: 'out_dir', key: 'outDir', kind: 'string', help: 'folder for ckpt.bin, model.bin, metrics.jsonl, loss.svg' },
  { name: 'eval_interval', key: 'evalInterval', kind: 'int', min: 1, help: 'evaluate (and maybe checkpoint) every N iterations' },
  { name: 'eval_iters', key: 'evalIters', kind: 'int', min: 1, help: 'batches per split in each evaluation' },
  { name: 'log_interval', key: 'logInterval', kind: 'int', min: 1, help: 'print a progress line every N iterations' },
  { name: 'always_save_checkpoint', key: 'alwaysSaveCheckpoint', kind: 'bool', help: 'checkpoint at every evaluation, not only on improvement' },
  { name: 'init_from', key: 'initFrom', kind: 'string', choices: ['scratch', 'resume'], help: 'scratch, or resume from out_dir/ckpt.bin' },
  { name: 'batch_size', key: 'batchSize', kind: 'int', min: 1, help: 'sequences per micro-batch' },
  { name: 'max_seq_len', key: 'maxSeqLen', kind: 'int', min: 1, help: 'tokens per sequence (T)' },
  { name: 'vocab_size', key: 'vocabSize', kind: 'int', min: 1, max: 65536, help: 'vocabulary size (token ids are uint16)' },
  { name: 'dim', key: 'dim', kind: 'int', min: 1, help: 'model width' },
  { name: 'n_layers', key: 'nLayers', kind: 'int', min: 1, help: 'transformer layers' },
  { name: 'n_heads', key: 'nHeads', kind: 'int', min: 1, help: 'query heads' },
  { name: 'n_kv_heads', key: 'nKvHeads', kind: 'int', min: 1, help: 'key/value heads (divides n_heads)' },
  { name: 'multiple_of', key: 'multipleOf', kind: 'int', min: 1, help: 'hidden size rounding (model.py)' },
  { name: 'hidden_dim', key: 'hiddenDim', kind: 'int', min: 0, help: 'SwiGLU hidden size (0: from dim and multiple_of)' },
  { name: 'dropout', key: 'dropout', kind: 'number', min: 0, max: 0.99, help: 'dropout probability' },
  { name: 'gradient_accumulation_steps', key: 'gradientAccumulationSteps', kind: 'int', min: 1, help: 'micro-batches per update' },
  { name: 'learning_rate', key: 'learningRate', kind: 'number', min: 0, help: 'peak learning rate' },
  { name: 'max_iters', key: 'maxIters', kind: 'int', min: 0, help: 'last iteration (iterations 0..max_iters run)' },
  { name: 'weight_decay', key: 'weightDecay', kind: 'number', min: 0, help: 'AdamW weight decay (matrices only)' },
  { name: 'beta1', key: 'beta1', kind: 'number', min: 0, max: 0.999999, help: 'AdamW β1' },
  { name: 'beta2', key: 'beta2', kind: 'number', min: 0, max: 0.999999, help: 'AdamW β2' },
  { name: 'grad_clip', key: 'gradClip', kind: 'number', min: 0, help: 'clip gradients at this global norm (0: off)' },
  { name: 'decay_lr', key: 'decayLr', kind: 'bool', help: 'warm-up and cosine decay (false: constant lr)' },
  { name: 'warmup_iters', key: 'warmupIters', kind: 'int', min: 0, help: 'linear warm-up iterations' },
  { name: 'lr_decay_iters', key: 'lrDecayIters', kind: 'int', min: 0, help: 'cosine decay ends here (0: max_iters)' },
  { name: 'min_lr', key: 'minLr', kind: 'number', min: 0, help: 'learning rate after the decay' },
  { name: 'seed', key: 'seed', kind: 'int', min: 0, max: 2 ** 52, help: 'seed of the initial weights, batch order and dropout' },
];

export function flagName(k: Knob): string {
  return k.name.replace(/_/g, '-');
}

/** Checks and converts one raw value (from a flag string or JSON) for a knob. */
function convert(k: Knob, raw: unknown, where: string): TrainSettings[keyof TrainSettings] {
  if (k.kind === 'bool') {
    if (typeof raw === 'boolean') return raw;
    if (raw === 'true' || raw === '1' || raw === 'True') return true;
    if (raw === 'false' || raw === '0' || raw === 'False') return false;
    throw new UsageError(`${where}: expected true or false, got ${quote(raw)}`);
  }
  if (k.kind === 'string') {
    if (typeof raw !== 'string' || raw === '') throw new UsageError(`${where}: expected a non-empty string`);
    if (k.choices && !k.choices.includes(raw)) throw new UsageError(`${where}: expected one of ${k.choices.join(', ')}, got '${raw}'`);
    return raw as TrainSettings['initFrom'];
  }
  const v = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
  if (!Number.isFinite(v)) throw new UsageError(`${where}: '${String(raw)}' is not a number`);
  if (k.kind === 'int' && !Number.isInteger(v)) throw new UsageError(`${where}: '${String(raw)}' is not an integer`);
  if (k.min !== undefined && v < k.min) throw new UsageError(`${where}: ${v} is below the minimum ${k.min}`);
  if (k.max !== undefined && v > k.max) throw new UsageError(`${where}: ${v} is above the maximum ${k.max}`);
  return v;
}

/** Reads a JSON config file of train.py names ({"batch_size": 16, ...}). */
export function readConfigFile(path: string): Partial<TrainSettings> {
  let text: string;
  try {
    text = new TextDecoder().decode(readWholeFile(path));
  } catch (err) {
    throw describeFsError(path, err);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${path}: not valid JSON (${(err as Error).message.split('\n')[0]})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new UsageError(`${path}: expected a JSON object of settings`);
  const out: Partial<Record<keyof TrainSettings, unknown>> = {};
  for (const [name, raw] of Object.entries(json)) {
    const k = KNOBS.find((x) => x.name === name || flagName(x) === name);
    if (k === undefined) throw new UsageError(`${path}: unknown setting '${name}'`);
    out[k.key] = convert(k, raw, `${path}: ${name}`);
  }
  return out as Partial<TrainSettings>;
}

/** The settings given as flags (strings/booleans keyed by flag name): only those present. */
export function flagSettings(values: Readonly<Record<string, unknown>>): Partial<TrainSettings> {
  const out: Partial<Record<keyof TrainSettings, unknown>> = {};
  for (const k of KNOBS) {
    const raw = values[flagName(k)];
    if (raw !== undefined) out[k.key] = convert(k, raw, `--${flagName(k)}`);
  }
  return out as Partial<TrainSettings>;
}

/** Settings from flag values over `base`. */
export function applyFlags(base: TrainSettings, values: Readonly<Record<string, unknown>>): TrainSettings {
  return { ...base, ...flagSettings(values) };
}

/** The settings that fix the model's shape: a resumed run keeps the checkpoint's. */
export const SHAPE_KEYS: ReadonlySet<keyof TrainSettings> = new Set(['vocabSize', 'maxSeqLen', 'dim', 'nLayers', 'nHeads', 'nKvHeads', 'multipleOf', 'hiddenDim']);

/** The train.py name of a setting (max_iters for maxIters). */
export function knobName(key: keyof TrainSettings): string {
  return KNOBS.find((k) => k.key === key)!.name;
}

/** A settings object keyed by train.py names (for metrics.jsonl and messages). */
export function settingsByName(s: TrainSettings): Record<string, unknown> {
  return Object.fromEntries(KNOBS.map((k) => [k.name, s[k.key]]));
}

/**
 * The settings a training checkpoint recorded (TrainState.settings, keyed as TrainSettings),
 * each checked as a flag would be; settings the checkpoint lacks keep train.py's defaults.
 */
export function recordedSettings(record: Readonly<Record<string, unknown>>, where: string): TrainSettings {
  const out: Record<string, unknown> = { ...DEFAULT_SETTINGS };
  for (const k of KNOBS) {
    if (record[k.key] !== undefined) out[k.key] = convert(k, record[k.key], `${where}: recorded ${k.name}`);
  }
  return out as unknown as TrainSettings;
}

export interface ResumedSettings {
  readonly settings: TrainSettings;
  /** Settings given explicitly that differ from the checkpoint's: [train.py name, given, recorded]. */
  readonly overridden: ReadonlyArray<readonly [string, unknown, unknown]>;
}

/**
 * The settings of a resumed run: the checkpoint's, except those given explicitly (flags or a
 * config file), which win. The model shape cannot change; out_dir is where the checkpoint is.
 */
export function resumeSettings(recorded: TrainSettings, explicit: Partial<TrainSettings>, outDir: string): ResumedSettings {
  const settings: Record<string, unknown> = { ...recorded, outDir, initFrom: 'resume' };
  const overridden: Array<readonly [string, unknown, unknown]> = [];
  for (const k of KNOBS) {
    const given = explicit[k.key];
    if (given === undefined || k.key === 'outDir' || k.key === 'initFrom') continue;
    if (given === recorded[k.key]) continue;
    if (SHAPE_KEYS.has(k.key)) {
      throw new UsageError(`--${flagName(k)} ${String(given)}: the checkpoint's model has ${k.name} ${String(recorded[k.key])}, and a resumed run keeps its shape`);
    }
    settings[k.key] = given;
    overridden.push([k.name, given, recorded[k.key]]);
  }
  return { settings: settings as unknown as TrainSettings, overridden };
}

/** Cross-field checks (one-line UsageErrors). */
export function checkSettings(s: TrainSettings): void {
  if (s.dim % s.nHeads !== 0) throw new UsageError(`dim ${s.dim} is not divisible by n_heads ${s.nHeads}`);
  if (s.nHeads % s.nKvHeads !== 0) throw new UsageError(`n_heads ${s.nHeads} is not divisible by n_kv_heads ${s.nKvHeads}`);
  if ((s.dim / s.nHeads) % 2 !== 0) throw new UsageError(`head size dim/n_heads = ${s.dim / s.nHeads} must be even (RoPE rotates pairs)`);
  if (s.lrDecayIters !== 0 && s.lrDecayIters < s.warmupIters) throw new UsageError(`lr_decay_iters ${s.lrDecayIters} is below warmup_iters ${s.warmupIters}`);
  if (s.minLr > s.learningRate) throw new UsageError(`min_lr ${s.minLr} exceeds learning_rate ${s.learningRate}`);
}
