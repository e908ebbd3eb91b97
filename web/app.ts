// The playground page. Two tabs over one model: Complete (a prompt and its continuation, the two
// told apart on screen) and Chat (a conversation, rendered with the model's chat template, with an
// optional system prompt). Generation runs in the browser (the engine in a Web Worker, through the
// browser library llama2ts.ts) or, switched over, through the server's API (server-sent events).
// The speed shows live as the text arrives; an error shows just above the output, and leaves the
// page usable (a failed load re-enables Load).
//
// Models come from URLs (downloads kept in the browser's Cache API, so a reload reads them from
// there), or from local files (the file picker, or dropped on the page).
//
// Query parameters: model=URL, tokenizer=URL (default model.bin and tokenizer.bin beside the
// page), mode=browser|server, threads=N, backend=auto|webgpu|wasm|js, tab=complete|chat.

import type { Backend, ChatMessage, GenerateRequest, GenerateStats, ModelInfo } from './protocol.js';
import { type FileInput, LanguageModel, type TextEvent } from './llama2ts.js';

function $<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`the page has no #${id}`);
  return el as T;
}

const ui = {
  status: $<HTMLElement>('status'),
  badge: $<HTMLElement>('engine-badge'),
  tabComplete: $<HTMLButtonElement>('tab-complete'),
  tabChat: $<HTMLButtonElement>('tab-chat'),
  panelComplete: $<HTMLElement>('panel-complete'),
  panelChat: $<HTMLElement>('panel-chat'),
  error: $<HTMLElement>('error'),
  errorText: $<HTMLElement>('error-text'),
  errorClose: $<HTMLButtonElement>('error-close'),
  prompt: $<HTMLTextAreaElement>('prompt'),
  generate: $<HTMLButtonElement>('generate'),
  stop: $<HTMLButtonElement>('stop'),
  output: $<HTMLElement>('output'),
  outputPrompt: $<HTMLElement>('output-prompt'),
  outputCompletion: $<HTMLElement>('output-completion'),
  system: $<HTMLTextAreaElement>('system'),
  systemSummary: $<HTMLElement>('system-summary'),
  messages: $<HTMLOListElement>('messages'),
  chatInput: $<HTMLTextAreaElement>('chat-input'),
  send: $<HTMLButtonElement>('send'),
  chatStop: $<HTMLButtonElement>('chat-stop'),
  newChat: $<HTMLButtonElement>('new-chat'),
  template: $<HTMLElement>('template'),
  stats: $<HTMLElement>('stats'),
  modeBrowser: $<HTMLInputElement>('mode-browser'),
  modeServer: $<HTMLInputElement>('mode-server'),
  modelUrl: $<HTMLInputElement>('model-url'),
  tokenizerUrl: $<HTMLInputElement>('tokenizer-url'),
  backend: $<HTMLSelectElement>('backend'),
  threads: $<HTMLSelectElement>('threads'),
  load: $<HTMLButtonElement>('load'),
  file: $<HTMLInputElement>('file'),
  engineInfo: $<HTMLElement>('engine-info'),
  useCache: $<HTMLInputElement>('use-cache'),
  clearCache: $<HTMLButtonElement>('clear-cache'),
  temperature: $<HTMLInputElement>('temperature'),
  temperatureValue: $<HTMLOutputElement>('temperature-value'),
  topP: $<HTMLInputElement>('top-p'),
  topPValue: $<HTMLOutputElement>('top-p-value'),
  maxTokens: $<HTMLInputElement>('max-tokens'),
  seed: $<HTMLInputElement>('seed'),
  stopStrings: $<HTMLInputElement>('stop-strings'),
  dropOverlay: $<HTMLElement>('drop-overlay'),
};

type State = 'idle' | 'loading' | 'ready' | 'generating' | 'done' | 'error';
let state: State = 'idle';

