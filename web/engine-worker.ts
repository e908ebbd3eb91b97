// The model, running in the browser: a Web Worker that gets a checkpoint and a tokenizer (fetched
// from URLs — from the browser's Cache API when it kept them — or given as a Blob: a local file —
// or as bytes), reads them with the same code as the CLI (a model source over bytes in memory, or
// over a Blob read a few MiB at a time: a local, cached or downloaded — streamed into the cache —
// model is never held whole, and a model larger than one 4 GiB WebAssembly memory is spread over
// several, as in Node.js), and generates
// with the same loop as the server — so a seeded request gives the same text here, through the API
// and from `llama2 run`.
//
// Backend (LoadRequest.backend; 'auto' takes the first that works): WebGPU where navigator.gpu
// offers an adapter, else the WebAssembly SIMD kernels over `threads` kernel workers — both where
// the page is cross-origin isolated (SharedArrayBuffer needs it: the GPU engine waits for its host
// thread through shared memory); else the plain TypeScript kernels. The page shows which runs
// (ModelInfo.kernels).
//
// One request at a time; each message names its request (protocol.ts). A load cancels the
// downloads of the load before it, and a failed download cancels its sibling, so no progress of a
// dead request arrives after its error.

import { WebGpuDevice, loadWebGpuEngine } from '../src/backends/webgpu/engine.js';
import { encodeConversation, systemPromptTokens } from '../src/infer/chat.js';
import type { InferenceEngine } from '../src/infer/engine.js';
import type { ModelKernels } from '../src/infer/forward.js';
import { type GenerationRequest, type GenerationResult, generateFromIds, promptText } from '../src/infer/generate.js';
import { loadTransformer } from '../src/infer/load.js';
import { jsKernels } from '../src/kernels/js.js';
import { jsQ8Kernels } from '../src/kernels/q8-js.js';
import { createThreadedKernels } from '../src/kernels/threads.js';
import { wasmSupported } from '../src/kernels/wasm.js';
import type { RandomAccessFile } from '../src/model/file-reader.js';
import { openModelSource } from '../src/model/open.js';
import { parameterCount } from '../src/model/weights.js';
import { type Tokenizer, parseTokenizer } from '../src/tokenizer/index.js';
import type { FileOrigin, FileSource, FromEngine, GenerateRequest, LoadRequest, ToEngine } from './protocol.js';

interface WorkerScope {
  onmessage: ((e: { readonly data: ToEngine }) => void) | null;
  postMessage(message: FromEngine): void;
}
const scope = self as unknown as WorkerScope;
const post = (m: FromEngine): void => scope.postMessage(m);

/** The name of the Cache API cache that keeps downloaded models. */
const CACHE_NAME = 'llama2ts-models-v1';
const LLAMA2_TEMPLATE = 'Llama 2: [INST] <<SYS>> system <</SYS>> user [/INST] answer';

let model: { transformer: InferenceEngine; tokenizer: Tokenizer; kernels: { close(): Promise<void> } } | undefined;
/** The request being worked on, and how to stop it. */
let current: { id: number; abort: AbortController } | undefined;
let queue: Promise<void> = Promise.resolve();

scope.onmessage = (e) => {
  const m = e.data;
  if (m.type === 'stop') {
    if (current?.id === m.id) current.abort.abort();
    return;
  }
  // a new load makes the one in progress pointless: cancel its downloads
  if (m.type === 'load' && current !== undefined && current.id !== m.id && model === undefined) current.abort.abort();
  queue = queue.then(() => handle(m));
};

async function handle(m: Exclude<ToEngine, { type: 'stop' }>): Promise<void> {
  const abort = new AbortController();
  current = { id: m.id, abort };
  try {
    if (m.type === 'load') await load(m.id, m, abort.signal);
    else if (m.type === 'generate') await generate(m.id, m.request, abort.signal);
    else post({ type: 'cleared', id: m.id, files: await clearCache() });
  } catch (err) {
    post({ type: 'error', id: m.id, message: err instanceof Error ? err.message : String(err) });
  } finally {
    current = undefined;
  }
}

// ------------------------------------------------------------------------------------------------
// Files

