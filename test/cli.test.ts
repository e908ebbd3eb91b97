// The `llama2` command itself: every sub-command answers --help, unknown commands are refused.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { commands } from '../src/cli/commands.js';
import { cliPath, projectRoot } from './refdata.js';

const llama2 = (...args: string[]) => spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });

test('llama2 --help lists every command; each command has its own --help', () => {
  const top = llama2('--help');
  assert.equal(top.status, 0);
  for (const name of Object.keys(commands)) {
    assert.match(top.stdout, new RegExp(`^  ${name} `, 'm'), name);
    const r = llama2(name, '--help');
    assert.equal(r.status, 0, `${name} --help: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^Usage: llama2 ${name}\\b`), name);
  }
});

test('--version prints the package version; unknown commands and flags exit 2', () => {
  const pkg = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string };
  assert.equal(llama2('--version').stdout, `${pkg.version}\n`);
  const unknown = llama2('frobnicate');
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /^llama2: unknown command 'frobnicate'/);
  const badFlag = llama2('info', '--frob');
  assert.equal(badFlag.status, 2);
  assert.equal(badFlag.stderr, "llama2: Unknown option '--frob'\n");
});