/** Shows the state (also as data-state, which the end-to-end tests wait on) and enables what can be used. */
function setStatus(next: State, message: string): void {
  state = next;
  ui.status.dataset['state'] = next;
  ui.status.textContent = message;
  const busy = next === 'generating' || next === 'loading';
  const canRun = !busy && (mode() === 'server' || engine?.info !== undefined && modelReady);
  ui.generate.disabled = !canRun;
  ui.send.disabled = !canRun;
  ui.stop.disabled = next !== 'generating';
  ui.chatStop.disabled = next !== 'generating';
  ui.load.disabled = busy;
  ui.file.disabled = busy;
  ui.newChat.disabled = next === 'generating';
}

function showError(message: string): void {
  ui.errorText.textContent = message;
  ui.error.hidden = false;
  setStatus('error', 'error');
}

function clearError(): void {
  ui.error.hidden = true;
  ui.errorText.textContent = '';
}

function mode(): 'browser' | 'server' {
  return ui.modeServer.checked ? 'server' : 'browser';
}

interface Sampling {
  readonly maxTokens: number;
  readonly temperature: number;
  readonly topP: number;
  readonly seed: number | undefined;
  readonly stop: string[];
}

function sampling(): Sampling {
  const seedText = ui.seed.value.trim();
  const maxTokens = Number(ui.maxTokens.value);
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new Error('max tokens must be a positive integer');
  const seed = seedText === '' ? undefined : Number(seedText);
  if (seed !== undefined && !Number.isSafeInteger(seed)) throw new Error('the seed must be an integer (or empty for a random one)');
  // stop strings separated by |, with \n for a line break
  const stop = ui.stopStrings.value.split('|').map((s) => s.replace(/\\n/g, '\n')).filter((s) => s !== '');
  return { maxTokens, temperature: Number(ui.temperature.value), topP: Number(ui.topP.value), seed: seed === 0 ? undefined : seed, stop };
}

// ------------------------------------------------------------------------------------------------
// Speed, as the text arrives

/**
 * Generated tokens per second of the request so far — the time includes the prompt's, and only the
 * generated tokens count (the engine's own figure, llama2 run's, also counts the prompt positions,
 * which a batched prefill runs many times faster: a chat's 40 tokens after a 122-token prompt
 * would read as tens of thousands of tok/s). The live line, the final one and the API's agree.
 */
function perSecond(tokens: number, elapsedMs: number): number {
  return elapsedMs > 0 ? (tokens / elapsedMs) * 1000 : 0;
}

function showLive(tokens: number, elapsedMs: number): void {
  ui.stats.textContent = `${tokens} tokens · ${perSecond(tokens, elapsedMs).toFixed(1)} tok/s · ${(elapsedMs / 1000).toFixed(1)} s`;
  ui.stats.dataset['live'] = 'true';
}

function showStats(s: Pick<GenerateStats, 'promptTokens' | 'completionTokens' | 'tokensPerSecond'> & { finishReason: string }, where: string): void {
  ui.stats.textContent = `${s.completionTokens} tokens (prompt ${s.promptTokens}) · ${s.tokensPerSecond.toFixed(1)} tok/s · ${where} · finish: ${s.finishReason}`;
  ui.stats.dataset['live'] = 'false';
}

// ------------------------------------------------------------------------------------------------
// The model in the browser

let engine: LanguageModel | undefined;
/** True once a load succeeded and no later one is in progress or failed. */
let modelReady = false;
let loads = 0;

function describe(info: ModelInfo, source: string): string {
  const where = info.modelFrom === 'cache' ? "from the browser's cache" : info.modelFrom === 'bytes' ? 'a local file' : 'downloaded';
  return `${source} (${where}): dim ${info.dim}, ${info.nLayers} layers, ${info.nHeads} heads, vocabulary ${info.vocabSize}, ` +
    `context ${info.seqLen}, ${info.parameters.toLocaleString('en-US')} parameters · ${info.kernels}` +
    `${info.crossOriginIsolated ? '' : ' (page not cross-origin isolated: no WebAssembly threads)'}`;
}

