// `download tinystories` against a local HTTP server serving an archive built by the test:
// redirects, resume after a dropped connection, a server that ignores Range, a stalled
// connection, a 404, and corrupt/truncated archives (no shard may be left behind).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { downloadFile, downloadTinyStories, extractShards } from '../src/data/download.js';
import { FormatError, LlamaError } from '../src/errors.js';
import { cliPath } from './refdata.js';
import { makeArchive, serve, tempDir, type ServerMode } from './data-fixtures.js';

let archive: Buffer;
let fixtureDir: string;
before(async () => {
  fixtureDir = tempDir();
  archive = (await makeArchive(fixtureDir, 3, 40)).bytes;
});

const fast = { retryDelayMs: 10, stallTimeoutMs: 2000 };

async function withServer<T>(body: Buffer, mode: ServerMode, fn: (url: string, requests: Array<{ range: string | undefined }>) => Promise<T>): Promise<T> {
  const server = await serve(body, mode);
  try {
    return await fn(server.url, server.requests);
  } finally {
    await server.close();
  }
}

function shardsIn(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

test('download: redirect, verified size, shards unpacked with the original bytes', async () => {
  const dir = tempDir();
  const result = await withServer(archive, 'normal', (url) => downloadTinyStories(dir, url, fast));
  assert.deepEqual(result.shards, ['data00.json', 'data01.json', 'data02.json']);
  assert.deepEqual(readFileSync(result.archive), archive);
  assert.equal(existsSync(`${result.archive}.part`), false);
  for (const s of result.shards) {
    assert.deepEqual(readFileSync(join(result.shardDir, s)), readFileSync(join(fixtureDir, 'archive-src', s)));
  }
  assert.deepEqual(shardsIn(result.shardDir), result.shards, 'no temporary files left');
  // a second run neither downloads nor unpacks again
  const again = await downloadTinyStories(dir, 'http://127.0.0.1:9/unreachable', fast);
  assert.equal(again.downloaded, false);
  assert.equal(again.extracted, false);
});

test('download: a connection dropped half-way is resumed with a Range request', async () => {
  const dir = tempDir();
  const notes: string[] = [];
  await withServer(archive, 'drop-once', async (url, requests) => {
    const result = await downloadTinyStories(dir, url, { ...fast, log: (m) => notes.push(m) });
    assert.deepEqual(readFileSync(result.archive), archive);
    assert.equal(requests.length, 2);
    assert.equal(requests[0]!.range, undefined);
    assert.match(requests[1]!.range ?? '', /^bytes=\d+-$/);
    assert.ok(Number(/\d+/.exec(requests[1]!.range!)![0]) > 0);
  });
  assert.ok(notes.some((n) => /retrying/.test(n)), notes.join('\n'));
});

test('download: an interrupted earlier run leaves a .part file that the next run completes', async () => {
  const dir = tempDir();
  const dest = join(dir, 'TinyStories_all_data.tar.gz');
  writeFileSync(`${dest}.part`, archive.subarray(0, 1000));
  await withServer(archive, 'normal', async (url, requests) => {
    await downloadFile(url, dest, fast);
    assert.equal(requests[0]!.range, 'bytes=1000-');
  });
  assert.deepEqual(readFileSync(dest), archive);
});

test('download: a server that ignores Range (200) restarts the file cleanly from byte 0', async () => {
  const dir = tempDir();
  const notes: string[] = [];
  await withServer(archive, 'ignore-range', async (url, requests) => {
    const result = await downloadTinyStories(dir, url, { ...fast, log: (m) => notes.push(m) });
    assert.deepEqual(readFileSync(result.archive), archive, 'not the first half twice');
    assert.equal(requests.length, 2);
  });
  assert.ok(notes.some((n) => /ignored the resume request/.test(n)), notes.join('\n'));
});

test('download: a stalled connection times out and is resumed', async () => {
  const dir = tempDir();
  await withServer(archive, 'stall-once', async (url, requests) => {
    const result = await downloadTinyStories(dir, url, { retryDelayMs: 10, stallTimeoutMs: 300 });
    assert.deepEqual(readFileSync(result.archive), archive);
    assert.equal(requests[1]!.range, 'bytes=100-');
  });
});

test('download: HTTP 404 is a one-line error, no file left, no retries', async () => {
  const dir = tempDir();
  await withServer(archive, 'not-found', async (url, requests) => {
    await assert.rejects(downloadTinyStories(dir, url, fast), (err: Error) => err instanceof LlamaError && /HTTP 404/.test(err.message));
    assert.equal(requests.length, 1);
  });
  assert.deepEqual(shardsIn(dir), []);
});

test('download: a truncated archive is a clear error and leaves no shard (not even a partial one)', async () => {
  const dir = tempDir();
  const truncated = archive.subarray(0, Math.floor(archive.length * 0.6));
  await withServer(truncated, 'normal', async (url) => {
    await assert.rejects(downloadTinyStories(dir, url, fast), (err: Error) => err instanceof FormatError && /corrupt archive/.test(err.message));
  });
  assert.deepEqual(shardsIn(join(dir, 'TinyStories_all_data')), []);
});

test('extract: garbage, a gzip without a tar inside, and a tar without shards are errors', async () => {
  const dir = tempDir();
  const cases: Array<[string, Buffer, RegExp]> = [
    ['garbage.tar.gz', Buffer.from('this is not gzip at all'), /corrupt archive/],
    ['notar.tar.gz', gzipSync(Buffer.alloc(3000, 7)), /corrupt archive/],
    ['flipped.tar.gz', Buffer.from(archive.map((b, i) => (i === archive.length >> 1 ? b ^ 0xff : b))), /corrupt archive/],
  ];
  for (const [name, bytes, re] of cases) {
    const file = join(dir, name);
    writeFileSync(file, bytes);
    const out = join(dir, `out-${name}`);
    await assert.rejects(extractShards(file, out), (err: Error) => err instanceof FormatError && re.test(err.message), name);
    assert.deepEqual(shardsIn(out), [], name);
  }
});

test('CLI: llama2 download tinystories against the local server; a 404 exits non-zero with one line', async () => {
  const dir = tempDir();
  // the CLI runs in a child process while this process serves
  await withServer(archive, 'normal', async (url) => {
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, [cliPath, 'download', 'tinystories', '--dir', dir, '--url', url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, stderr);
    assert.match(stderr, /3 shards in /);
  });
  assert.equal(statSync(join(dir, 'TinyStories_all_data', 'data00.json')).isFile(), true);
  await withServer(archive, 'not-found', async (url) => {
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, [cliPath, 'download', 'tinystories', '--dir', tempDir(), '--url', url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 1);
    assert.equal(stderr.trim().split('\n').length, 1, stderr);
    assert.match(stderr, /^llama2: download failed: HTTP 404/);
  });
  const bad = spawnSync(process.execPath, [cliPath, 'download', 'wikipedia'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
});

after(() => undefined);
