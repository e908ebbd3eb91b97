// The playground on WebGPU: headless Debian chromium with WebGPU on SwiftShader (its CPU Vulkan
// driver) loads the page from `llama2 serve`, the engine worker finds navigator.gpu's adapter and
// runs stories260K there (the page says so), and greedy text equals what `llama2 run` prints.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { jsKernelSet } from '../src/kernels/kernel-set.js';
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
const MAX_TOKENS = 60;

test('playground on WebGPU (SwiftShader in chromium): the page runs the GPU engine and prints llama2 run\'s greedy text', { skip, timeout: 120_000 }, async (t) => {
  const model = loadServedModel({ modelPath: MODEL, tokenizerPath: TOKENIZER }, jsKernelSet);
  const { server, url } = await startServer(model, { port: 0, webRoot: join(projectRoot, 'dist', 'web') });
  const profile = mkdtempSync(join(tmpdir(), 'llama2ts-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', '--headless', '--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader', '--use-angle=swiftshader',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
    ],
  });
  try {
    const errors: string[] = [];
    const page = context.pages()[0] ?? await context.newPage();
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(url);
    await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]', { timeout: 60_000 });
    assert.equal(await page.getAttribute('#status', 'data-state'), 'ready', `loading failed: ${await page.textContent('#status')}`);
    const info = (await page.textContent('#engine-info')) ?? '';
    assert.match(info, /webgpu \(.*swiftshader.*\)/i, `the page shows the WebGPU engine: ${info}`);

    await page.check('#mode-browser');
    await page.fill('#prompt', PROMPT);
    await page.fill('#temperature', '0');
    await page.fill('#max-tokens', String(MAX_TOKENS));
    await page.fill('#seed', '42');
    await page.click('#generate');
    await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 90_000 });
    assert.equal(await page.getAttribute('#status', 'data-state'), 'done', `the page reports: ${await page.textContent('#status')}`);
    const text = (await page.textContent('#output')) ?? '';
    const promptTokens = model.tokenizer.encode(PROMPT).length;
    const expected = execFileSync(process.execPath, [
      cliPath, 'run', MODEL, '-z', TOKENIZER, '-t', '0', '-i', PROMPT, '-n', String(promptTokens - 1 + MAX_TOKENS),
    ], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).replace(/\n$/, '');
    assert.equal(text, expected);
    t.diagnostic(`${info} · ${(await page.textContent('#stats')) ?? ''}`);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
    await server.close(1000);
  }
});
