// `llama2 train`: train a Llama 2 model from scratch (or resume) on pretokenized uint16 data.
// Parses flags (train.py's knob names with dashes) and an optional JSON config file of train.py
// names; the work is done by src/train/trainer.ts.

import { UsageError } from '../errors.js';
import { parseCommand, stringFlag, intFlag, numberFlag } from './flags.js';
import { splitDataFolder } from '../train/data.js';
import { jsMatmul } from '../train/layers.js';
import { applyFlags, DEFAULT_SETTINGS, flagName, KNOBS, readConfigFile, type TrainSettings } from '../train/settings.js';
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
    '',
    'Trains a Llama 2 model on pretokenized uint16 token files (llama2.c TinyStories layout).',
    '',
    'Data and run:',
    '  --data DIR                                 folder of *.bin shards: the first (by name) is validation, the rest training',
    '  --train FILE (repeatable)                  training token file(s)',
    '  --val FILE (repeatable)                    validation token file(s)',
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
    train: { type: 'string', multiple: true }, val: { type: 'string', multiple: true },
    kernels: { type: 'string' }, threads: { type: 'string' }, 'export-format': { type: 'string' },
    'peak-flops': { type: 'string' }, 'final-eval': { type: 'boolean' },
  };
  for (const k of KNOBS) options[flagName(k)] = { type: 'string' };
  const parsed = parseCommand(args, options, usage);
  if (parsed === null) return 0;
  const { values } = parsed;

  const configPath = stringFlag(values, 'config');
  let settings: TrainSettings = { ...DEFAULT_SETTINGS, ...(configPath ? readConfigFile(configPath) : {}) };
  settings = applyFlags(settings, values);

  let trainFiles: string[] = [];
  let valFiles: string[] = [];
  const dataDir = stringFlag(values, 'data');
  if (dataDir !== undefined) ({ train: trainFiles, val: valFiles } = splitDataFolder(dataDir));
  if (values['train'] !== undefined) trainFiles = values['train'] as string[];
  if (values['val'] !== undefined) valFiles = values['val'] as string[];
  if (trainFiles.length === 0 || valFiles.length === 0) throw new UsageError('give --data DIR, or --train FILE and --val FILE (see llama2 train --help)');

  const exportFormat = stringFlag(values, 'export-format', 'v1');
  if (exportFormat !== 'v1' && exportFormat !== 'v0') throw new UsageError(`--export-format: expected v1 or v0, got '${exportFormat}'`);
  const kind = stringFlag(values, 'kernels');
  if (kind !== undefined && kind !== 'js' && kind !== 'wasm') throw new UsageError(`--kernels: expected js or wasm, got '${kind}'`);
  const threads = values['threads'] === undefined ? undefined : intFlag(values, 'threads', 1, 1, 256);
  const peakFlops = values['peak-flops'] === undefined ? undefined : numberFlag(values, 'peak-flops', 0);
  if (peakFlops !== undefined && !(peakFlops > 0)) throw new UsageError('--peak-flops must be positive');

  const { engine, close } = await chooseEngine(kind, threads);
  try {
    const run: TrainRunOptions = {
      settings, trainFiles, valFiles, engine, exportFormat, finalEval: values['final-eval'] === true,
      ...(peakFlops !== undefined ? { peakFlops } : {}),
    };
    await train(run);
  } finally {
    await close();
  }
  return 0;
}

/** The shared kernel set (WebAssembly SIMD + threads) unless --kernels js. */
async function chooseEngine(kind: 'js' | 'wasm' | undefined, threads: number | undefined): Promise<{ engine: TrainEngine; close: () => Promise<void> }> {
  if (kind === 'js') return { engine: { matmul: jsMatmul, threads: 1 }, close: async () => {} };
  const { createKernels } = await import('../kernels/kernel-set.js');
  const set = await createKernels({ ...(kind ? { kind } : {}), ...(threads ? { threads } : {}) });
  return { engine: engineFromKernelSet(set), close: () => set.close() };
}
