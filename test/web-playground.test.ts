// End-to-end test of the playground: Debian's chromium (headless, driven by playwright-core)
// loads the page from `llama2 serve`'s server, runs stories260K in the browser (WebAssembly
// kernels in Web Workers; the page is cross-origin isolated), generates greedily, and the text on
// the page must equal what `llama2 run` prints for the same prompt and length; then seeded sampling,
// in the browser and with the page switched to the server API. A screenshot is saved outside the
// repository. Then the built files alone, from a plain static server (not cross-origin isolated:
// the page falls back to the TypeScript kernels), must give the same text.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { test } from 'node:test';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { createKernels } from '../src/kernels/kernel-set.js';
import { startServer } from '../src/server/http.js';
import { loadServedModel } from '../src/server/served-model.js';
import { cliPath, needsRefdata, projectRoot, ref } from './refdata.js';

const CHROMIUM = '/usr/bin/chromium';
const present = existsSync(CHROMIUM);
if (!present && process.env['CI'] === 'true') throw new Error(`${CHROMIUM} not found; CI requires it (.ci/run installs it)`);
const skip = needsRefdata.skip || (present ? false : `${CHROMIUM} not found (apt-get install chromium)`);

const MODEL = ref('data', 'models', 'stories260K.bin');
const TOKENIZER = ref('data', 'models', 'tok512.bin');
const PROMPT = 'Once upon a time';
const MAX_TOKENS = 120;

interface Sampling {
  readonly temperature: string;
  readonly topP: string;
  readonly seed: string;
}
const GREEDY: Sampling = { temperature: '0', topP: '0.9', seed: '42' };
const SAMPLED: Sampling = { temperature: '0.8', topP: '0.9', seed: '42' };

/** What `llama2 run` prints for PROMPT and MAX_TOKENS tokens after it (final newline dropped). */
function runReference(promptTokens: number, s: Sampling): string {
  const out = execFileSync(process.execPath, [
    cliPath, 'run', MODEL, '-z', TOKENIZER, '-t', s.temperature, '-p', s.topP, '-s', s.seed, '-i', PROMPT, '-n', String(promptTokens - 1 + MAX_TOKENS),
  ], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return out.replace(/\n$/, '');
}

/** Sets the controls and generates; resolves with the output text and the stats line. */
async function generate(page: Page, mode: 'browser' | 'server', s: Sampling): Promise<{ text: string; stats: string }> {
  await page.check(mode === 'browser' ? '#mode-browser' : '#mode-server');
  await page.fill('#prompt', PROMPT);
  await page.fill('#temperature', s.temperature); // range inputs: fill sets the value and fires input
  await page.fill('#top-p', s.topP);
  await page.fill('#max-tokens', String(MAX_TOKENS));
  await page.fill('#seed', s.seed);
  await page.waitForSelector('#generate:not([disabled])', { timeout: 20_000 });
  await page.click('#generate');
  await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 20_000 });
  const state = await page.getAttribute('#status', 'data-state');
  assert.equal(state, 'done', `the page reports: ${await page.textContent('#status')}`);
  return { text: (await page.textContent('#output')) ?? '', stats: (await page.textContent('#stats')) ?? '' };
}

/** Headless chromium with a fresh profile. */
async function launch(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'llama2ts-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1280, height: 800 },
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Loads the page and waits until the model is loaded in the browser; returns the engine line. */
async function openPage(context: BrowserContext, url: string, errors: string[]): Promise<{ page: Page; info: string }> {
  const page = context.pages()[0] ?? await context.newPage();
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(url);
  await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]', { timeout: 20_000 });
  assert.equal(await page.getAttribute('#status', 'data-state'), 'ready', `loading failed: ${await page.textContent('#status')}`);
  return { page, info: (await page.textContent('#engine-info')) ?? '' };
}

test('playground: in-browser generation equals llama2 run, then through the API', { skip, timeout: 90_000 }, async (t) => {
  const kernels = await createKernels({ kind: 'wasm', threads: 1 });
  const model = loadServedModel({ modelPath: MODEL, tokenizerPath: TOKENIZER }, kernels);
  const { server, url } = await startServer(model, { port: 0, webRoot: join(projectRoot, 'dist', 'web') });
  const browser = await launch();
  const context = browser.context;
  try {
    const pageErrors: string[] = [];
    const { page, info } = await openPage(context, `${url}/?threads=2`, pageErrors);
    assert.equal(await page.evaluate(() => (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated), true, 'the server sends COOP/COEP: the page is cross-origin isolated');
    assert.match(info, /wasm×2 kernels/, `WebAssembly kernels on 2 threads: ${info}`);

    const promptTokens = model.tokenizer.encode(PROMPT).length;
    const greedy = runReference(promptTokens, GREEDY);
    const browser = await generate(page, 'browser', GREEDY);
    assert.equal(browser.text, greedy);
    const shot = join(tmpdir(), 'llama2ts-playground.png');
    await page.screenshot({ path: shot, fullPage: true });
    t.diagnostic(`screenshot: ${shot}`);
    t.diagnostic(`browser, greedy: ${browser.stats}`);

    // seeded sampling: the same text in the browser, through the API, and from llama2 run
    const sampled = runReference(promptTokens, SAMPLED);
    assert.notEqual(sampled, greedy);
    const browserSampled = await generate(page, 'browser', SAMPLED);
    assert.equal(browserSampled.text, sampled);
    const api = await generate(page, 'server', SAMPLED);
    assert.equal(api.text, sampled);
    t.diagnostic(`server, sampled: ${api.stats}`);
    assert.deepEqual(pageErrors, []);
  } finally {
    await browser.close();
    await server.close(1000);
    await kernels.close();
  }
});

test('playground from a plain static host (no COOP/COEP): the TypeScript kernels, the same text', { skip, timeout: 60_000 }, async () => {
  // dist/web with the model and tokenizer beside it, served as plain files
  const dir = mkdtempSync(join(tmpdir(), 'llama2ts-static-'));
  cpSync(join(projectRoot, 'dist', 'web'), dir, { recursive: true });
  copyFileSync(MODEL, join(dir, 'model.bin'));
  copyFileSync(TOKENIZER, join(dir, 'tokenizer.bin'));
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm' };
  const host = createServer((req, res) => {
    const name = (req.url ?? '/').split('?')[0]!.replace(/^\/$/, '/index.html').slice(1);
    try {
      const body = readFileSync(join(dir, name.replaceAll('/', '')));
      res.writeHead(200, { 'Content-Type': types[extname(name)] ?? 'application/octet-stream' }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => host.listen(0, '127.0.0.1', resolve));
  const browser = await launch();
  try {
    const errors: string[] = [];
    const { page, info } = await openPage(browser.context, `http://127.0.0.1:${(host.address() as AddressInfo).port}/`, errors);
    assert.match(info, /· js kernels \(page not cross-origin isolated/);
    assert.equal((await generate(page, 'browser', GREEDY)).text, runReference(5, GREEDY)); // 5 prompt tokens, BOS included
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await new Promise((resolve) => host.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  }
});
