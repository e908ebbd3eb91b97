// Test fixtures for the data pipeline, made at test time under os.tmpdir(): small TinyStories-like
// shards, a .tar.gz with the real archive's layout, and a local HTTP server that can misbehave
// the ways real downloads do (drop the connection, ignore Range, stall, 404).

import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create as tarCreate } from 'tar';

export function tempDir(prefix = 'llama2ts-data-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

const NAMES = ['Lily', 'Tom', 'Ben', 'Sue', 'Max', 'Mia'];
const THINGS = ['ball', 'cat', 'tree', 'boat', 'cake', 'kite', 'red box', 'big dog'];
const DOING = ['played with', 'found', 'saw', 'wanted', 'liked', 'shared'];

/** A deterministic little story (a simple LCG picks the words). */
export function story(seed: number): string {
  let s = seed * 2654435761 >>> 0;
  const pick = <T>(xs: readonly T[]): T => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return xs[s % xs.length]!;
  };
  const name = pick(NAMES);
  const lines = [`Once upon a time, there was a little girl named ${name}.`];
  for (let i = 0; i < 3; i++) lines.push(`${name} ${pick(DOING)} a ${pick(THINGS)}. It was ${3 + (s % 7)} o'clock!`);
  lines.push(`"I love my ${pick(THINGS)}," said ${name}. They were happy.`);
  return lines.slice(0, 2).join(' ') + '\n' + lines.slice(2).join(' ');
}

/** Writes `shards` TinyStories-layout JSON shards (data00.json …) into `dir`. */
export function writeShards(dir: string, shards: number, storiesPerShard: number): string[] {
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  for (let k = 0; k < shards; k++) {
    const records = Array.from({ length: storiesPerShard }, (_, i) => ({
      story: `  ${story(k * 1000 + i)}\n`,
      instruction: { prompt: 'Write a short story.', words: ['ball'], features: [] },
      summary: 'A story.',
      source: 'GPT-4',
    }));
    const f = join(dir, `data${String(k).padStart(2, '0')}.json`);
    writeFileSync(f, JSON.stringify(records));
    files.push(f);
  }
  return files;
}

/** A TinyStories_all_data.tar.gz look-alike: the shards at the top level of the archive. */
export async function makeArchive(dir: string, shards = 3, storiesPerShard = 40): Promise<{ path: string; bytes: Buffer }> {
  const src = join(dir, 'archive-src');
  writeShards(src, shards, storiesPerShard);
  const path = join(dir, 'TinyStories_all_data.tar.gz');
  const names = Array.from({ length: shards }, (_, k) => `data${String(k).padStart(2, '0')}.json`);
  await tarCreate({ gzip: true, file: path, cwd: src, portable: true }, names);
  return { path, bytes: readFileSync(path) };
}

export type ServerMode =
  | 'normal' //       honours Range (206)
  | 'drop-once' //    first request: half the body, then the connection is cut
  | 'ignore-range' // never honours Range (always 200 + whole body); first request also cut half-way
  | 'stall-once' //   first request: some bytes, then silence
  | 'not-found' //    404 for everything
  | 'server-error' // 500 for everything
  | 'no-resume' //    416 for every Range request
  | { redirect: string }; // /start redirects there

export interface FixtureServer {
  readonly url: string; // of the archive, via a redirect
  readonly requests: Array<{ range: string | undefined }>;
  close(): Promise<void>;
}

export async function serve(body: Buffer, mode: ServerMode): Promise<FixtureServer> {
  const requests: Array<{ range: string | undefined }> = [];
  let served = 0;
  const server = http.createServer((req, res) => {
    if (req.url === '/start') {
      res.writeHead(302, { location: typeof mode === 'object' ? mode.redirect : '/files/TinyStories_all_data.tar.gz' });
      res.end();
      return;
    }
    const range = req.headers.range;
    requests.push({ range });
    const first = served++ === 0;
    if (mode === 'not-found' || mode === 'server-error') {
      res.writeHead(mode === 'not-found' ? 404 : 500, { 'content-type': 'text/plain' });
      res.end(mode);
      return;
    }
    if (mode === 'no-resume' && range !== undefined) {
      res.writeHead(416, { 'content-range': `bytes */${body.length}` });
      res.end();
      return;
    }
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(range ?? '');
    if (m !== null && mode !== 'ignore-range') start = Number(m[1]);
    const rest = body.subarray(start);
    if (start > 0) {
      res.writeHead(206, { 'content-length': rest.length, 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` });
    } else {
      res.writeHead(200, { 'content-length': body.length, 'accept-ranges': mode === 'ignore-range' ? 'none' : 'bytes' });
    }
    if (first && (mode === 'drop-once' || mode === 'ignore-range')) {
      res.write(rest.subarray(0, rest.length >> 1), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    if (first && mode === 'stall-once') {
      res.write(rest.subarray(0, 100)); // then nothing, until the client gives up
      return;
    }
    res.end(rest);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/start`,
    requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
