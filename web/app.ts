// The playground page: a prompt, sampling controls, the streamed text and its speed. Generation
// runs in the browser (engine-worker.ts, a Web Worker) or, switched over, through the server's
// /v1/completions (server-sent events). Either way the text shown is the prompt as the model
// reads it followed by the completion — what `llama2 run -i PROMPT` prints.
//
// Query parameters: model=URL, tokenizer=URL (default model.bin and tokenizer.bin beside the
// page), mode=browser|server, threads=N.

import type { GenerateStats, ModelInfo } from './protocol.js';
import { LanguageModel } from './llama2ts.js';

interface GenerateSettings {
  readonly prompt: string;
  readonly maxTokens: number;
  readonly temperature: number;
  readonly topP: number;
  readonly seed: number | undefined;
}

function $<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`the page has no #${id}`);
  return el as T;
}

const ui = {
  modeBrowser: $<HTMLInputElement>('mode-browser'),
  modeServer: $<HTMLInputElement>('mode-server'),
  modelUrl: $<HTMLInputElement>('model-url'),
  tokenizerUrl: $<HTMLInputElement>('tokenizer-url'),
  threads: $<HTMLSelectElement>('threads'),
  load: $<HTMLButtonElement>('load'),
  engineInfo: $<HTMLElement>('engine-info'),
  prompt: $<HTMLTextAreaElement>('prompt'),
  temperature: $<HTMLInputElement>('temperature'),
  temperatureValue: $<HTMLOutputElement>('temperature-value'),
  topP: $<HTMLInputElement>('top-p'),
  topPValue: $<HTMLOutputElement>('top-p-value'),
  maxTokens: $<HTMLInputElement>('max-tokens'),
  seed: $<HTMLInputElement>('seed'),
  generate: $<HTMLButtonElement>('generate'),
  stop: $<HTMLButtonElement>('stop'),
  output: $<HTMLElement>('output'),
  stats: $<HTMLElement>('stats'),
  status: $<HTMLElement>('status'),
};

type State = 'idle' | 'loading' | 'ready' | 'generating' | 'done' | 'error';

/** Shows the state (also as data-state, which the end-to-end test waits on). */
function setStatus(state: State, message: string): void {
  ui.status.dataset['state'] = state;
  ui.status.textContent = message;
  const generating = state === 'generating';
  const browserReady = engineInfo !== undefined;
  ui.generate.disabled = generating || state === 'loading' || (mode() === 'browser' && !browserReady);
  ui.stop.disabled = !generating;
  ui.load.disabled = generating || state === 'loading';
}

function mode(): 'browser' | 'server' {
  return ui.modeServer.checked ? 'server' : 'browser';
}

function settings(): GenerateSettings {
  const seedText = ui.seed.value.trim();
  const maxTokens = Number(ui.maxTokens.value);
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new Error('max tokens must be a positive integer');
  const seed = seedText === '' ? undefined : Number(seedText);
  if (seed !== undefined && !Number.isSafeInteger(seed)) throw new Error('the seed must be an integer (or empty for a random one)');
  return { prompt: ui.prompt.value, maxTokens, temperature: Number(ui.temperature.value), topP: Number(ui.topP.value), seed: seed === 0 ? undefined : seed };
}

function showStats(s: Pick<GenerateStats, 'promptTokens' | 'completionTokens' | 'tokensPerSecond'> & { finishReason: string }, where: string): void {
  ui.stats.textContent = `${s.completionTokens} tokens (prompt ${s.promptTokens}) · ${s.tokensPerSecond.toFixed(1)} tok/s · ${where} · finish: ${s.finishReason}`;
}

// ------------------------------------------------------------------------------------------------
// In the browser

let engine: LanguageModel | undefined;
let engineInfo: ModelInfo | undefined;
let loads = 0;
let browserRun: AbortController | undefined;

function showInfo(info: ModelInfo): void {
  ui.engineInfo.textContent = `dim ${info.dim}, ${info.nLayers} layers, ${info.nHeads} heads, vocabulary ${info.vocabSize}, ` +
    `context ${info.seqLen} · ${info.kernels} kernels${info.crossOriginIsolated ? '' : ' (page not cross-origin isolated: no WebAssembly threads)'}`;
}

async function loadModel(): Promise<void> {
  const load = ++loads;
  engineInfo = undefined;
  ui.engineInfo.textContent = '';
  setStatus('loading', 'loading the model');
  const options = {
    tokenizer: ui.tokenizerUrl.value, threads: Number(ui.threads.value),
    onProgress: (message: string) => load === loads && setStatus('loading', message),
  };
  try {
    if (engine === undefined) engine = await LanguageModel.load(ui.modelUrl.value, options);
    else await engine.reload(ui.modelUrl.value, options);
    if (load !== loads) return;
    engineInfo = engine.info;
    showInfo(engine.info);
    setStatus('ready', 'model loaded');
  } catch (err) {
    if (load === loads) setStatus('error', (err as Error).message);
  }
}

