// llama2ts in a web page (`import { LanguageModel } from 'llama2ts/web'`): the same interface as
// the Node.js library — load, stream, complete, chat — over the engine running in a Web Worker
// (engine-worker.js, beside this module), so the page never blocks while the model computes.
//
//   const lm = await LanguageModel.load();                              // the model llama2ts ships
//   const lm = await LanguageModel.load('https://…/model.bin', { tokenizer: 'https://…/tokenizer.bin' });
//   const lm = await LanguageModel.load(fileInput.files[0], { tokenizer: … });  // a local file
//   for await (const piece of lm.stream({ prompt: 'Once upon a time', maxTokens: 100 })) …
//   for await (const piece of lm.chat([{ role: 'user', content: 'Hi!' }])) …
//
// Downloaded files are kept in the browser's Cache API (a reload reads them from there; `cache:
// false` skips it, LanguageModel.clearCache() empties it). WebAssembly threads need the page to be
// cross-origin isolated (COOP/COEP headers); elsewhere the engine uses its TypeScript kernels.

import type {
  Backend, ChatMessage, FileSource, FromEngine, GenerateRequest, GenerateStats, LoadRequest, ModelInfo, SamplingSettings, ToEngine,
} from './protocol.js';

export type { Backend, ChatMessage, GenerateStats, ModelInfo } from './protocol.js';

/** A model or tokenizer: a URL, a File/Blob (a local file), or its bytes. */
export type FileInput = string | URL | Blob | ArrayBuffer | Uint8Array;

export interface LoadOptions {
  /** The tokenizer (default: tokenizer.bin beside a model URL; required with a File or bytes). */
  tokenizer?: FileInput;
  /** 'auto' (default: WebGPU, else WebAssembly, else TypeScript), or one of them (an error where it is unavailable). */
  backend?: Backend;
  /** WebAssembly kernel threads (default: up to 4, one per core). */
  threads?: number;
  /** Keep downloads in the browser's cache and read them from there (default true). */
  cache?: boolean;
  /** Download and preparation progress. */
  onProgress?: (message: string, fraction?: number) => void;
  /** Where engine-worker.js is (default: beside this module). */
  workerUrl?: string | URL;
  /** Bytes of memory the model may take; a larger one is refused before loading (LoadRequest.memoryLimit). */
  memoryLimit?: number;
}

export interface SamplingOptions {
  /** Most tokens to generate (default: until the model stops or the context window is full). */
  maxTokens?: number;
  /** Strings that end the text (not included). */
  stop?: string | readonly string[];
  /** 0 = greedy. Default 1. */
  temperature?: number;
  /** Nucleus threshold in [0, 1] (0 or 1: plain sampling). Default 0.9 (as `llama2 run`). */
  topP?: number;
  /** The same seed, the same text. Default random. */
  seed?: number;
  signal?: AbortSignal;
}

export interface CompletionOptions extends SamplingOptions {
  prompt?: string;
  /** Start the text with the prompt (default false). */
  echo?: boolean;
}

export interface Completion extends GenerateStats {
  readonly text: string;
}

/** What `generate` reports as text arrives. */
export interface TextEvent {
  readonly part: 'prompt' | 'completion';
  readonly text: string;
  /** Tokens generated so far, and the milliseconds since generation started. */
  readonly tokens: number;
  readonly elapsedMs: number;
}

interface Pending {
  onText?: (e: TextEvent) => void;
  onProgress?: (message: string, fraction?: number) => void;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

/** The embedded model's files (models/ of the package, two folders up from dist/web/llama2ts.js). */
const EMBEDDED_MODEL = '../../models/default.bin';
const EMBEDDED_TOKENIZER = '../../models/tokenizer.bin';

export class LanguageModel {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  /** What the loaded model is, and where it runs. */
  info!: ModelInfo;

  private constructor(private readonly worker: Worker) {
    worker.onmessage = (e: MessageEvent<FromEngine>) => this.receive(e.data);
    worker.onerror = (e) => {
      e.preventDefault();
      this.failAll(new Error(`the engine failed: ${e.message || 'its script did not load'}`));
    };
  }

