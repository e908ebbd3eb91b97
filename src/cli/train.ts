// `llama2 train`: train a Llama 2 model from scratch (or resume) on pretokenized uint16 data.
// Parses flags (train.py's knob names with dashes) and an optional JSON config file of train.py
// names; the work is done by src/train/trainer.ts.

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { loadTokenizer } from '../tokenizer/index.js';
import { parseCommand, stringFlag, numberFlag, threadsFlag } from './flags.js';
import { readTrainState, type TrainRunRecord } from '../train/checkpoint.js';
import { splitDataFolder } from '../train/data.js';
import { jsMatmul } from '../train/layers.js';
import { DEFAULT_SETTINGS, flagName, flagSettings, KNOBS, readConfigFile, recordedSettings, resumeSettings, type TrainSettings } from '../train/settings.js';
import { engineFromKernelSet, type TrainEngine } from '../train/pool.js';
import { train, type TrainRunOptions } from '../train/trainer.js';

function usage(): string {
  const knobLines = KNOBS.map((k) => {
    const def = DEFAULT_SETTINGS[k.key];
    const flag = `--${flagName(k)} ${k.kind === 'bool' ? '[true|false]' : k.kind === 'string' ? 'S' : 'N'}`;
    return `  ${flag.padEnd(42)} ${k.help} (default ${String(def)})`;
  });
  return [
    'Usage: llama2 train [--config FILE] (--data DIR | --train FILE... --val FILE...) [options]',
    '       llama2 train --out-dir DIR --init-from resume [options that change]',
    '',
    'Trains a Llama 2 model on pretokenized uint16 token files (llama2.c TinyStories layout).',
    'A resumed run takes every setting, its data and tokenizer from DIR/ckpt.bin; settings given',
    'as flags or in --config override them (and are printed), except the model shape.',
    '',
    'Data and run:',
    '  --data DIR                                 folder of *.bin shards; validation: --val, else val*.bin, else data00.bin',
    '  --train FILE (repeatable)                  training token file(s) (instead of the shards of --data)',
    '  --val FILE (repeatable)                    validation token file(s)',
    '  -z, --tokenizer FILE                       the data\'s tokenizer, copied to out_dir/tokenizer.bin (default: DIR.bin or DIR.model beside --data DIR)',
    '  --config FILE                              JSON object of train.py settings ({"batch_size": 16, ...}); flags override it',
    '  --kernels js|wasm                          matmul kernels (default: wasm when available)',
    '  --threads N                                threads of the wasm kernels and of the training pool (default: one per core)',
    '  --export-format v1|v0                      format of out_dir/model.bin (default v1)',
    '  --peak-flops N                             peak FLOP/s for the MFU figure (default: cores × clock × 32)',
    '  --final-eval                               after training, mean loss over all validation windows',
    '',
    'Settings (train.py names; dashes or underscores in a config file):',
    ...knobLines,
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const boolFlags = new Set(KNOBS.filter((k) => k.kind === 'bool').map((k) => `--${flagName(k)}`));
  // A boolean setting given alone (`--always-save-checkpoint`) means true.
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    args.push(argv[i]!);
    if (boolFlags.has(argv[i]!) && !/^(true|false|1|0|True|False)$/.test(argv[i + 1] ?? '')) args.push('true');
  }
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {
    config: { type: 'string' }, data: { type: 'string' },
    train: { type: 'string', multiple: true }, val: { type: 'string', multiple: true }, tokenizer: { type: 'string', short: 'z' },
    kernels: { type: 'string' }, threads: { type: 'string' }, 'export-format': { type: 'string' },
    'peak-flops': { type: 'string' }, 'final-eval': { type: 'boolean' },
  };
  for (const k of KNOBS) options[flagName(k)] = { type: 'string' };
  const parsed = parseCommand(args, options, usage);
  if (parsed === null) return 0;
  const { values } = parsed;
  const log = (line: string): void => void process.stdout.write(line + '\n');

  // Settings: train.py's defaults, or the checkpoint's when resuming; then the explicit ones.
  const configPath = stringFlag(values, 'config');
  const explicit: Partial<TrainSettings> = { ...(configPath ? readConfigFile(configPath) : {}), ...flagSettings(values) };
  let settings: TrainSettings;
  let recorded: TrainRunRecord | undefined;
  if ((explicit.initFrom ?? DEFAULT_SETTINGS.initFrom) === 'resume') {
    const outDir = explicit.outDir ?? DEFAULT_SETTINGS.outDir;
    const ckptPath = join(outDir, 'ckpt.bin');
    const state = readTrainState(ckptPath);
    const r = resumeSettings(recordedSettings(state.settings, ckptPath), explicit, outDir);
    settings = r.settings;
    recorded = state.run;
    const given = r.overridden.map(([name, now, was]) => `${name} ${String(now)} (checkpoint: ${String(was)})`);
    log(`resuming ${ckptPath}: settings from the checkpoint${given.length ? `; given here: ${given.join(', ')}` : ''}`);
  } else {
    settings = { ...DEFAULT_SETTINGS, ...explicit };
  }

  // Data: --data DIR (validation chosen by --val or by name), --train/--val, or the checkpoint's.
  const dataDir = stringFlag(values, 'data');
  const trainFlag = values['train'] as string[] | undefined;
  const valFlag = values['val'] as string[] | undefined;
  let trainFiles: readonly string[] = [];
  let valFiles: readonly string[] = [];
  let valChoice = 'given with --val';
  if (dataDir !== undefined) {
    const choice = splitDataFolder(dataDir, valFlag);
    ({ train: trainFiles, val: valFiles, how: valChoice } = choice);
    if (trainFlag !== undefined) trainFiles = trainFlag;
  } else if (trainFlag !== undefined || valFlag !== undefined) {
    trainFiles = trainFlag ?? recorded?.trainFiles ?? [];
    valFiles = valFlag ?? recorded?.valFiles ?? [];
    if (valFlag === undefined) valChoice = 'the checkpoint\'s';
  } else if (recorded !== undefined) {
    ({ trainFiles, valFiles } = recorded);
    valChoice = 'the checkpoint\'s';
  }
  if (trainFiles.length === 0 || valFiles.length === 0) throw new UsageError('give --data DIR, or --train FILE and --val FILE (see llama2 train --help)');

  const tokenizer = stringFlag(values, 'tokenizer') ?? recorded?.tokenizer ?? (dataDir !== undefined ? tokenizerBeside(dataDir, settings.vocabSize) : undefined);
  const exportFormat = stringFlag(values, 'export-format', recorded?.exportFormat ?? 'v1');
  if (exportFormat !== 'v1' && exportFormat !== 'v0') throw new UsageError(`--export-format: expected v1 or v0, got '${exportFormat}'`);
  const kind = stringFlag(values, 'kernels');
  if (kind !== undefined && kind !== 'js' && kind !== 'wasm') throw new UsageError(`--kernels: expected js or wasm, got '${kind}'`);
  const threads = threadsFlag(values);
  const peakFlops = values['peak-flops'] === undefined ? undefined : numberFlag(values, 'peak-flops', 0);
  if (peakFlops !== undefined && !(peakFlops > 0)) throw new UsageError('--peak-flops must be positive');

  const { engine, close } = await chooseEngine(kind, threads);
  try {
    const run: TrainRunOptions = {
      settings, trainFiles, valFiles, valChoice, engine, exportFormat, finalEval: values['final-eval'] === true, log,
      ...(tokenizer !== undefined ? { tokenizer } : {}),
      ...(peakFlops !== undefined ? { peakFlops } : {}),
    };
    await train(run);
  } finally {
    await close();
  }
  return 0;
}

/**
 * The tokenizer a data folder was made with, by the names train-vocab and pretokenize give:
 * data/tok512/ comes from data/tok512.bin (or .model), if its vocabulary size matches.
 */
function tokenizerBeside(dataDir: string, vocabSize: number): string | undefined {
  const base = resolve(dataDir);
  for (const path of [base + '.bin', base + '.model']) {
    if (!existsSync(path)) continue;
    try {
      if (loadTokenizer(path).vocabSize === vocabSize) return path;
    } catch { /* not a tokenizer: ignore */ }
  }
  return undefined;
}

/** The shared kernel set (WebAssembly SIMD + threads) unless --kernels js. */
async function chooseEngine(kind: 'js' | 'wasm' | undefined, threads: number | undefined): Promise<{ engine: TrainEngine; close: () => Promise<void> }> {
  if (kind === 'js') return { engine: { matmul: jsMatmul, threads: 1 }, close: async () => {} };
  const { createKernels } = await import('../kernels/kernel-set.js');
  const set = await createKernels({ ...(kind ? { kind } : {}), ...(threads ? { threads } : {}) });
  return { engine: engineFromKernelSet(set), close: () => set.close() };
}
