// `llama2 download` for models, against a local HTTP fixture (this machine has no internet) that
// serves small Hugging Face repositories the way the Hub does — the API's file list with sizes and
// LFS sha256, resolve URLs, LFS files redirected to another host (a CDN), Range requests — and a
// mirror of llama2.c's checkpoints. Then `llama2 run NAME` / `llama2 run hf:ORG/NAME` find them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LlamaError } from '../src/errors.js';
import { downloadedModelPath, downloadModel, modelFolder } from '../src/data/models.js';
import { cliPath, needsRefdata, ref } from './refdata.js';

const tmp = mkdtempSync(join(tmpdir(), 'llama2ts-models-download-'));

interface Repo {
  readonly files: Map<string, Buffer>;
  /** The token the repository wants (a gated model), if any. */
  readonly token?: string;
}

interface Fixture {
  readonly url: string;
  /** Requests seen: path, Range and Authorization headers, which server. */
  readonly log: Array<{ path: string; range?: string; auth?: string; cdn: boolean }>;
  /** Cut the next response for this path after half its bytes. */
  cutOnce: Set<string>;
  /** Serve other bytes (same size) for this path. */
  corrupt: Set<string>;
  close(): Promise<void>;
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<[Server, string]> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return [server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`];
}

/** Sends `body` (or its Range) — or half of it and a dropped connection. */
function sendFile(req: IncomingMessage, res: ServerResponse, body: Buffer, cut: boolean): void {
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const from = m ? Number(m[1]) : 0;
  const part = body.subarray(from);
  res.writeHead(m ? 206 : 200, { 'content-length': part.length, ...(m ? { 'content-range': `bytes ${from}-${body.length - 1}/${body.length}` } : {}) });
  if (cut) {
    res.write(part.subarray(0, part.length >> 1), () => setTimeout(() => res.destroy(), 50));
    return;
  }
  res.end(part);
}

async function startFixture(repos: Record<string, Repo>, mirror: Map<string, Buffer>): Promise<Fixture> {
  const log: Fixture['log'] = [];
  const fixture = { cutOnce: new Set<string>(), corrupt: new Set<string>() } as { cutOnce: Set<string>; corrupt: Set<string> };
  const bytesOf = (repo: string, name: string): Buffer | undefined => {
    const b = repos[repo]?.files.get(name);
    if (b === undefined || !fixture.corrupt.has(`${repo}/${name}`)) return b;
    const c = Buffer.from(b);
    c[c.length - 1] ^= 0xff;
    return c;
  };
  const [cdn, cdnUrl] = await listen((req, res) => {
    const u = new URL(req.url!, 'http://x');
    log.push({ path: u.pathname, ...(req.headers.range ? { range: req.headers.range } : {}), ...(req.headers.authorization ? { auth: req.headers.authorization } : {}), cdn: true });
    const [, repo1, repo2, name] = u.pathname.split('/');
    const body = bytesOf(`${repo1}/${repo2}`, decodeURIComponent(name ?? ''));
    if (body === undefined || u.searchParams.get('sig') !== 'ok') return void res.writeHead(403).end();
    const key = `${u.pathname}`;
    const cut = fixture.cutOnce.delete(key);
    sendFile(req, res, body, cut);
  });
  const [hub, hubUrl] = await listen((req, res) => {
    const u = new URL(req.url!, 'http://x');
    log.push({ path: u.pathname, ...(req.headers.range ? { range: req.headers.range } : {}), ...(req.headers.authorization ? { auth: req.headers.authorization } : {}), cdn: false });
    let m = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(u.pathname);
    if (m !== null) {
      const repo = repos[m[1]!];
      if (repo === undefined || m[2] !== 'main') return void res.writeHead(404).end('{"error":"Repository not found"}');
      if (repo.token !== undefined && req.headers.authorization !== `Bearer ${repo.token}`) return void res.writeHead(401).end('{"error":"gated"}');
      const siblings = [...repo.files].map(([name, b]) => ({
        rfilename: name, size: b.length,
        ...(name.endsWith('.safetensors') ? { lfs: { size: b.length, sha256: createHash('sha256').update(b).digest('hex') } } : {}),
      }));
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: m[1], sha: 'abc', siblings }));
    }
    m = /^\/([^/]+\/[^/]+)\/resolve\/main\/(.+)$/.exec(u.pathname);
    if (m !== null) {
      const repo = repos[m[1]!];
      const name = decodeURIComponent(m[2]!);
      if (repo === undefined || !repo.files.has(name)) return void res.writeHead(404).end();
      if (repo.token !== undefined && req.headers.authorization !== `Bearer ${repo.token}`) return void res.writeHead(401).end();
      // LFS files: a redirect to the CDN, with a signed URL
      if (name.endsWith('.safetensors')) return void res.writeHead(302, { location: `${cdnUrl}/${m[1]}/${encodeURIComponent(name)}?sig=ok` }).end();
      return sendFile(req, res, bytesOf(m[1]!, name)!, fixture.cutOnce.delete(u.pathname));
    }
    m = /^\/mirror\/(.+)$/.exec(u.pathname);
    if (m !== null && mirror.has(m[1]!)) return sendFile(req, res, mirror.get(m[1]!)!, fixture.cutOnce.delete(u.pathname));
    res.writeHead(404).end();
  });
  return Object.assign(fixture, {
    url: hubUrl, log,
    close: async () => {
      await new Promise((r) => hub.close(r));
      await new Promise((r) => cdn.close(r));
    },
  });
}

function folderFiles(dir: string): Map<string, Buffer> {
  return new Map(readdirSync(dir).filter((f) => !f.startsWith('golden')).map((f) => [f, readFileSync(join(dir, f))]));
}

/** `llama2 …` run asynchronously (the fixture lives in this process), with extra environment. */
function llama2(args: string[], env: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cliPath, ...args], { env: { ...process.env, ...env } });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

test('llama2 download hf:ORG/NAME and a llama2.c checkpoint by name, then llama2 run finds them', needsRefdata, async () => {
  const exported = join(tmp, 'exported260K');
  const ex = spawnSync(process.execPath, [cliPath, 'export', ref('data', 'models', 'stories260K.bin'), '--format', 'hf', '-z', ref('data', 'models', 'tok512.model'), '-o', exported], { encoding: 'utf8' });
  assert.equal(ex.status, 0, ex.stderr);
  const models = ref('data', 'models');
  const fx = await startFixture(
    { 'test-org/tiny260K': { files: folderFiles(exported) } },
    new Map(['stories260K.bin', 'tok512.bin', 'tok512.model'].map((f) => [f, readFileSync(join(models, f))])),
  );
  const cache = join(tmp, 'cache-cli');
  const env = { LLAMA2TS_CACHE: cache, HF_ENDPOINT: fx.url, HF_TOKEN: '' };
  try {
    const d1 = await llama2(['download', 'hf:test-org/tiny260K'], env);
    assert.equal(d1.status, 0, d1.stderr);
    const d2 = await llama2(['download', 'stories260K', '--url', `${fx.url}/mirror/`], env);
    assert.equal(d2.status, 0, d2.stderr);
    const reference = spawnSync(process.execPath, [cliPath, 'run', join(models, 'stories260K.bin'), '-z', join(models, 'tok512.bin'), '-t', '0', '-n', '64'], { encoding: 'utf8' });
    for (const name of ['hf:test-org/tiny260K', 'stories260K']) {
      const r = await llama2(['run', name, '-t', '0', '-n', '64'], env);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, reference.stdout, name);
    }
    // the weights went through the CDN redirect, without the token (none was set) and whole
    assert.ok(fx.log.some((l) => l.cdn && l.path.endsWith('model.safetensors')));
    // a second download finds it complete and fetches nothing
    const before = fx.log.length;
    const again = await llama2(['download', 'hf:test-org/tiny260K'], env);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr, /already in/);
    assert.equal(fx.log.length, before);
    // a model that is not downloaded: one line saying how
    const missing = await llama2(['run', 'stories15M'], env);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /stories15M is not downloaded .*: run llama2 download stories15M/);
  } finally {
    await fx.close();
  }
});

test('sharded repositories, resumed transfers, gated models (the token never leaves the Hub), bad files', needsRefdata, async () => {
  const sharded = ref('golden', 'hf', 'hf_gqa_bf16_sharded');
  const fx = await startFixture({
    'test-org/sharded': { files: folderFiles(sharded) },
    'test-org/gated': { files: folderFiles(sharded), token: 'secret' },
    'test-org/torch-only': { files: new Map([['config.json', readFileSync(join(sharded, 'config.json'))], ['pytorch_model.bin', Buffer.alloc(10)]]) },
  }, new Map());
  const cache = join(tmp, 'cache-lib');
  const opts = { endpoint: fx.url, token: '', retryDelayMs: 1 };
  try {
    // shards 2 and 4 are cut half-way once: retried from where they stopped (a Range request)
    fx.cutOnce.add('/test-org/sharded/model-00002-of-00005.safetensors');
    fx.cutOnce.add('/test-org/sharded/model-00004-of-00005.safetensors');
    const dir = await downloadModel('hf:test-org/sharded', cache, opts);
    assert.equal(dir, modelFolder('hf:test-org/sharded', cache));
    assert.equal(downloadedModelPath('hf:test-org/sharded', cache), dir);
    for (const [name, bytes] of folderFiles(sharded)) {
      if (name.endsWith('.safetensors') || name.endsWith('.json') || name === 'tokenizer.model') assert.ok(readFileSync(join(dir, name)).equals(bytes), name);
    }
    assert.ok(fx.log.filter((l) => l.cdn && l.path.endsWith('00002-of-00005.safetensors')).length >= 2, 'retried');

    // an interrupted run leaves a .part file and no marker; the next run resumes it
    fx.cutOnce.add('/test-org/gated/model-00001-of-00005.safetensors');
    await assert.rejects(downloadModel('hf:test-org/gated', cache, { ...opts, attempts: 1 }), /access denied \(HTTP 401\).*set HF_TOKEN/);
    await assert.rejects(downloadModel('hf:test-org/gated', cache, { ...opts, token: 'secret', attempts: 1 }), LlamaError);
    assert.throws(() => downloadedModelPath('hf:test-org/gated', cache), /is not downloaded completely .*run llama2 download hf:test-org\/gated/);
    const gated = modelFolder('hf:test-org/gated', cache);
    const part = readdirSync(gated).find((f) => f.endsWith('.part'));
    assert.ok(part !== undefined, 'the interrupted file is kept');
    const kept = statSync(join(gated, part)).size;
    const seen = fx.log.length;
    await downloadModel('hf:test-org/gated', cache, { ...opts, token: 'secret' });
    const resumed = fx.log.slice(seen).find((l) => l.cdn && l.path.endsWith('model-00001-of-00005.safetensors'))!;
    assert.equal(resumed.range, kept > 0 ? `bytes=${kept}-` : undefined, 'the next run asks for the rest');
    assert.ok(fx.log.filter((l) => l.cdn).every((l) => l.auth === undefined), 'the token is not sent to the CDN');
    assert.ok(fx.log.some((l) => !l.cdn && l.auth === 'Bearer secret'), 'the token is sent to the Hub');

    // a file whose bytes are not the Hub's sha256 is removed with a message
    fx.corrupt.add('test-org/sharded/model-00003-of-00005.safetensors');
    await assert.rejects(downloadModel('hf:test-org/sharded', join(tmp, 'cache-corrupt'), opts), /model-00003-of-00005\.safetensors: its sha256 is not the Hub's; removed it/);
    await assert.rejects(downloadModel('hf:test-org/torch-only', cache, opts), /no safetensors weights \(pytorch_model\.bin is not downloaded/);
    await assert.rejects(downloadModel('hf:test-org/nope', cache, opts), /not found/);
    await assert.rejects(downloadModel('hf:../etc', cache, opts), /a Hugging Face model id is hf:ORG\/NAME/);
    assert.ok(!existsSync(join(tmp, 'etc')));
  } finally {
    await fx.close();
  }
});