async function generateInBrowser(s: GenerateSettings): Promise<void> {
  if (engine === undefined) throw new Error('no model is loaded');
  browserRun = new AbortController();
  const stats = await engine.generate(
    { kind: 'complete', prompt: s.prompt, echo: true, maxTokens: s.maxTokens, temperature: s.temperature, topP: s.topP, seed: s.seed, stop: [] },
    (e) => ui.output.append(e.text), browserRun.signal,
  );
  showStats(stats, `in the browser (${engineInfo?.kernels ?? '?'})`);
  setStatus('done', stats.finishReason === 'aborted' ? 'stopped' : 'done');
}

// ------------------------------------------------------------------------------------------------
// Through the server's API

let request: AbortController | undefined;

async function generateOnServer(s: GenerateSettings): Promise<void> {
  request = new AbortController();
  const started = performance.now();
  const response = await fetch(new URL('v1/completions', location.href), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      prompt: s.prompt, max_tokens: s.maxTokens, temperature: s.temperature, top_p: s.topP,
      ...(s.seed !== undefined ? { seed: s.seed } : {}), echo: true, stream: true, stream_options: { include_usage: true },
    }),
    signal: request.signal,
  });
  if (!response.ok || response.body === null) {
    const text = await response.text();
    let message = `HTTP ${response.status}`;
    try {
      message += `: ${(JSON.parse(text) as { error: { message: string } }).error.message}`;
    } catch {
      // not an API error object (a static host without the API)
    }
    throw new Error(message);
  }
  let finish = '?';
  let usage = { prompt_tokens: 0, completion_tokens: 0 };
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += value;
    // server-sent events are separated by a blank line; each of ours is one "data: …" line
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (!event.startsWith('data: ')) continue;
      const data = event.slice(6);
      if (data === '[DONE]') continue;
      const chunk = JSON.parse(data) as {
        error?: { message: string };
        choices?: Array<{ text: string; finish_reason: string | null }>;
        usage?: { prompt_tokens: number; completion_tokens: number };
      };
      if (chunk.error) throw new Error(chunk.error.message);
      for (const c of chunk.choices ?? []) {
        ui.output.append(c.text);
        if (c.finish_reason !== null) finish = c.finish_reason;
      }
      if (chunk.usage) usage = chunk.usage;
    }
  }
  const seconds = (performance.now() - started) / 1000;
  showStats({
    promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens,
    tokensPerSecond: seconds > 0 ? usage.completion_tokens / seconds : 0, finishReason: finish,
  }, 'through the API');
  setStatus('done', 'done');
}

// ------------------------------------------------------------------------------------------------
// Wiring

function generate(): void {
  let s: GenerateSettings;
  try {
    s = settings();
  } catch (err) {
    setStatus('error', (err as Error).message);
    return;
  }
  ui.output.textContent = '';
  ui.stats.textContent = '';
  setStatus('generating', mode() === 'browser' ? 'generating in the browser' : 'generating on the server');
  (mode() === 'browser' ? generateInBrowser(s) : generateOnServer(s)).catch((err: unknown) => {
    if ((err as Error).name === 'AbortError') setStatus('done', 'stopped');
    else setStatus('error', (err as Error).message);
  });
}

function stop(): void {
  if (mode() === 'browser') browserRun?.abort();
  else request?.abort();
}

function init(): void {
  const q = new URLSearchParams(location.search);
  ui.modelUrl.value = q.get('model') ?? 'model.bin';
  ui.tokenizerUrl.value = q.get('tokenizer') ?? 'tokenizer.bin';
  const cores = navigator.hardwareConcurrency || 1;
  for (let n = 1; n <= Math.min(cores, 16); n *= 2) ui.threads.add(new Option(String(n), String(n)));
  ui.threads.value = q.get('threads') ?? String(Math.min(4, 2 ** Math.floor(Math.log2(cores))));
  if (q.get('mode') === 'server') ui.modeServer.checked = true;
  const sync = (input: HTMLInputElement, out: HTMLOutputElement): void => {
    out.value = Number(input.value).toFixed(2);
    input.addEventListener('input', () => (out.value = Number(input.value).toFixed(2)));
  };
  sync(ui.temperature, ui.temperatureValue);
  sync(ui.topP, ui.topPValue);
  ui.load.addEventListener('click', () => void loadModel());
  ui.generate.addEventListener('click', generate);
  ui.stop.addEventListener('click', stop);
  ui.prompt.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !ui.generate.disabled) generate();
  });
  for (const radio of [ui.modeBrowser, ui.modeServer]) {
    radio.addEventListener('change', () => {
      if (mode() === 'browser' && engineInfo === undefined) void loadModel();
      else setStatus('ready', mode() === 'browser' ? 'model loaded' : 'using the server API');
    });
  }
  if (mode() === 'browser') void loadModel();
  else setStatus('ready', 'using the server API');
}

init();
