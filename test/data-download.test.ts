// `download tinystories` against a local HTTP server serving an archive built by the test:
// redirects, resume after a dropped connection, a server that ignores Range, a stalled
// connection, a 404, and corrupt/truncated archives (no shard may be left behind).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { create as tarCreate } from 'tar';
import { COMPLETE_MARKER, completeShards, downloadFile, downloadTinyStories, extractShards } from '../src/data/download.js';
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

/** The files of a folder (temporaries included), but for the completion marker. */
function shardsIn(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((f) => f !== COMPLETE_MARKER).sort() : [];
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
    // the first request is cut half-way; the next resumes where it stopped (on a loaded machine a
    // slow read may also hit the stall timeout once more: every later request resumes too)
    assert.ok(requests.length >= 2, `${requests.length} requests`);
    assert.equal(requests[0]!.range, undefined);
    for (const r of requests.slice(1)) {
      assert.match(r.range ?? '', /^bytes=\d+-$/);
      assert.ok(Number(/\d+/.exec(r.range!)![0]) > 0);
    }
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

test('download: a redirect to file:, ftp: or an invalid address is a one-line error, not a crash, and not retried', async () => {
  for (const location of ['file:///etc/passwd', 'ftp://example.com/x.tar.gz', 'http://[::1']) {
    const dir = tempDir();
    await withServer(archive, { redirect: location }, async (url, requests) => {
      await assert.rejects(downloadTinyStories(dir, url, fast), (err: Error) => {
        assert.ok(err instanceof LlamaError, `${location}: ${err.stack}`);
        assert.match(err.message, location.startsWith('http') ? /redirects to an invalid address/ : /a redirect has an unsupported scheme/);
        return true;
      });
      assert.equal(requests.length, 0, 'no second request (the redirect itself is not counted)');
    });
    // and through the CLI: one line, exit 1
    await withServer(archive, { redirect: location }, async (url) => {
      const { spawn } = await import('node:child_process');
      const child = spawn(process.execPath, [cliPath, 'download', 'tinystories', '--dir', tempDir(), '--url', url], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      assert.equal(code, 1, stderr);
      assert.equal(stderr.trim().split('\n').length, 1, stderr);
    });
  }
});

test('download: two entries of one name (a/data00.json, b/data00.json) are refused; a rerun does not accept what is left', async () => {
  const dir = tempDir();
  const src = join(dir, 'src');
  mkdirSync(join(src, 'a'), { recursive: true });
  mkdirSync(join(src, 'b'), { recursive: true });
  writeFileSync(join(src, 'a', 'data00.json'), JSON.stringify([{ story: randomBytes(1_500_000).toString('hex') }]));
  writeFileSync(join(src, 'b', 'data00.json'), '[{"s":1}]\n');
  const bad = join(dir, 'dup.tar.gz');
  await tarCreate({ gzip: true, file: bad, cwd: src, portable: true }, ['a/data00.json', 'b/data00.json']);
  const data = join(dir, 'data');
  mkdirSync(data);
  copyFileSync(bad, join(data, 'TinyStories_all_data.tar.gz'));
  for (let run = 0; run < 2; run++) {
    await assert.rejects(downloadTinyStories(data, 'http://127.0.0.1:9/unused', fast), (err: Error) => {
      assert.ok(err instanceof FormatError);
      assert.match(err.message, /two files are named data00\.json \(a\/data00\.json and b\/data00\.json\)/);
      return true;
    });
    assert.deepEqual(shardsIn(join(data, 'TinyStories_all_data')), [], `run ${run}: nothing left behind`);
  }
});

test('download: shards without a completion marker (a run killed while unpacking) are unpacked again', async () => {
  const dir = tempDir();
  const shardDir = join(dir, 'TinyStories_all_data');
  mkdirSync(shardDir);
  writeFileSync(join(dir, 'TinyStories_all_data.tar.gz'), archive);
  writeFileSync(join(shardDir, 'data00.json'), '[{"stor'); // what a killed run could leave
  const notes: string[] = [];
  const result = await downloadTinyStories(dir, 'http://127.0.0.1:9/unused', { ...fast, log: (m) => notes.push(m) });
  assert.equal(result.extracted, true);
  assert.ok(notes.some((n) => /no completion marker/.test(n)), notes.join('\n'));
  for (const s of result.shards) assert.deepEqual(readFileSync(join(shardDir, s)), readFileSync(join(fixtureDir, 'archive-src', s)));
  assert.deepEqual(completeShards(shardDir), ['data00.json', 'data01.json', 'data02.json']);
  // a shard that changed size since is not trusted either
  writeFileSync(join(shardDir, 'data01.json'), '[]');
  assert.equal(completeShards(shardDir), undefined);
  assert.equal((await downloadTinyStories(dir, 'http://127.0.0.1:9/unused', fast)).extracted, true);
  assert.equal((await downloadTinyStories(dir, 'http://127.0.0.1:9/unused', fast)).extracted, false);
});

test('extract: a gzip bomb and an archive over the size cap are refused early, leaving nothing', async () => {
  const dir = tempDir();
  // a tar holding one 64 MiB file of zeros: ~64 KiB gzipped
  const header = Buffer.alloc(512);
  header.write('data00.json', 0);
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write((64 * 2 ** 20).toString(8).padStart(11, '0') + '\0', 124);
  header.write('00000000000\0', 136);
  header.write('        ', 148);
  header.write('0', 156);
  header.write('ustar\0' + '00', 257);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  const bomb = join(dir, 'bomb.tar.gz');
  writeFileSync(bomb, gzipSync(Buffer.concat([header, Buffer.alloc(64 * 2 ** 20), Buffer.alloc(1024)])));
  assert.ok(statSync(bomb).size < 200_000);
  const started = performance.now();
  await assert.rejects(extractShards(bomb, join(dir, 'out')), /more than 100 times its compressed size/);
  assert.ok(performance.now() - started < 5000);
  assert.deepEqual(shardsIn(join(dir, 'out')), []);
  // the absolute cap
  const file = join(dir, 'ok.tar.gz');
  writeFileSync(file, archive);
  await assert.rejects(extractShards(file, join(dir, 'out2'), { maxUnpackedBytes: 10_000 }), /unpacks to more than 10000 bytes/);
  assert.deepEqual(shardsIn(join(dir, 'out2')), []);
});

test('download: retry messages say what happened; what a retry cannot fix is not retried', async () => {
  // a server error is retried, and the final message is the server's answer
  const notes: string[] = [];
  await withServer(archive, 'server-error', async (url, requests) => {
    await assert.rejects(downloadFile(url, join(tempDir(), 'x.tar.gz'), { ...fast, attempts: 3, log: (m) => notes.push(m) }),
      /^Error: the server answered HTTP 500 Internal Server Error for .*; gave up after 3 attempts$/);
    assert.equal(requests.length, 3);
  });
  assert.deepEqual(notes.map((n) => n.replace(/ for \S+;/, ' for URL;')), [
    'the server answered HTTP 500 Internal Server Error for URL; retrying (attempt 2 of 3)',
    'the server answered HTTP 500 Internal Server Error for URL; retrying (attempt 3 of 3)',
  ]);
  // a server that will not resume: starting over is said as such (no internal words)
  const dir = tempDir();
  const dest = join(dir, 'x.tar.gz');
  writeFileSync(`${dest}.part`, archive.subarray(0, 1000));
  const restarts: string[] = [];
  await withServer(archive, 'no-resume', async (url) => downloadFile(url, dest, { ...fast, log: (m) => restarts.push(m) }));
  assert.deepEqual(readFileSync(dest), archive);
  assert.ok(restarts.every((n) => !/restart\b/.test(n)), restarts.join('\n'));
  assert.ok(restarts.some((n) => /the server refused to resume the partial file; starting over/.test(n)), restarts.join('\n'));
  // a destination that cannot be written: one request, the file system's reason
  const blocked = join(tempDir(), 'a-file');
  writeFileSync(blocked, '');
  await withServer(archive, 'normal', async (url, requests) => {
    await assert.rejects(downloadFile(url, join(blocked, 'x.tar.gz'), fast), /a component of the path is not a directory/);
    assert.equal(requests.length, 1);
  });
  // an address that is no URL, or of another scheme: at once
  await assert.rejects(downloadFile('ftp://example.com/x', join(tempDir(), 'x')), /unsupported scheme 'ftp:'/);
  await assert.rejects(downloadFile('not a url', join(tempDir(), 'x')), /not a valid URL/);
});

after(() => undefined);