/** Loads a model from the URL fields, or from local files. */
async function loadModel(files?: { model: File; tokenizer: File | undefined }): Promise<void> {
  const load = ++loads;
  modelReady = false;
  clearError();
  ui.engineInfo.textContent = '';
  ui.stats.textContent = '';
  ui.badge.hidden = true;
  setStatus('loading', 'loading the model');
  const model: FileInput = files?.model ?? ui.modelUrl.value;
  const options = {
    tokenizer: files?.tokenizer ?? ui.tokenizerUrl.value,
    backend: ui.backend.value as Backend,
    threads: Number(ui.threads.value),
    cache: ui.useCache.checked,
    onProgress: (message: string) => {
      if (load === loads) setStatus('loading', message);
    },
  };
  try {
    if (engine === undefined) engine = await LanguageModel.load(model, options);
    else await engine.reload(model, options);
    if (load !== loads) return;
    modelReady = true;
    const info = engine.info;
    ui.engineInfo.textContent = describe(info, files ? files.model.name : ui.modelUrl.value);
    ui.badge.textContent = info.kernels;
    ui.badge.dataset['backend'] = info.kernels;
    ui.badge.hidden = false;
    ui.template.textContent = `chat template: ${info.chatTemplate}`;
    setStatus('ready', 'model loaded');
  } catch (err) {
    if (load === loads) showError(`loading the model failed: ${(err as Error).message}`);
  }
}

let run: AbortController | undefined;

// ------------------------------------------------------------------------------------------------
// Through the server's API

/** Posts a streamed request; calls onText with each chunk's text; resolves with usage and finish reason. */
async function streamFromServer(path: string, body: object, onText: (text: string, chunks: number, ms: number) => void, signal: AbortSignal): Promise<{ usage: { prompt_tokens: number; completion_tokens: number }; finish: string; ms: number }> {
  const started = performance.now();
  const response = await fetch(new URL(path, location.href), {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }), signal,
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
  let chunks = 0;
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
        choices?: Array<{ text?: string; delta?: { content?: string }; finish_reason: string | null }>;
        usage?: { prompt_tokens: number; completion_tokens: number };
      };
      if (chunk.error) throw new Error(chunk.error.message);
      for (const c of chunk.choices ?? []) {
        const text = c.text ?? c.delta?.content ?? '';
        if (text !== '') onText(text, ++chunks, performance.now() - started);
        if (c.finish_reason !== null) finish = c.finish_reason;
      }
      if (chunk.usage) usage = chunk.usage;
    }
  }
  return { usage, finish, ms: performance.now() - started };
}

function serverStats(r: Awaited<ReturnType<typeof streamFromServer>>): void {
  showStats({
    promptTokens: r.usage.prompt_tokens, completionTokens: r.usage.completion_tokens,
    tokensPerSecond: perSecond(r.usage.completion_tokens, r.ms), finishReason: r.finish,
  }, 'through the API');
}

// ------------------------------------------------------------------------------------------------
// Complete

/**
 * Runs a request on the page's engine: onText gets each piece of text, the live tok/s follows the
 * completion, and the final figure is its tokens over the time they took (as the live line counts).
 */
async function generateHere(request: GenerateRequest, onText: (e: TextEvent) => void): Promise<void> {
  let elapsedMs = 0;
  const stats = await engine!.generate(request, (e) => {
    onText(e);
    if (e.part === 'completion') {
      elapsedMs = e.elapsedMs;
      showLive(e.tokens, e.elapsedMs);
    }
  }, run!.signal);
  showStats({ ...stats, tokensPerSecond: perSecond(stats.completionTokens, elapsedMs) }, `in the browser (${engine!.info.kernels})`);
  setStatus('done', stats.finishReason === 'aborted' ? 'stopped' : 'done');
}

