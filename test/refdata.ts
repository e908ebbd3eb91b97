// Where the tests find the reference data (../shared, or $LLAMA2_REFDATA). Outside CI a missing
// folder skips the tests that need it, with a visible message; under CI=true it is an error, so a
// green CI run always means the references were checked.

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project root (tests run from dist/test, two levels below it). */
export const projectRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)));

const dir = resolve(projectRoot, process.env['LLAMA2_REFDATA'] ?? '../shared');
const present = existsSync(join(dir, 'golden')) && existsSync(join(dir, 'data'));

if (!present) {
  const msg = `reference data not found at ${dir} (set LLAMA2_REFDATA)`;
  if (process.env['CI'] === 'true') throw new Error(`${msg}; CI requires it`);
  process.stderr.write(`# SKIPPING reference tests: ${msg}\n`);
}

/** Options for `test(name, skipUnlessRefdata, fn)`: skips with a reason when the data is absent. */
export const needsRefdata: { skip: string | false } = { skip: present ? false : 'reference data (../shared) not found' };

/** Absolute path of a file inside the reference data folder. */
export function ref(...parts: string[]): string {
  return join(dir, ...parts);
}

/** Absolute path of the built CLI entry point. */
export const cliPath = join(projectRoot, 'dist', 'src', 'cli', 'main.js');