/** The browser's cache of downloaded files, where there is one (secure contexts only). */
async function openCache(): Promise<Cache | undefined> {
  try {
    return typeof caches === 'undefined' ? undefined : await caches.open(CACHE_NAME);
  } catch {
    return undefined; // storage blocked (private mode, a sandboxed frame)
  }
}

async function clearCache(): Promise<number> {
  const cache = await openCache();
  if (cache === undefined) return 0;
  const keys = await cache.keys();
  await caches.delete(CACHE_NAME);
  return keys.length;
}

/**
 * A Blob (a local File) read a part at a time, synchronously (FileReaderSync, dedicated workers):
 * the loader asks for a few MiB at a time, straight into the kernels' memories, so a model is never
 * held whole in one buffer — and may be larger than an ArrayBuffer may be.
 */
function blobFile(blob: Blob, name: string): RandomAccessFile {
  const reader = new FileReaderSync();
  return {
    name, size: blob.size,
    readAt(dst, position) {
      const part = reader.readAsArrayBuffer(blob.slice(position, position + dst.byteLength));
      if (part.byteLength !== dst.byteLength) throw new Error(`${name}: read ${part.byteLength} of ${dst.byteLength} bytes at ${position}`);
      dst.set(new Uint8Array(part));
    },
  };
}

/** The whole of a file (a tokenizer: small). */
function wholeBytes(file: { bytes: Uint8Array } | RandomAccessFile): Uint8Array {
  if ('bytes' in file) return file.bytes;
  const bytes = new Uint8Array(file.size);
  file.readAt(bytes, 0);
  return bytes;
}

/**
 * A download streamed straight into the browser's cache (with progress), then read back from it
 * as a Blob a part at a time: the file is never held whole in memory. Undefined when the cache
 * would not keep it (over the storage quota).
 */
async function downloadIntoCache(id: number, cache: Cache, url: string, body: ReadableStream<Uint8Array>, total: number, what: string, signal: AbortSignal): Promise<Blob | undefined> {
  let received = 0;
  let lastReport = 0;
  const counted = body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, out) {
      received += chunk.byteLength;
      if (received > total) throw new Error(`the ${what} (${url}) is longer than its Content-Length`);
      if (performance.now() - lastReport > 100) {
        lastReport = performance.now();
        post({ type: 'progress', id, message: `downloading the ${what}: ${(received / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`, fraction: received / total });
      }
      out.enqueue(chunk);
    },
  }));
  let failure: unknown;
  try {
    await cache.put(url, new Response(counted, { headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(total) } }));
  } catch (err) {
    failure = err;
  }
  const complete = failure === undefined && received === total;
  const stored = complete ? await cache.match(url) : undefined;
  const blob = stored === undefined ? undefined : await stored.blob();
  if (blob !== undefined && blob.size === total) return blob;
  await cache.delete(url).catch(() => false); // nothing partial stays
  if (signal.aborted) throw new Error('cancelled');
  if (failure instanceof Error && /Content-Length/.test(failure.message)) throw failure;
  if (received !== total && !(failure instanceof Error && failure.name === 'QuotaExceededError')) {
    throw new Error(`the ${what} (${url}) ended after ${received} of ${total} bytes`);
  }
  return undefined;
}

