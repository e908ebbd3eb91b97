// The smaller findings of issue 19 at the command line: a FIFO (or a device) named as a model,
// tokenizer, data or config file is a one-line error instead of a hang; a new out-dir on a
// read-only file system says so (Node.js's recursive mkdir says "no such file"); --threads beyond
// the cores is warned about; a chat that reaches its -n limit says so (it said the context window
// of 512 tokens was full).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { cliPath, needsRefdata, ref } from './refdata.js';

const dir = mkdtempSync(join(tmpdir(), 'llama2ts-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const MODEL = ref('data', 'models', 'stories260K.bin');
const TOKENIZER = ref('data', 'models', 'tok512.bin');

/** The CLI, killed after 20 s (a hang shows as status null). */
function llama2(args: string[], input = ''): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: 20_000, input });
}

function oneLineError(r: ReturnType<typeof llama2>, pattern: RegExp, what: string): void {
  assert.notEqual(r.status, null, `${what}: hung (killed after 20 s)`);
  assert.notEqual(r.status, 0, what);
  assert.equal(r.stderr.trim().split('\n').length, 1, `${what}: ${r.stderr}`);
  assert.match(r.stderr.trim(), pattern, what);
}

test('a FIFO or a device given as a model, tokenizer, data or config file: one line, no hang', needsRefdata, () => {
  const fifo = join(dir, 'model.fifo');
  const made = spawnSync('mkfifo', [fifo]);
  assert.equal(made.status, 0, 'mkfifo');
  const fifoError = /model\.fifo: is a FIFO \(named pipe\), expected a file$/;
  oneLineError(llama2(['run', fifo, '-z', TOKENIZER, '-n', '5']), fifoError, 'run FIFO');
  oneLineError(llama2(['info', fifo]), fifoError, 'info FIFO');
  oneLineError(llama2(['run', MODEL, '-z', fifo, '-n', '5']), fifoError, 'run -z FIFO');
  oneLineError(llama2(['encode', '-z', fifo, 'hello']), fifoError, 'encode -z FIFO');
  oneLineError(llama2(['eval', MODEL, '--data', fifo]), fifoError, 'eval --data FIFO');
  oneLineError(llama2(['train', '--config', fifo, '--out-dir', join(dir, 'o')]), fifoError, 'train --config FIFO');
  oneLineError(llama2(['run', '/dev/zero', '-z', TOKENIZER]), /\/dev\/zero: is a device, expected a file$/, 'run /dev/zero');
});

test('a new out-dir on a read-only file system says so', (t) => {
  // a read-only tmpfs in a user and mount namespace of our own (where unprivileged namespaces are allowed)
  const probe = spawnSync('unshare', ['-rm', 'sh', '-c', `mount -t tmpfs -o ro tmpfs ${JSON.stringify(dir)}`], { encoding: 'utf8' });
  if (probe.status !== 0) {
    t.skip(`no unprivileged mount namespace here (unshare: ${probe.stderr.trim()})`);
    return;
  }
  const ro = join(dir, 'ro');
  const script = `mkdir -p ${ro} && mount -t tmpfs -o ro tmpfs ${ro} && exec "$@"`;
  const tokens = join(dir, 'tokens.bin');
  writeFileSync(tokens, new Uint16Array(2000).map((_, i) => i % 32));
  const r = spawnSync('unshare', ['-rm', 'sh', '-c', script, 'sh', process.execPath, cliPath, 'train', '--train', tokens, '--val', tokens,
    '--vocab-size', '32', '--dim', '8', '--n-layers', '1', '--n-heads', '2', '--n-kv-heads', '2', '--max-seq-len', '8', '--batch-size', '2', '--max-iters', '1', '--out-dir', join(ro, 'new', 'out')], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr.trim(), /^llama2: .*\/ro\/new\/out: read-only file system$/);
});

test('--threads beyond the cores is accepted with a warning on standard error', needsRefdata, () => {
  const cores = availableParallelism();
  const args = (threads: number): string[] => ['run', MODEL, '-z', TOKENIZER, '-n', '20', '-t', '0', '--threads', String(threads)];
  const fits = llama2(args(cores));
  assert.equal(fits.status, 0, fits.stderr);
  assert.doesNotMatch(fits.stderr, /warning/);
  const over = llama2(args(cores + 1));
  assert.equal(over.status, 0, over.stderr);
  assert.match(over.stderr, new RegExp(`^llama2: warning: --threads ${cores + 1} is more than the ${cores} cores of this machine: slower than --threads ${cores}, and more memory$`, 'm'));
  assert.equal(over.stdout, fits.stdout);
});

test('chat with -n 50: the limit of 50 positions is what it reports, not a full context window', needsRefdata, () => {
  const r = llama2(['run', MODEL, '-z', TOKENIZER, '-m', 'chat', '-n', '50', '-y', 'You are kind', '-t', '0'], 'Hi\nTell me a story\n');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\(the limit of 50 positions is reached\)\n$/);
  assert.doesNotMatch(r.stdout + r.stderr, /context window/);
});

test('text from a corrupt file cannot break the one-line error or reach the terminal raw', needsRefdata, async () => {
  const { readSentencePieceModel, serializeSentencePieceModel } = await import('../src/tokenizer/index.js');
  const model = readSentencePieceModel(ref('data', 'models', 'tok512.model'));
  const pieces = model.pieces.map((p, i) => (i === 3 ? { ...p, piece: '<0x\n\u001b[31mOOPS>' } : p)); // a byte piece
  const bad = join(dir, 'bad.model');
  writeFileSync(bad, serializeSentencePieceModel({ ...model, pieces }));
  const r = llama2(['encode', '-z', bad, 'hello']);
  oneLineError(r, /byte piece 3 "<0x\\n\\u001b\[31mOOPS>" is not of the form <0xNN>$/, 'a piece with a newline and an escape sequence');
  assert.ok(!r.stderr.includes('\u001b'), 'no escape character reaches the terminal');
});
