// The model, running in the browser: a Web Worker that fetches a checkpoint and a tokenizer,
// loads them with the same code as the CLI (their bytes served through the in-memory node:fs of
// shims/fs.ts), and generates with the server's loop (src/server/generation.ts) — so a seeded
// request gives the same text here, through the API and from `llama2 run`.
//
// Backend: WebGPU where navigator.gpu offers an adapter, else the WebAssembly SIMD kernels over
// `threads` kernel workers — both where the page is cross-origin isolated (SharedArrayBuffer needs
// it: the GPU engine waits for its host thread through shared memory); else the plain TypeScript
// kernels. The page shows which runs (ModelInfo.kernels).

import { WebGpuDevice, loadWebGpuEngine } from '../src/backends/webgpu/engine.js';
import type { InferenceEngine } from '../src/infer/engine.js';
import type { ModelKernels } from '../src/infer/forward.js';
import { loadTransformer } from '../src/infer/load.js';
import { jsKernels } from '../src/kernels/js.js';
import { jsQ8Kernels } from '../src/kernels/q8-js.js';
import { createThreadedKernels } from '../src/kernels/threads.js';
import { wasmSupported } from '../src/kernels/wasm.js';
import { openModelSource } from '../src/model/open.js';
import { type GenerationResult, generateFromIds, promptText } from '../src/infer/generate.js';
import { type Tokenizer, loadTokenizer } from '../src/tokenizer/index.js';
import type { FromEngine, GenerateSettings, ToEngine } from './protocol.js';
import { putFile, removeFile } from './shims/fs.js';

interface WorkerScope {
  onmessage: ((e: { readonly data: ToEngine }) => void) | null;
  postMessage(message: FromEngine): void;
}
const scope = self as unknown as WorkerScope;
const post = (m: FromEngine): void => scope.postMessage(m);

let model: { transformer: InferenceEngine; tokenizer: Tokenizer; kernels: { close(): Promise<void> } } | undefined;
let stopRequested = false;
let busy = false;

scope.onmessage = (e) => {
  const m = e.data;
  if (m.type === 'stop') {
    stopRequested = true;
    return;
  }
  if (busy) {
    post({ type: 'error', message: 'the engine is busy' });
    return;
  }
  busy = true;
  const work = m.type === 'load' ? load(m.modelUrl, m.tokenizerUrl, m.threads) : generate(m);
  work.catch((err: unknown) => post({ type: 'error', message: err instanceof Error ? err.message : String(err) }))
    .finally(() => (busy = false));
};