/** A file: its bytes given, a Blob read in parts, from the cache, or downloaded (with progress, then cached). */
async function getFile(id: number, source: FileSource, what: string, useCache: boolean, signal: AbortSignal): Promise<{ file: { name: string; bytes: Uint8Array } | RandomAccessFile; from: FileOrigin; name: string }> {
  if ('blob' in source) return { file: blobFile(source.blob, source.name), from: 'bytes', name: source.name };
  if ('bytes' in source) return { file: { name: source.name, bytes: new Uint8Array(source.bytes) }, from: 'bytes', name: source.name };
  const url = new URL(source.url, location.href).href;
  const name = new URL(url).pathname.split('/').pop() || what;
  const cache = useCache ? await openCache() : undefined;
  const hit = await cache?.match(url);
  if (hit !== undefined) {
    post({ type: 'progress', id, message: `reading the ${what} from the browser's cache` });
    // (as a Blob, read a part at a time like a local file: the browser keeps it on disk)
    return { file: blobFile(await hit.blob(), name), from: 'cache', name };
  }
  let response: Response;
  try {
    response = await fetch(url, { signal });
  } catch (err) {
    if (signal.aborted) throw new Error('cancelled');
    throw new Error(`cannot fetch the ${what} (${url}): ${(err as Error).message}`);
  }
  if (!response.ok) throw new Error(`cannot fetch the ${what} (${url}): HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`);
  const total = Number(response.headers.get('content-length') ?? 0);
  if (cache !== undefined && response.body !== null && total > 0) {
    const stored = await downloadIntoCache(id, cache, url, response.body, total, what, signal);
    if (stored !== undefined) return { file: blobFile(stored, name), from: 'network', name };
    // not kept (over the storage quota): downloaded again, into memory
    return getFile(id, source, what, false, signal);
  }
  let bytes: Uint8Array;
  if (response.body === null || !(total > 0)) {
    bytes = new Uint8Array(await response.arrayBuffer());
  } else {
    bytes = new Uint8Array(total);
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
        post({ type: 'progress', id, message: `downloading the ${what}: ${(received / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`, fraction: received / total });
      }
    }
    if (received !== total) throw new Error(`the ${what} (${url}) ended after ${received} of ${total} bytes`);
  }
  if (cache !== undefined) {
    try {
      await cache.put(url, new Response(bytes, { headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(bytes.byteLength) } }));
    } catch {
      // over the storage quota: the file works, it just is not kept
    }
  }
  return { file: { name, bytes }, from: 'network', name };
}

