// Flag parsing for every command: node:util parseArgs, with its errors turned into one-line
// UsageErrors, plus checked conversions of flag strings to numbers.

import { availableParallelism } from 'node:os';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';
import { formatHelp } from './help.js';

type Options = NonNullable<ParseArgsConfig['options']>;

export interface ParsedFlags {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
}

/** Parses `argv` strictly; unknown flags and missing values become UsageErrors. */
export function parseFlags(argv: string[], options: Options, allowPositionals = false): ParsedFlags {
  try {
    const { values, positionals } = parseArgs({ args: argv, options, allowPositionals, strict: true });
    return { values: values as ParsedFlags['values'], positionals };
  } catch (err) {
    // parseArgs explains over several lines; keep the first, plus its hint for dash-led values
    const lines = (err as Error).message.split('\n');
    const hint = lines.find((l) => l.startsWith('To specify an option argument starting with a dash'));
    throw new UsageError(lines[0]!.replace(/\. To specify a positional argument.*$/, '') + (hint ? ` ${hint}` : ''));
  }
}

/** A flag's value as a finite number, or `fallback` when absent. */
export function numberFlag(values: ParsedFlags['values'], name: string, fallback: number): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  if (typeof raw !== 'string' || raw.trim() === '') throw new UsageError(`--${name} needs a number`);
  const v = Number(raw);
  if (!Number.isFinite(v)) throw new UsageError(`--${name}: '${raw}' is not a number`);
  return v;
}

/** A flag's value as an integer in [min, max], or `fallback` when absent. */
export function intFlag(values: ParsedFlags['values'], name: string, fallback: number, min = -Infinity, max = Infinity): number {
  const v = numberFlag(values, name, fallback);
  if (!Number.isInteger(v)) throw new UsageError(`--${name}: '${values[name]}' is not an integer`);
  if (v < min || v > max) {
    const range = max === Infinity ? `must be ≥ ${min}` : min === -Infinity ? `must be ≤ ${max}` : `must be in [${min}, ${max}]`;
    throw new UsageError(`--${name}: ${v} ${range}`);
  }
  return v;
}

/**
 * --threads N (1 to 256), or undefined when absent. More threads than the machine has cores is
 * allowed but warned about on standard error: the extra threads only take turns on the cores
 * (each token waits for the slowest of them) and each costs memory.
 */
export function threadsFlag(values: ParsedFlags['values'], warn: (line: string) => void = (l) => process.stderr.write(l + '\n')): number | undefined {
  if (values['threads'] === undefined) return undefined;
  const threads = intFlag(values, 'threads', 1, 1, 256);
  const cores = availableParallelism();
  if (threads > cores) {
    warn(`llama2: warning: --threads ${threads} is more than the ${cores} cores of this machine: slower than --threads ${cores}, and more memory`);
  }
  return threads;
}

/** A flag's string value, or `fallback` when absent. */
export function stringFlag(values: ParsedFlags['values'], name: string): string | undefined;
export function stringFlag(values: ParsedFlags['values'], name: string, fallback: string): string;
export function stringFlag(values: ParsedFlags['values'], name: string, fallback?: string): string | undefined {
  const raw = values[name];
  if (raw === undefined) return fallback;
  if (typeof raw !== 'string') throw new UsageError(`--${name} needs a value`);
  return raw;
}

/**
 * Parses a command's flags plus -h/--help. With --help it prints `help` (laid out by formatHelp) and returns null (the
 * command then exits 0); otherwise the parsed flags.
 */
export function parseCommand(argv: string[], options: Options, help: string | (() => string), allowPositionals = false): ParsedFlags | null {
  const parsed = parseFlags(argv, { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals);
  if (parsed.values['help'] !== true) return parsed;
  process.stdout.write(formatHelp(typeof help === 'function' ? help() : help) + '\n');
  return null;
}
