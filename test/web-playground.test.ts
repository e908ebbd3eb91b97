// End-to-end test of the playground: Debian's chromium (headless, driven by playwright-core)
// loads the page from `llama2 serve`'s server, runs stories260K in the browser (WebAssembly
// kernels in Web Workers; the page is cross-origin isolated), generates greedily, and the text on
// the page must equal what `llama2 run` prints for the same prompt and length; then seeded sampling,
// in the browser and with the page switched to the server API. A screenshot is saved outside the
// repository. Then the built files alone, from a plain static server (not cross-origin isolated:
// the page falls back to the TypeScript kernels), must give the same text; the prompt and the
// completion are separate, and tok/s is shown while the text arrives. Then the product's
// paths: a chat (the answer `llama2 run -m chat` gives, in the browser and through the API), a
// model URL that fails (the error beside the output, no stuck state, Load usable again), a phone's
// layout (the output first, nothing wider than the screen), a reload that reads the model from the
// browser's cache instead of downloading it, and a local model file (picker and drag and drop).
// Screenshots (desktop chat, phone, error) go to the temporary folder.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
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
    assert.match(info, /· wasm×2$/, `WebAssembly kernels on 2 threads: ${info}`);

    const promptTokens = model.tokenizer.encode(PROMPT).length;
    const greedy = runReference(promptTokens, GREEDY);
    const browser = await generate(page, 'browser', GREEDY);
    assert.equal(browser.text, greedy);
    // the prompt and the completion are separate elements, drawn apart (the legend's swatches)
    assert.equal(await page.textContent('#output-prompt'), PROMPT);
    assert.equal(await page.textContent('#output-completion'), greedy.slice(PROMPT.length));
    const background = (id: string): Promise<string> => page.evaluate(`getComputedStyle(document.getElementById('${id}')).backgroundColor`);
    assert.notEqual(await background('output-prompt'), await background('output-completion'));
    const shot = join(tmpdir(), 'llama2ts-playground.png');
    await page.screenshot({ path: shot, fullPage: true });
    t.diagnostic(`screenshot: ${shot}`);
    t.diagnostic(`browser, greedy: ${browser.stats}`);

    // seeded sampling: the same text in the browser, through the API, and from llama2 run
    const sampled = runReference(promptTokens, SAMPLED);
    assert.notEqual(sampled, greedy);
    const browserSampled = await generate(page, 'browser', SAMPLED);
    assert.equal(browserSampled.text, sampled);
    // tok/s while the text arrives (the server streams it): the live stats lines (data-live) seen meanwhile
    await recordLiveStats(page);
    const api = await generate(page, 'server', SAMPLED);
    assert.equal(api.text, sampled);
    const live = await page.evaluate('globalThis.liveStats') as string[];
    assert.ok(live.length >= 1, 'no live stats line while the text arrived');
    const counts = live.map((l) => {
      const m = /^(\d+) tokens · (\d+\.\d) tok\/s · \d+\.\d s$/.exec(l);
      assert.ok(m !== null, l);
      return Number(m[1]);
    });
    assert.ok(counts.every((c, i) => c > 0 && c <= MAX_TOKENS && (i === 0 || c >= counts[i - 1]!)), `token counts rise: ${counts.join(' ')}`);
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
    assert.match(info, /· js \(page not cross-origin isolated/);
    assert.equal((await generate(page, 'browser', GREEDY)).text, runReference(5, GREEDY)); // 5 prompt tokens, BOS included
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await new Promise((resolve) => host.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------------------------------------------
// The product's paths, against a static host that counts downloads (and can be slow or missing)

interface Host {
  readonly url: string;
  /** GET requests per path. */
  readonly hits: Map<string, number>;
  close(): Promise<void>;
}

/** dist/web with stories260K beside it, served with COOP/COEP; /slow-tokenizer.bin trickles for ~2 s; others 404. */
async function staticHost(): Promise<Host> {
  const files = new Map<string, Buffer>([['/model.bin', readFileSync(MODEL)], ['/tokenizer.bin', readFileSync(TOKENIZER)]]);
  const web = join(projectRoot, 'dist', 'web');
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm' };
  const hits = new Map<string, number>();
  const host = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const headers = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
    if (path === '/slow-tokenizer.bin') {
      const body = files.get('/tokenizer.bin')!;
      res.writeHead(200, { ...headers, 'Content-Length': body.length });
      let sent = 0;
      const timer = setInterval(() => {
        const n = Math.min(body.length - sent, Math.ceil(body.length / 20));
        res.write(body.subarray(sent, sent + n));
        sent += n;
        if (sent >= body.length) {
          clearInterval(timer);
          res.end();
        }
      }, 100);
      res.on('close', () => clearInterval(timer));
      return;
    }
    const bytes = files.get(path) ?? (/^\/[\w.-]*$/.test(path) && existsSync(join(web, path === '/' ? 'index.html' : path)) ? readFileSync(join(web, path === '/' ? 'index.html' : path)) : undefined);
    if (bytes === undefined) {
      res.writeHead(404, headers).end();
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Type': types[extname(path === '/' ? 'index.html' : path)] ?? 'application/octet-stream', 'Content-Length': bytes.length }).end(bytes);
  });
  await new Promise<void>((resolve) => host.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(host.address() as AddressInfo).port}`,
    hits,
    close: () => new Promise((resolve) => host.close(() => resolve())),
  };
}

/** From now on, every live stats line (data-live) the page shows goes into globalThis.liveStats. */
async function recordLiveStats(page: Page): Promise<void> {
  await page.evaluate(`{
    const stats = document.getElementById('stats');
    globalThis.liveStats = [];
    new MutationObserver(() => { if (stats.dataset.live === 'true') globalThis.liveStats.push(stats.textContent); })
      .observe(stats, { childList: true, characterData: true, subtree: true, attributes: true });
  }`);
}

async function waitState(page: Page, states: string[], timeout = 20_000): Promise<string> {
  await page.waitForSelector(states.map((st) => `#status[data-state="${st}"]`).join(', '), { timeout });
  return (await page.getAttribute('#status', 'data-state'))!;
}

/** What `llama2 run -m chat` prints for one turn ("Assistant: ANSWER\n…"). */
function chatReference(system: string, user: string, positions: number, s: Sampling): string {
  const out = execFileSync(process.execPath, [cliPath, 'run', MODEL, '-z', TOKENIZER, '-m', 'chat', '-y', system, '-i', user,
    '-n', String(positions), '-t', s.temperature, '-p', s.topP, '-s', s.seed], { encoding: 'utf8', input: '', stdio: ['pipe', 'pipe', 'ignore'] });
  return out;
}

test('playground chat: messages, a system prompt, the model\'s template; the answer llama2 run -m chat gives, in the browser and through the API', { skip, timeout: 90_000 }, async (t) => {
  const kernels = await createKernels({ kind: 'wasm', threads: 1 });
  const model = loadServedModel({ modelPath: MODEL, tokenizerPath: TOKENIZER }, kernels);
  const { server, url } = await startServer(model, { port: 0, webRoot: join(projectRoot, 'dist', 'web') });
  const browser = await launch();
  try {
    const errors: string[] = [];
    const { page } = await openPage(browser.context, `${url}/?tab=chat`, errors);
    assert.equal(await page.isVisible('#panel-chat'), true);
    assert.match((await page.textContent('#template')) ?? '', /chat template: Llama 2: \[INST\]/);
    await page.fill('#temperature', SAMPLED.temperature);
    await page.fill('#top-p', SAMPLED.topP);
    await page.fill('#seed', SAMPLED.seed);
    await page.fill('#max-tokens', '40');
    await page.click('#system-box summary');
    await page.fill('#system', 'You tell stories.');
    const ask = async (text: string): Promise<string> => {
      await page.fill('#chat-input', text);
      await page.press('#chat-input', 'Enter');
      assert.equal(await waitState(page, ['done', 'error']), 'done', (await page.textContent('#error-text')) ?? '');
      return (await page.locator('#messages li.assistant').last().textContent()) ?? '';
    };
    await recordLiveStats(page);
    const first = await ask('Tell me about a cat.');
    const done = (await page.textContent('#stats')) ?? '';
    const promptTokens = Number(/\(prompt (\d+)\)/.exec(done)![1]);
    // tok/s counts the generated tokens, as the live line does: the final figure is the last live
    // one (not the engine's count of every position, which the prompt's batched prefill inflates)
    const lastLive = (await page.evaluate('globalThis.liveStats') as string[]).at(-1) ?? '';
    const rate = (line: string): number => Number(/([\d.]+) tok\/s/.exec(line)?.[1]);
    assert.ok(Math.abs(rate(done) - rate(lastLive)) <= 0.1 + 1e-3 * rate(lastLive), `final "${done}" vs live "${lastLive}"`);
    const reference = chatReference('You tell stories.', 'Tell me about a cat.', promptTokens - 1 + 40, SAMPLED);
    assert.ok(first.length > 0 && reference.startsWith(`Assistant: ${first}\n`), `${JSON.stringify(reference)} vs ${JSON.stringify(first)}`);
    const second = await ask('And then?');
    assert.ok(second.length > 0);
    assert.deepEqual(await page.locator('#messages li').evaluateAll((els) => els.map((e) => e.className)), ['user', 'assistant', 'user', 'assistant']);
    const shot = join(tmpdir(), 'llama2ts-playground-chat.png');
    await page.screenshot({ path: shot });
    t.diagnostic(`screenshot (desktop chat): ${shot}`);
    // a new chat through the server's API: the same first answer
    await page.click('#new-chat');
    assert.equal(await page.locator('#messages li').count(), 0);
    await page.check('#mode-server');
    assert.equal(await ask('Tell me about a cat.'), first);
    assert.match((await page.textContent('#stats')) ?? '', /through the API/);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await server.close(1000);
    await kernels.close();
  }
});

test('playground errors: a missing model shows beside the output, nothing stays stuck, Load works again', { skip, timeout: 60_000 }, async (t) => {
  const host = await staticHost();
  const browser = await launch();
  try {
    const page = browser.context.pages()[0] ?? await browser.context.newPage();
    // the model 404s while the (slow) tokenizer is still downloading: its progress must not
    // bring back a "loading" state after the error
    await page.goto(`${host.url}/?model=missing.bin&tokenizer=slow-tokenizer.bin`);
    assert.equal(await waitState(page, ['ready', 'error']), 'error');
    assert.match((await page.textContent('#error-text')) ?? '', /loading the model failed: cannot fetch the model \(http:\/\/127\.0\.0\.1:\d+\/missing\.bin\): HTTP 404/);
    const box = await page.locator('#error').boundingBox();
    const output = await page.locator('#output').boundingBox();
    assert.ok(box !== null && output !== null && output.y - (box.y + box.height) < 200, 'the error sits just above the output');
    await new Promise((r) => setTimeout(r, 2500)); // the slow tokenizer would have finished by now
    assert.equal(await page.getAttribute('#status', 'data-state'), 'error');
    assert.equal(await page.isDisabled('#load'), false, 'Load is enabled again');
    assert.equal(await page.isDisabled('#generate'), true, 'no model: nothing to generate with');
    const shot = join(tmpdir(), 'llama2ts-playground-error.png');
    await page.screenshot({ path: shot });
    t.diagnostic(`screenshot (error): ${shot}`);
    // fixed URLs: the same page loads and generates
    await page.fill('#model-url', 'model.bin');
    await page.fill('#tokenizer-url', 'tokenizer.bin');
    await page.click('#load');
    assert.equal(await waitState(page, ['ready', 'error']), 'ready');
    assert.equal(await page.isHidden('#error'), true);
    assert.equal((await generate(page, 'browser', GREEDY)).text, runReference(5, GREEDY));
    // a bad setting is an error beside the output too, and the page stays usable
    await page.fill('#max-tokens', '0');
    await page.click('#generate');
    assert.equal(await waitState(page, ['error']), 'error');
    assert.match((await page.textContent('#error-text')) ?? '', /max tokens must be a positive integer/);
    assert.equal(await page.isDisabled('#generate'), false);
    // a model larger than the page lets it take (the library's memoryLimit, 512 KiB here) is
    // refused before it is read, saying what it needs
    const refusal = await page.evaluate(async () => {
      const url = './llama2ts.js';
      const { LanguageModel } = await import(url) as { LanguageModel: { load(model: string, o: object): Promise<{ close(): void }> } };
      try {
        (await LanguageModel.load('model.bin', { tokenizer: 'tokenizer.bin', memoryLimit: 512 * 1024, cache: false })).close();
        return 'loaded';
      } catch (err) {
        return (err as Error).message;
      }
    });
    assert.match(refusal, /^model\.bin: not enough memory \(0\.5 MiB available\); it needs \d+\.\d MiB \(weights \d+\.\d MiB as float32, KV cache/);
  } finally {
    await browser.close();
    await host.close();
  }
});

test('playground on a phone: the output first, nothing wider than the screen', { skip, timeout: 60_000 }, async (t) => {
  const host = await staticHost();
  const browser = await launch();
  try {
    const page = browser.context.pages()[0] ?? await browser.context.newPage();
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${host.url}/`);
    assert.equal(await waitState(page, ['ready', 'error']), 'ready');
    assert.equal((await generate(page, 'browser', GREEDY)).text, runReference(5, GREEDY));
    const y = async (selector: string): Promise<number> => (await page.locator(selector).boundingBox())!.y;
    assert.ok(await y('#output') < await y('.controls'), 'the output comes before the settings');
    assert.ok(await y('#output') + 100 < 844, 'the output starts on the first screen');
    const widest = await page.evaluate(() => (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } }).document.documentElement.scrollWidth);
    assert.ok(widest <= 390, `page width ${widest} px on a 390 px screen`);
    const shot = join(tmpdir(), 'llama2ts-playground-phone.png');
    await page.screenshot({ path: shot });
    t.diagnostic(`screenshot (phone): ${shot}`);
  } finally {
    await browser.close();
    await host.close();
  }
});

test('playground reload: the model comes from the browser\'s cache, not the network; local files load too', { skip, timeout: 60_000 }, async () => {
  const host = await staticHost();
  const browser = await launch();
  try {
    const page = browser.context.pages()[0] ?? await browser.context.newPage();
    await page.goto(`${host.url}/`);
    assert.equal(await waitState(page, ['ready', 'error']), 'ready');
    assert.match((await page.textContent('#engine-info')) ?? '', /^model\.bin \(downloaded\)/);
    assert.equal(host.hits.get('/model.bin'), 1);
    await page.reload();
    assert.equal(await waitState(page, ['ready', 'error']), 'ready');
    assert.match((await page.textContent('#engine-info')) ?? '', /^model\.bin \(from the browser's cache\)/);
    assert.equal(host.hits.get('/model.bin'), 1, 'no second download');
    assert.equal(host.hits.get('/tokenizer.bin'), 1);
    const reference = runReference(5, GREEDY);
    assert.equal((await generate(page, 'browser', GREEDY)).text, reference);
    // emptied, the next load downloads again
    await page.click('#clear-cache');
    await page.waitForSelector('#engine-info:has-text("removed 2 files")');
    await page.click('#load');
    assert.equal(await waitState(page, ['ready', 'error']), 'ready');
    assert.equal(host.hits.get('/model.bin'), 2);

    // a local model file and its tokenizer, from the file picker
    await page.setInputFiles('#file', [MODEL, TOKENIZER]);
    assert.equal(await waitState(page, ['ready', 'error']), 'ready');
    assert.match((await page.textContent('#engine-info')) ?? '', /^stories260K\.bin \(a local file\)/);
    assert.equal((await generate(page, 'browser', GREEDY)).text, reference);
    // … and dropped on the page (the tokenizer from its URL field)
    const dropped = await page.evaluateHandle((bytes) => {
      const g = globalThis as unknown as { DataTransfer: new () => { items: { add(f: unknown): void } }; File: new (parts: unknown[], name: string) => unknown };
      const dt = new g.DataTransfer();
      dt.items.add(new g.File([new Uint8Array(bytes)], 'dropped.bin'));
      return dt;
    }, [...readFileSync(MODEL)]);
    await page.dispatchEvent('body', 'drop', { dataTransfer: dropped });
    assert.equal(await waitState(page, ['ready', 'error']), 'ready');
    assert.match((await page.textContent('#engine-info')) ?? '', /^dropped\.bin \(a local file\)/);
    assert.equal((await generate(page, 'browser', GREEDY)).text, reference);
  } finally {
    await browser.close();
    await host.close();
  }
});
