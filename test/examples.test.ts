// The published package and its examples, as a user meets them: the files `npm pack` puts in the
// tarball (with the package.json prepack writes) install into an empty folder without a warning;
// every source map points at a file the package ships; examples/node.mjs runs there against the
// installed package; examples/openai-client.mjs talks to `llama2 serve`; examples/web/index.html,
// served from the installed package, writes in headless chromium the story the library writes.

import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, extname, join, relative, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { LanguageModel } from '../src/index.js';
import { cliPath, projectRoot } from './refdata.js';

const CHROMIUM = '/usr/bin/chromium';
const work = mkdtempSync(join(tmpdir(), 'llama2ts-examples-'));
const app = join(work, 'app'); // the user's empty project
let installed = '';
let installLog = '';

function npm(args: string[], cwd: string): { status: number | null; out: string } {
  const r = spawnSync('npm', args, { cwd, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false' } });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

before(() => {
  // What `npm pack` packs: package.json's files, from a copy whose package.json prepack's script
  // rewrote (the build already ran: npm test builds first).
  const stage = join(work, 'stage');
  mkdirSync(stage);
  const manifest = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { files: string[] };
  for (const f of [...manifest.files, 'package.json', 'README.md', 'scripts/pack-manifest.mjs']) {
    cpSync(join(projectRoot, f), join(stage, f), { recursive: true });
  }
  execFileSync(process.execPath, ['scripts/pack-manifest.mjs', 'strip'], { cwd: stage });
  const packed = npm(['pack', '--ignore-scripts', '--json', '--pack-destination', work], stage);
  assert.equal(packed.status, 0, packed.out);
  const tarball = join(work, (JSON.parse(packed.out.slice(packed.out.indexOf('['))) as Array<{ filename: string }>)[0]!.filename);
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }));
  const install = npm(['install', tarball, '--no-audit', '--no-fund', '--prefer-offline'], app);
  assert.equal(install.status, 0, install.out);
  installLog = install.out;
  installed = join(app, 'node_modules', 'llama2ts');
});
after(() => rmSync(work, { recursive: true, force: true }));

test('the packed package installs without warnings, with a LICENSE, no prepare script, and the sources its maps name', () => {
  assert.doesNotMatch(installLog, /warn/i, installLog);
  assert.ok(existsSync(join(installed, 'LICENSE')));
  const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as { scripts: Record<string, string>; exports: Record<string, unknown> };
  assert.equal(manifest.scripts['prepare'], undefined);
  assert.ok(manifest.exports['./web'], 'a browser entry point');
  let maps = 0;
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.map')) {
        maps++;
        const map = JSON.parse(readFileSync(path, 'utf8')) as { sources: string[]; sourceRoot?: string };
        for (const source of map.sources) {
          const target = resolve(dirname(path), map.sourceRoot ?? '', source);
          assert.ok(target.startsWith(installed + '/'), `${relative(installed, path)} points outside the package: ${source}`);
          assert.ok(existsSync(target), `${relative(installed, path)} points at ${source}, which the package does not ship`);
        }
      }
    }
  };
  walk(installed);
  assert.ok(maps > 50, `${maps} source maps checked`);
});

test('examples/node.mjs runs against the installed package', { timeout: 60_000 }, () => {
  copyFileSync(join(installed, 'examples', 'node.mjs'), join(app, 'node.mjs'));
  const r = spawnSync(process.execPath, ['node.mjs'], { cwd: app, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.match(r.stdout, /^model: dim \d+, \d+ layers, vocabulary 512, context 256\n\nOnce upon a time\S* \S+/);
  assert.match(r.stdout, /\(\d+ tokens, finish: (stop|length), \d+ tok\/s\)/);
  assert.match(r.stdout, /\nAssistant: ?\S/);
});

test('examples/openai-client.mjs talks to llama2 serve', { timeout: 60_000 }, async () => {
  const server = spawn(process.execPath, [cliPath, 'serve', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      server.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      server.once('exit', (code) => reject(new Error(`llama2 serve exited with ${code}`)));
    });
    // openai is one of this repository's dev dependencies: run the example where it resolves
    const r = spawnSync(process.execPath, [join(projectRoot, 'examples', 'openai-client.mjs'), `${url}/v1`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^model: default\ncompletion: ".+" \(40 tokens, finish: length\)\nchat: ./);
  } finally {
    server.kill('SIGTERM');
    await new Promise((resolve) => server.once('exit', resolve));
  }
});

test('examples/web/index.html, served from the installed package, writes the story the library writes', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} not found`, timeout: 60_000 }, async () => {
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.bin': 'application/octet-stream' };
  const host = createServer((req, res) => {
    const path = resolve(installed, '.' + decodeURIComponent((req.url ?? '/').split('?')[0]!).replace(/\/$/, '/index.html'));
    if (!path.startsWith(installed + '/') || !existsSync(path)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      'Content-Type': types[extname(path)] ?? 'application/octet-stream',
      'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp',
    }).end(readFileSync(path));
  });
  await new Promise<void>((resolve) => host.listen(0, '127.0.0.1', resolve));
  const profile = mkdtempSync(join(tmpdir(), 'llama2ts-chromium-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const page = context.pages()[0] ?? await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${(host.address() as AddressInfo).port}/examples/web/`);
    await page.waitForSelector('#go:not([disabled])', { timeout: 20_000 });
    assert.match((await page.textContent('#status')) ?? '', /^ready: [\d,]+ parameters, wasm×\d kernels$/);
    await page.click('#go');
    await page.waitForSelector('#status[data-done="true"]', { timeout: 20_000 });
    const story = (await page.textContent('#story')) ?? '';
    const lm = await LanguageModel.load(undefined, { kernels: 'js' });
    assert.equal(story, (await lm.complete({ prompt: 'Once upon a time', echo: true, maxTokens: 120, temperature: 0 })).text);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
    await new Promise((resolve) => host.close(resolve));
  }
});