async function complete(): Promise<void> {
  const s = sampling();
  const prompt = ui.prompt.value;
  ui.outputPrompt.textContent = '';
  ui.outputCompletion.textContent = '';
  ui.stats.textContent = '';
  run = new AbortController();
  if (mode() === 'browser') {
    setStatus('generating', 'generating in the browser');
    await generateHere({ kind: 'complete', prompt, echo: true, ...s }, (e) => (e.part === 'prompt' ? ui.outputPrompt : ui.outputCompletion).append(e.text));
  } else {
    setStatus('generating', 'generating on the server');
    let echoed = prompt === ''; // with echo, the server's first piece is the prompt's text
    const r = await streamFromServer('v1/completions', {
      prompt, max_tokens: s.maxTokens, temperature: s.temperature, top_p: s.topP, echo: true,
      ...(s.seed !== undefined ? { seed: s.seed } : {}), ...(s.stop.length > 0 ? { stop: s.stop } : {}),
    }, (text, chunks, ms) => {
      if (!echoed) {
        echoed = true;
        ui.outputPrompt.append(text);
        return;
      }
      ui.outputCompletion.append(text);
      showLive(chunks - 1, ms);
    }, run.signal);
    serverStats(r);
    setStatus('done', 'done');
  }
}

// ------------------------------------------------------------------------------------------------
// Chat

const conversation: ChatMessage[] = [];

function addBubble(role: ChatMessage['role'], text: string): HTMLLIElement {
  const li = document.createElement('li');
  li.className = role;
  li.textContent = text;
  ui.messages.append(li);
  li.scrollIntoView({ block: 'nearest' });
  return li;
}

function resetChat(): void {
  conversation.length = 0;
  ui.messages.textContent = '';
  ui.stats.textContent = '';
}

async function sendChat(): Promise<void> {
  const text = ui.chatInput.value.trim();
  if (text === '') return;
  const s = sampling();
  const system = ui.system.value.trim();
  const messages: ChatMessage[] = [...(system !== '' ? [{ role: 'system' as const, content: system }] : []), ...conversation, { role: 'user', content: text }];
  conversation.push({ role: 'user', content: text });
  addBubble('user', text);
  ui.chatInput.value = '';
  const answer = addBubble('assistant', '');
  run = new AbortController();
  let reply = '';
  try {
    if (mode() === 'browser') {
      setStatus('generating', 'answering in the browser');
      await generateHere({ kind: 'chat', messages, ...s }, (e) => {
        reply += e.text;
        answer.textContent = reply;
      });
    } else {
      setStatus('generating', 'answering on the server');
      const r = await streamFromServer('v1/chat/completions', {
        messages, max_tokens: s.maxTokens, temperature: s.temperature, top_p: s.topP,
        ...(s.seed !== undefined ? { seed: s.seed } : {}), ...(s.stop.length > 0 ? { stop: s.stop } : {}),
      }, (piece, chunks, ms) => {
        reply += piece;
        answer.textContent = reply;
        showLive(chunks, ms);
      }, run.signal);
      serverStats(r);
      setStatus('done', 'done');
    }
  } finally {
    conversation.push({ role: 'assistant', content: reply });
  }
}

// ------------------------------------------------------------------------------------------------
// Wiring

/** Runs an action of the Generate/Send buttons; its error shows beside the output. */
function start(action: () => Promise<void>): void {
  clearError();
  action().catch((err: unknown) => {
    if ((err as Error).name === 'AbortError') setStatus('done', 'stopped');
    else showError((err as Error).message);
  });
}

function stop(): void {
  run?.abort();
}

function selectTab(tab: 'complete' | 'chat'): void {
  if (state !== 'generating') ui.stats.textContent = '';
  ui.tabComplete.setAttribute('aria-selected', String(tab === 'complete'));
  ui.tabChat.setAttribute('aria-selected', String(tab === 'chat'));
  ui.panelComplete.hidden = tab !== 'complete';
  ui.panelChat.hidden = tab !== 'chat';
}