async function load(id: number, m: LoadRequest, signal: AbortSignal): Promise<void> {
  await model?.kernels.close();
  model = undefined;
  // both files at once; the first failure cancels the other download
  const both = new AbortController();
  const onAbort = (): void => both.abort();
  signal.addEventListener('abort', onAbort);
  let modelFile: Awaited<ReturnType<typeof getFile>>;
  let tokenizerFile: Awaited<ReturnType<typeof getFile>>;
  try {
    [modelFile, tokenizerFile] = await Promise.all([
      getFile(id, m.model, 'model', m.cache, both.signal),
      getFile(id, m.tokenizer, 'tokenizer', m.cache, both.signal),
    ].map((p) => p.catch((err: unknown) => {
      both.abort();
      throw err;
    })));
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  post({ type: 'progress', id, message: 'preparing the model' });
  const isolated = globalThis.crossOriginIsolated === true;
  const wasm = isolated && wasmSupported();
  if (m.backend === 'webgpu' && !isolated) throw new Error('WebGPU needs a cross-origin isolated page (COOP/COEP headers)');
  if (m.backend === 'wasm' && !wasm) throw new Error(isolated ? 'this browser has no WebAssembly SIMD' : 'WebAssembly threads need a cross-origin isolated page (COOP/COEP headers)');
  const gpu = isolated && (m.backend === 'auto' || m.backend === 'webgpu') ? await openGpu(id) : undefined;
  if (m.backend === 'webgpu' && gpu === undefined) throw new Error('WebGPU is not available in this browser (no adapter)');
  const kernels: ModelKernels & { close(): Promise<void> } = gpu !== undefined
    ? { ...jsKernels, ...jsQ8Kernels, close: () => gpu.close() }
    : wasm && m.backend !== 'js'
      ? await createThreadedKernels({ threads: m.threads })
      : { ...jsKernels, ...jsQ8Kernels, close: async () => {} };
  try {
    const source = openModelSource(modelFile.file);
    let tokenizer: Tokenizer;
    let transformer: InferenceEngine;
    try {
      tokenizer = parseTokenizer(wholeBytes(tokenizerFile.file), tokenizerFile.name, source.config.vocabSize);
      // a model needing more than memoryLimit is refused before anything is read (load.ts says
      // what it needs); one the browser will not grant memory for fails the same way, later
      transformer = gpu !== undefined ? loadWebGpuEngine(gpu, source)
        : loadTransformer(source, kernels, m.memoryLimit !== undefined ? { memoryBudget: m.memoryLimit } : {});
    } finally {
      source.close();
    }
    const config = source.config;
    model = { transformer, tokenizer, kernels };
    post({
      type: 'loaded', id,
      info: {
        dim: config.dim, nLayers: config.nLayers, nHeads: config.nHeads, nKvHeads: config.nKvHeads, vocabSize: config.vocabSize,
        seqLen: config.seqLen, parameters: parameterCount(config), kernels: transformer.backend, crossOriginIsolated: isolated,
        chatTemplate: LLAMA2_TEMPLATE, modelFrom: modelFile.from, tokenizerFrom: tokenizerFile.from,
      },
    });
  } catch (err) {
    await kernels.close();
    throw err;
  }
}

/** The GPU, when navigator.gpu offers an adapter. */
async function openGpu(id: number): Promise<WebGpuDevice | undefined> {
  if ((globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu === undefined) return undefined;
  post({ type: 'progress', id, message: 'starting WebGPU' });
  try {
    return await WebGpuDevice.open();
  } catch {
    return undefined; // no adapter: WebAssembly instead
  }
}

// ------------------------------------------------------------------------------------------------
// Generation

/** Lets queued messages ("stop") in: a macrotask without setTimeout's 4 ms clamp. */
const channel = new MessageChannel();
const inbox = channel.port1 as unknown as { onmessage: (() => void) | null }; // a browser MessagePort
function nextTask(): Promise<void> {
  return new Promise((resolve) => {
    inbox.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
}

/** A completion or a chat answer, streamed as text messages (every ~15 ms). */
async function generate(id: number, r: GenerateRequest, signal: AbortSignal): Promise<void> {
  if (model === undefined) throw new Error('no model is loaded');
  const { transformer, tokenizer } = model;
  const seqLen = transformer.config.seqLen;
  const ids = r.kind === 'complete' ? tokenizer.encode(r.prompt, { bos: true, eos: false }) : encodeConversation(tokenizer, r.messages);
  if (ids.length > seqLen) {
    throw new Error(`the ${r.kind === 'complete' ? 'prompt' : 'conversation'} is ${ids.length} tokens, longer than the model's context window of ${seqLen}`);
  }
  const request: GenerationRequest = {
    promptIds: ids,
    ...(r.maxTokens !== undefined ? { maxTokens: r.maxTokens } : {}),
    // a story ends at BOS (as run.c); a chat answer at EOS, or BOS (the start of another turn),
    // sampling at each prompt position as run.c's chat does
    stopTokens: r.kind === 'complete' ? [tokenizer.bosId] : [tokenizer.eosId, tokenizer.bosId],
    samplePrompt: r.kind === 'chat',
    // past the window the context shifts, keeping BOS (and a chat's system prompt)
    ...(r.kind === 'chat' ? { keep: systemPromptTokens(tokenizer, r.messages, ids, seqLen) } : {}),
    stopSequences: r.stop,
    temperature: r.temperature, topp: r.topP, seed: r.seed ?? randomSeed(), signal,
  };
  if (r.kind === 'complete' && r.echo) post({ type: 'text', id, part: 'prompt', text: promptText(tokenizer, ids), tokens: 0, elapsedMs: 0 });
  const gen = generateFromIds(transformer, tokenizer, request);
  const started = performance.now();
  let pending = '';
  let positions = 0;
  let lastBreak = performance.now();
  let result: GenerationResult;
  const tokens = (): number => Math.max(0, positions - (ids.length - 1));
  for (;;) {
    const step = gen.next();
    if (step.done) {
      result = step.value;
      break;
    }
    positions++;
    pending += step.value;
    // every ~15 ms: send the text so far and look at the inbox
    if (performance.now() - lastBreak > 15) {
      post({ type: 'text', id, part: 'completion', text: pending, tokens: tokens(), elapsedMs: performance.now() - started });
      pending = '';
      await nextTask();
      lastBreak = performance.now();
    }
  }
  post({ type: 'text', id, part: 'completion', text: pending, tokens: result.completionTokens, elapsedMs: performance.now() - started });
  post({
    type: 'done', id,
    stats: { promptTokens: result.promptTokens, completionTokens: result.completionTokens, finishReason: result.finishReason, tokensPerSecond: result.tokensPerSecond, elapsedMs: result.elapsedMs },
  });
}

function randomSeed(): bigint {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return ((BigInt(words[0]!) << 32n) | BigInt(words[1]!)) || 1n;
}