/** Fetches a file with progress messages. */
async function fetchBytes(url: string, what: string): Promise<Uint8Array> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot fetch the ${what} (${url}): HTTP ${response.status}`);
  const total = Number(response.headers.get('content-length') ?? 0);
  if (response.body === null || total === 0) return new Uint8Array(await response.arrayBuffer());
  const bytes = new Uint8Array(total);
  const reader = response.body.getReader();
  let received = 0;
  let lastReport = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (received + value.byteLength > total) throw new Error(`the ${what} (${url}) is longer than its Content-Length`);
    bytes.set(value, received);
    received += value.byteLength;
    if (performance.now() - lastReport > 100) {
      lastReport = performance.now();
      post({ type: 'progress', message: `loading the ${what}: ${(received / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB` });
    }
  }
  if (received !== total) throw new Error(`the ${what} (${url}) ended after ${received} of ${total} bytes`);
  return bytes;
}

async function load(modelUrl: string, tokenizerUrl: string, threads: number): Promise<void> {
  await model?.kernels.close();
  model = undefined;
  const [modelBytes, tokenizerBytes] = await Promise.all([fetchBytes(modelUrl, 'model'), fetchBytes(tokenizerUrl, 'tokenizer')]);
  post({ type: 'progress', message: 'preparing the model' });
  // the readers take paths: name the bytes by their URL's last part, for error messages
  const modelPath = new URL(modelUrl, location.href).pathname.split('/').pop() || 'model.bin';
  const tokenizerPath = `tokenizer:${new URL(tokenizerUrl, location.href).pathname.split('/').pop() || 'tokenizer.bin'}`;
  putFile(modelPath, modelBytes);
  putFile(tokenizerPath, tokenizerBytes);
  const isolated = globalThis.crossOriginIsolated === true;
  const gpu = isolated ? await openGpu() : undefined;
  const kernels: ModelKernels & { close(): Promise<void> } = gpu !== undefined
    ? { ...jsKernels, ...jsQ8Kernels, close: () => gpu.close() }
    : isolated && wasmSupported()
      ? await createThreadedKernels({ threads })
      : { ...jsKernels, ...jsQ8Kernels, close: async () => {} };
  try {
    const source = openModelSource(modelPath);
    let tokenizer: Tokenizer;
    let transformer: InferenceEngine;
    try {
      tokenizer = loadTokenizer(tokenizerPath, source.config.vocabSize);
      transformer = gpu !== undefined ? loadWebGpuEngine(gpu, source) : loadTransformer(source, kernels);
    } finally {
      source.close();
    }
    const config = source.config;
    model = { transformer, tokenizer, kernels };
    post({
      type: 'loaded',
      info: { dim: config.dim, nLayers: config.nLayers, nHeads: config.nHeads, vocabSize: config.vocabSize, seqLen: config.seqLen, kernels: gpu !== undefined ? transformer.backend : kernels.name, crossOriginIsolated: isolated },
    });
  } catch (err) {
    await kernels.close();
    throw err;
  } finally {
    removeFile(modelPath);
    removeFile(tokenizerPath);
  }
}

/** The GPU, when navigator.gpu offers an adapter. */
async function openGpu(): Promise<WebGpuDevice | undefined> {
  if ((globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu === undefined) return undefined;
  post({ type: 'progress', message: 'starting WebGPU' });
  try {
    return await WebGpuDevice.open();
  } catch {
    return undefined; // no adapter: WebAssembly instead
  }
}

/** Lets queued messages ("stop") in: a macrotask without setTimeout's 4 ms clamp. */
const channel = new MessageChannel();
const inbox = channel.port1 as unknown as { onmessage: (() => void) | null }; // a browser MessagePort
function nextTask(): Promise<void> {
  return new Promise((resolve) => {
    inbox.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
}

/** The completion of `s.prompt`, streamed as text messages: the prompt's text, then the answer. */
async function generate(s: GenerateSettings): Promise<void> {
  if (model === undefined) throw new Error('no model is loaded');
  const { transformer, tokenizer } = model;
  const ids = tokenizer.encode(s.prompt, { bos: true, eos: false });
  const seqLen = transformer.config.seqLen;
  if (ids.length > seqLen) throw new Error(`the prompt is ${ids.length} tokens, longer than the model's context window of ${seqLen}`);
  stopRequested = false;
  const abort = new AbortController();
  const gen = generateFromIds(transformer, tokenizer, {
    promptIds: ids, maxTokens: s.maxTokens, stopTokens: [tokenizer.bosId],
    temperature: s.temperature, topp: s.topP, seed: s.seed ?? randomSeed(), signal: abort.signal,
  });
  let pending = promptText(tokenizer, ids);
  let lastBreak = performance.now();
  let result: GenerationResult;
  for (;;) {
    const r = gen.next();
    if (r.done) {
      result = r.value;
      break;
    }
    pending += r.value;
    // every ~15 ms: send the text so far and look at the inbox
    if (performance.now() - lastBreak > 15) {
      if (pending.length > 0) post({ type: 'text', text: pending });
      pending = '';
      await nextTask();
      if (stopRequested) abort.abort();
      lastBreak = performance.now();
    }
  }
  if (pending.length > 0) post({ type: 'text', text: pending });
  post({
    type: 'done',
    stats: { promptTokens: result.promptTokens, completionTokens: result.completionTokens, finishReason: result.finishReason, tokensPerSecond: result.tokensPerSecond, elapsedMs: result.elapsedMs },
  });
}

function randomSeed(): bigint {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return ((BigInt(words[0]!) << 32n) | BigInt(words[1]!)) || 1n;
}
