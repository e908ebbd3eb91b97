// The `llama2` command itself: every sub-command answers --help in one style (usage, text wrapped
// at 100 columns, options aligned, -h listed), unknown commands are refused; chat mode with -i asks
// for nothing first; pretokenize without data says to download it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { commands } from '../src/cli/commands.js';
import { formatHelp } from '../src/cli/help.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
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

/** Checks one --help text: usage first, ≤ 100 columns, options of a section aligned, -h listed. */
function checkHelpStyle(name: string, text: string): void {
  const lines = text.replace(/\n$/, '').split('\n');
  assert.match(lines[0]!, /^Usage: llama2\b/, name);
  for (const l of lines) assert.ok(l.length <= 100, `${name}: a line of ${l.length} columns: ${l}`);
  assert.ok(lines.some((l) => /^ {2}-h, --help {2,}\S/.test(l)), `${name}: -h, --help is listed`);
  // sections: a title line, then option lines; every description in a section starts in one column
  let columns = new Set<number>();
  let inSection = false;
  for (const l of lines) {
    if (/^\S.*:$/.test(l)) {
      inSection = true;
      columns = new Set();
      continue;
    }
    if (l === '') {
      inSection = false;
      continue;
    }
    if (!inSection) continue;
    assert.match(l, /^ {2}/, `${name}: a section holds indented options (or commands): ${l}`);
    if (/^ +-\S*( \S+)*$/.test(l)) continue; // flags too wide for the column: their text starts on the next line
    const m = /^( +\S.*?\S {2,})\S/.exec(l) ?? /^( {6,})\S/.exec(l);
    if (m !== null) columns.add(m[1]!.length);
    assert.ok(columns.size <= 1, `${name}: descriptions start in different columns (${[...columns].join(', ')}): ${l}`);
  }
}

test('one --help style: usage, text within 100 columns, options aligned per section, -h listed', () => {
  checkHelpStyle('llama2', llama2('--help').stdout);
  for (const name of Object.keys(commands)) checkHelpStyle(name, llama2(name, '--help').stdout);
  // the layout from a loosely written help: paragraphs re-wrapped, flags aligned, -h added
  const raw = 'Usage: llama2 x [options]\n\nA paragraph\nover two lines.\n  table   row\n\nOptions:\n  -a, --alpha N  first\n  --beta   second,\n           continued\n  --gamma-long-flag X third';
  assert.equal(formatHelp(raw), [
    'Usage: llama2 x [options]', '', 'A paragraph over two lines.', '  table   row', '', 'Options:',
    '  -a, --alpha N            first', '      --beta               second, continued', '      --gamma-long-flag X  third', '  -h, --help               this help',
  ].join('\n'));
});

test('chat mode with -i (and no -y) asks for no system prompt; pretokenize without data says to download it', () => {
  const chat = spawnSync(process.execPath, [cliPath, 'run', '-m', 'chat', '-i', 'Hello', '-n', '30', '-s', '1'], { encoding: 'utf8', input: '' });
  assert.equal(chat.status, 0, chat.stderr);
  assert.ok(chat.stdout.startsWith('Assistant: '), chat.stdout);
  assert.doesNotMatch(chat.stdout, /Enter system prompt/);
  const asked = spawnSync(process.execPath, [cliPath, 'run', '-m', 'chat', '-n', '30', '-s', '1'], { encoding: 'utf8', input: '' });
  assert.match(asked.stdout, /^Enter system prompt \(optional\): /, 'without -i or -y it asks, as run.c does');
  const dir = mkdtempSync(join(tmpdir(), 'llama2ts-pretok-'));
  try {
    const r = spawnSync(process.execPath, [cliPath, 'pretokenize', '-z', join(projectRoot, 'models', 'tokenizer.bin')], { encoding: 'utf8', cwd: dir });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /data\/TinyStories_all_data does not exist — run llama2 download tinystories first, or give --input FILE…/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