  /** Starts an engine and loads a model into it; with no model, the one llama2ts ships. */
  static async load(model?: FileInput, options: LoadOptions = {}): Promise<LanguageModel> {
    const workerUrl = options.workerUrl ?? new URL('./engine-worker.js', import.meta.url);
    const lm = new LanguageModel(new Worker(workerUrl, { type: 'module' }));
    try {
      await lm.reload(model, options);
      return lm;
    } catch (err) {
      lm.close();
      throw err;
    }
  }

  /** Loads another model into the same engine (the previous one is released first). */
  async reload(model?: FileInput, options: Omit<LoadOptions, 'workerUrl'> = {}): Promise<ModelInfo> {
    let modelInput: FileInput = model ?? new URL(EMBEDDED_MODEL, import.meta.url);
    let tokenizerInput = options.tokenizer ?? (model === undefined ? new URL(EMBEDDED_TOKENIZER, import.meta.url) : undefined);
    if (tokenizerInput === undefined) {
      if (typeof modelInput !== 'string' && !(modelInput instanceof URL)) throw new Error('a model given as a file or bytes needs { tokenizer }');
      tokenizerInput = new URL('tokenizer.bin', new URL(String(modelInput), location.href));
    }
    const [m, t] = await Promise.all([fileSource(modelInput, 'model.bin'), fileSource(tokenizerInput, 'tokenizer.bin')]);
    modelInput = ''; // the bytes now belong to the message
    const threads = options.threads ?? Math.min(4, navigator.hardwareConcurrency || 1);
    const request: LoadRequest = {
      model: m, tokenizer: t, backend: options.backend ?? 'auto', threads, cache: options.cache ?? true,
      ...(options.memoryLimit !== undefined ? { memoryLimit: options.memoryLimit } : {}),
    };
    const transfer = [m, t].flatMap((s) => ('bytes' in s ? [s.bytes] : []));
    this.info = await this.call<ModelInfo>({ type: 'load', ...request }, { ...(options.onProgress ? { onProgress: options.onProgress } : {}) }, transfer);
    return this.info;
  }

  /**
   * Runs one request and reports its text as it comes (the echoed prompt, then the generated
   * text with the tokens so far); resolves with how it went. The lowest level of stream and chat.
   */
  generate(request: GenerateRequest, onText: (e: TextEvent) => void, signal?: AbortSignal): Promise<GenerateStats> {
    return this.call<GenerateStats>({ type: 'generate', request }, { onText }, [], signal);
  }

  /** Streams the completion of a prompt; the iterator's return value has the token counts. */
  stream(options: CompletionOptions | string = {}): AsyncGenerator<string, GenerateStats, void> {
    const o = typeof options === 'string' ? { prompt: options } : options;
    return this.iterate({ kind: 'complete', prompt: o.prompt ?? '', echo: o.echo ?? false, ...sampling(o) }, o.signal);
  }

  async complete(options: CompletionOptions | string = {}): Promise<Completion> {
    return collect(this.stream(options));
  }

  /** Streams the assistant's next message in a conversation, rendered with the model's chat template. */
  chat(messages: readonly ChatMessage[], options: SamplingOptions = {}): AsyncGenerator<string, GenerateStats, void> {
    return this.iterate({ kind: 'chat', messages: [...messages], ...sampling(options) }, options.signal);
  }

  async chatComplete(messages: readonly ChatMessage[], options: SamplingOptions = {}): Promise<Completion> {
    return collect(this.chat(messages, options));
  }

  /** Stops the engine (its worker and kernel threads). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.worker.terminate();
    this.failAll(new Error('the model was closed'));
  }

  /** Empties the browser's cache of downloaded models; resolves with the number of files removed. */
  static async clearCache(): Promise<number> {
    if (typeof caches === 'undefined') return 0;
    const cache = await caches.open('llama2ts-models-v1');
    const n = (await cache.keys()).length;
    await caches.delete('llama2ts-models-v1');
    return n;
  }

  // ----------------------------------------------------------------------------------------------