/** A checkpoint and maybe its tokenizer from dropped or picked files: the larger one is the model. */
function openFiles(list: FileList | null): void {
  const files = [...(list ?? [])].sort((a, b) => b.size - a.size);
  if (files.length === 0) return;
  if (files.length > 2) {
    showError(`drop one checkpoint, or a checkpoint and its tokenizer (got ${files.length} files)`);
    return;
  }
  ui.modeBrowser.checked = true;
  void loadModel({ model: files[0]!, tokenizer: files[1] });
}

function init(): void {
  const q = new URLSearchParams(location.search);
  ui.modelUrl.value = q.get('model') ?? 'model.bin';
  ui.tokenizerUrl.value = q.get('tokenizer') ?? 'tokenizer.bin';
  const cores = navigator.hardwareConcurrency || 1;
  for (let n = 1; n <= Math.min(cores, 16); n *= 2) ui.threads.add(new Option(String(n), String(n)));
  ui.threads.value = q.get('threads') ?? String(Math.min(4, 2 ** Math.floor(Math.log2(cores))));
  ui.backend.value = q.get('backend') ?? 'auto';
  if (q.get('mode') === 'server') ui.modeServer.checked = true;
  selectTab(q.get('tab') === 'chat' ? 'chat' : 'complete');
  const sync = (input: HTMLInputElement, out: HTMLOutputElement): void => {
    out.value = Number(input.value).toFixed(2);
    input.addEventListener('input', () => (out.value = Number(input.value).toFixed(2)));
  };
  sync(ui.temperature, ui.temperatureValue);
  sync(ui.topP, ui.topPValue);

  ui.tabComplete.addEventListener('click', () => selectTab('complete'));
  ui.tabChat.addEventListener('click', () => selectTab('chat'));
  ui.errorClose.addEventListener('click', clearError);
  ui.load.addEventListener('click', () => void loadModel());
  ui.file.addEventListener('change', () => {
    openFiles(ui.file.files);
    ui.file.value = '';
  });
  ui.clearCache.addEventListener('click', () => {
    LanguageModel.clearCache().then(
      (n) => (ui.engineInfo.textContent = `removed ${n} file${n === 1 ? '' : 's'} from the browser's cache`),
      (err: unknown) => showError(`clearing the cache failed: ${(err as Error).message}`),
    );
  });
  ui.generate.addEventListener('click', () => start(complete));
  ui.stop.addEventListener('click', stop);
  ui.send.addEventListener('click', () => start(sendChat));
  ui.chatStop.addEventListener('click', stop);
  ui.newChat.addEventListener('click', resetChat);
  ui.system.addEventListener('input', () => (ui.systemSummary.textContent = ui.system.value.trim() === '' ? '' : '(set)'));
  ui.prompt.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !ui.generate.disabled) start(complete);
  });
  ui.chatInput.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      if (!ui.send.disabled) start(sendChat);
    }
  });
  for (const radio of [ui.modeBrowser, ui.modeServer]) {
    radio.addEventListener('change', () => {
      clearError();
      if (mode() === 'browser' && !modelReady) void loadModel();
      else setStatus('ready', mode() === 'browser' ? 'model loaded' : 'using the server API');
    });
  }
  // drag and drop anywhere on the page
  let depth = 0;
  document.addEventListener('dragenter', (e) => {
    if (!e.dataTransfer?.types.includes('Files')) return;
    depth++;
    ui.dropOverlay.hidden = false;
  });
  document.addEventListener('dragleave', () => {
    if (--depth <= 0) {
      depth = 0;
      ui.dropOverlay.hidden = true;
    }
  });
  document.addEventListener('dragover', (e) => e.preventDefault());
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    depth = 0;
    ui.dropOverlay.hidden = true;
    if (state !== 'loading' && state !== 'generating') openFiles(e.dataTransfer?.files ?? null);
  });

  if (mode() === 'browser') void loadModel();
  else setStatus('ready', 'using the server API');
}

init();
