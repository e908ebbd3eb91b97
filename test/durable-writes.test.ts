// Durability (issue 19, finding 10): every file renamed into place — checkpoints, exported models,
// training checkpoints, token shards, downloads and unpacked shards — is fsynced before its rename,
// and its folder after. Checked by recording the file system calls (node:fs's functions wrapped,
// and the ES module bindings of node:fs synced to the wrappers) while each writer runs.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { writeCheckpoint } from '../src/model/checkpoint.js';
import { downloadFile, extractShards } from '../src/data/download.js';
import { writeFileAtomic } from '../src/files.js';
import { initWeights } from '../src/train/init.js';
import { writeTrainCheckpoint } from '../src/train/checkpoint.js';
import { makeArchive, serve, tempDir } from './data-fixtures.js';

type Event = { op: 'fsync'; path: string } | { op: 'rename'; from: string; to: string };

/** The fsyncs (by path) and renames that `fn` makes. */
async function recordFs(fn: () => unknown): Promise<Event[]> {
  const events: Event[] = [];
  const paths = new Map<number, string>();
  const original = { openSync: fs.openSync, closeSync: fs.closeSync, fsyncSync: fs.fsyncSync, renameSync: fs.renameSync };
  const patched = fs as unknown as Record<string, unknown>;
  patched['openSync'] = (path: fs.PathLike, ...rest: unknown[]): number => {
    const fd = (original.openSync as (...a: unknown[]) => number)(path, ...rest);
    paths.set(fd, resolve(String(path)));
    return fd;
  };
  patched['fsyncSync'] = (fd: number): void => {
    original.fsyncSync(fd);
    events.push({ op: 'fsync', path: paths.get(fd) ?? `fd ${fd}` });
  };
  patched['renameSync'] = (from: fs.PathLike, to: fs.PathLike): void => {
    original.renameSync(from, to);
    events.push({ op: 'rename', from: resolve(String(from)), to: resolve(String(to)) });
  };
  syncBuiltinESMExports();
  try {
    await fn();
  } finally {
    Object.assign(patched, original);
    syncBuiltinESMExports();
  }
  return events;
}

/** Every rename's source was fsynced before it, and the target's folder after it. */
function assertDurable(events: Event[], what: string, expectedRenames: number): void {
  const renames = events.filter((e): e is Extract<Event, { op: 'rename' }> => e.op === 'rename');
  assert.equal(renames.length, expectedRenames, `${what}: ${JSON.stringify(events)}`);
  for (const r of renames) {
    const at = events.indexOf(r);
    assert.ok(events.slice(0, at).some((e) => e.op === 'fsync' && e.path === r.from), `${what}: ${r.to} renamed before its data was fsynced`);
    assert.ok(events.slice(at + 1).some((e) => e.op === 'fsync' && e.path === dirname(r.to)), `${what}: the folder of ${r.to} not fsynced after the rename`);
  }
}

const config = { dim: 16, hiddenDim: 32, nLayers: 1, nHeads: 2, nKvHeads: 2, vocabSize: 32, seqLen: 8, sharedClassifier: true };

test('checkpoints, exports and training checkpoints are fsynced before the rename, their folder after', async () => {
  const dir = tempDir('llama2ts-durable-');
  const w = initWeights(config, 1);
  for (const format of ['v0', 'v1', 'v2'] as const) {
    assertDurable(await recordFs(() => writeCheckpoint(join(dir, `m.${format}.bin`), w, format, 16)), `export ${format}`, 1);
  }
  const ckpt = {
    state: { config, settings: {}, iter: 1, adamSteps: 1, tokensSeen: 8, bestValLoss: 1, sampler: { epoch: 0, position: 0, seed: 1 }, dropoutRng: [1, 2, 3, 4] },
    params: w.data, m: new Float32Array(w.data.length), v: new Float32Array(w.data.length),
  } as unknown as Parameters<typeof writeTrainCheckpoint>[1];
  assertDurable(await recordFs(() => writeTrainCheckpoint(join(dir, 'ckpt.bin'), ckpt)), 'training checkpoint', 1);
  assertDurable(await recordFs(() => writeFileAtomic(join(dir, 'x.txt'), [Buffer.from('x')])), 'writeFileAtomic', 1);
});

test('a download and its unpacked shards are fsynced before their renames; the completion marker comes last', async () => {
  const fixtures = tempDir();
  const { bytes } = await makeArchive(fixtures, 3, 20);
  const server = await serve(bytes, 'normal');
  const dir = tempDir();
  const dest = join(dir, 'TinyStories_all_data.tar.gz');
  try {
    assertDurable(await recordFs(() => downloadFile(server.url, dest, { retryDelayMs: 10 })), 'download', 1);
  } finally {
    await server.close();
  }
  const out = join(dir, 'shards');
  const events = await recordFs(() => extractShards(dest, out));
  assertDurable(events, 'unpacking', 4); // 3 shards, then the marker
  const last = events.filter((e) => e.op === 'rename').at(-1) as Extract<Event, { op: 'rename' }>;
  assert.equal(last.to, join(resolve(out), '.complete'));
});