  private async *iterate(request: GenerateRequest, signal?: AbortSignal): AsyncGenerator<string, GenerateStats, void> {
    const queue: string[] = [];
    let wake: (() => void) | undefined;
    let finished: { stats?: GenerateStats; error?: Error } | undefined;
    // the caller's signal, or leaving the loop early, stops the generation
    const stop = new AbortController();
    const onAbort = (): void => stop.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) stop.abort();
    this.generate(request, (e) => {
      if (e.text.length === 0) return;
      queue.push(e.text);
      wake?.();
    }, stop.signal).then((stats) => (finished = { stats }), (error: Error) => (finished = { error })).finally(() => wake?.());
    try {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (finished !== undefined) {
          if (finished.error) throw finished.error;
          return finished.stats!;
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (finished === undefined) stop.abort();
    }
  }

  private call<T>(message: DistributiveOmit<ToEngine, 'id'>, handlers: Partial<Pick<Pending, 'onText' | 'onProgress'>>, transfer: Transferable[] = [], signal?: AbortSignal): Promise<T> {
    if (this.closed) return Promise.reject(new Error('the model was closed'));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => this.worker.postMessage({ type: 'stop', id } satisfies ToEngine);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (signal?.aborted) onAbort();
      this.pending.set(id, {
        ...handlers,
        resolve: (v) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(v as T);
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      });
      this.worker.postMessage({ ...message, id } as ToEngine, transfer);
    });
  }

  private receive(m: FromEngine): void {
    const p = this.pending.get(m.id);
    if (p === undefined) return; // an abandoned request
    switch (m.type) {
      case 'progress': p.onProgress?.(m.message, m.fraction); break;
      case 'text': p.onText?.({ part: m.part, text: m.text, tokens: m.tokens, elapsedMs: m.elapsedMs }); break;
      case 'loaded': this.pending.delete(m.id); p.resolve(m.info); break;
      case 'done': this.pending.delete(m.id); p.resolve(m.stats); break;
      case 'cleared': this.pending.delete(m.id); p.resolve(m.files); break;
      case 'error': this.pending.delete(m.id); p.reject(new Error(m.message)); break;
    }
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

function sampling(o: SamplingOptions): SamplingSettings {
  const stop = o.stop === undefined ? [] : typeof o.stop === 'string' ? [o.stop] : [...o.stop];
  if (o.maxTokens !== undefined && !(Number.isInteger(o.maxTokens) && o.maxTokens >= 0)) throw new Error(`maxTokens must be a non-negative integer, got ${o.maxTokens}`);
  if (o.temperature !== undefined && !(o.temperature >= 0)) throw new Error(`temperature must be a number ≥ 0, got ${o.temperature}`);
  if (o.topP !== undefined && !(o.topP >= 0 && o.topP <= 1)) throw new Error(`topP must be in [0, 1], got ${o.topP}`);
  if (o.seed !== undefined && !Number.isSafeInteger(o.seed)) throw new Error(`seed must be an integer, got ${o.seed}`);
  for (const s of stop) if (typeof s !== 'string' || s.length === 0) throw new Error('a stop string must be a non-empty string');
  return {
    maxTokens: o.maxTokens, temperature: o.temperature ?? 1, topP: o.topP ?? 0.9, stop,
    seed: o.seed === undefined || o.seed === 0 ? undefined : o.seed,
  };
}

async function fileSource(input: FileInput, fallbackName: string): Promise<FileSource> {
  if (typeof input === 'string' || input instanceof URL) return { url: new URL(String(input), location.href).href };
  // a Blob (a local File) goes as it is: the worker reads the parts it needs (a model larger than
  // the memory an ArrayBuffer may take still loads, straight into the kernels' memories)
  if (input instanceof Blob) return { blob: input, name: (input as File).name || fallbackName };
  if (input instanceof ArrayBuffer) return { bytes: input.slice(0), name: fallbackName };
  if (input instanceof Uint8Array) return { bytes: input.slice().buffer, name: fallbackName };
  throw new Error('a model or tokenizer is a URL, a File/Blob, or bytes (ArrayBuffer / Uint8Array)');
}

async function collect(it: AsyncGenerator<string, GenerateStats, void>): Promise<Completion> {
  let text = '';
  for (;;) {
    const r = await it.next();
    if (r.done) return { ...r.value, text };
    text += r.value;
  }
}
