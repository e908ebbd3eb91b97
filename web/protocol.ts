// Messages between the page (the browser library, llama2ts.ts) and the engine's Web Worker
// (engine-worker.ts). Every request carries an id; every answer names the request it answers, so
// a late message of an abandoned request (a download still reporting progress after another one
// failed) can be told apart and ignored.

/**
 * Where a file comes from: a URL (fetched, and kept in the browser's cache), its bytes, or a Blob
 * (a local File: the worker reads the parts it needs, never the whole file at once).
 */
export type FileSource =
  | { readonly url: string }
  | { readonly bytes: ArrayBuffer; readonly name: string }
  | { readonly blob: Blob; readonly name: string };

/** How text is sampled, as the API's fields (and `llama2 run`'s flags). */
export interface SamplingSettings {
  /** Most tokens to generate; undefined = until the model stops or the context is full. */
  readonly maxTokens?: number | undefined;
  readonly temperature: number;
  readonly topP: number;
  /** undefined = random. */
  readonly seed?: number | undefined;
  /** Strings that end the text (not included). */
  readonly stop: readonly string[];
}

export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

/** A completion of a prompt, or the assistant's next message in a chat. */
export type GenerateRequest = SamplingSettings & (
  | { readonly kind: 'complete'; readonly prompt: string; readonly echo: boolean }
  | { readonly kind: 'chat'; readonly messages: readonly ChatMessage[] }
);

export type Backend = 'auto' | 'webgpu' | 'wasm' | 'js';

export interface LoadRequest {
  readonly model: FileSource;
  readonly tokenizer: FileSource;
  /** What computes: the best available (WebGPU, else WebAssembly, else TypeScript), or one named. */
  readonly backend: Backend;
  /** Threads of the WebAssembly kernels (used where the page is cross-origin isolated). */
  readonly threads: number;
  /** Keep downloaded files in the Cache API and read them from there next time (default true). */
  readonly cache: boolean;
  /**
   * Bytes of memory the model may take (weights as loaded + KV cache + activations); a model that
   * needs more is refused before anything is read, saying what it needs. Default: no preset limit
   * (what the browser grants decides: a refusal there is reported the same way).
   */
  readonly memoryLimit?: number;
}

export type ToEngine =
  | ({ readonly type: 'load'; readonly id: number } & LoadRequest)
  | { readonly type: 'generate'; readonly id: number; readonly request: GenerateRequest }
  | { readonly type: 'stop'; readonly id: number }
  | { readonly type: 'clear-cache'; readonly id: number };

export interface ModelInfo {
  readonly dim: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly vocabSize: number;
  readonly seqLen: number;
  /** Parameters of the model. */
  readonly parameters: number;
  /** Kernel set name: "wasm", "wasm×4", "js". */
  readonly kernels: string;
  readonly crossOriginIsolated: boolean;
  /** The chat template the engine renders conversations with. */
  readonly chatTemplate: string;
  /** How each file arrived: 'network', 'cache' (the browser's, no download) or 'local file'. */
  readonly modelFrom: FileOrigin;
  readonly tokenizerFrom: FileOrigin;
}

export type FileOrigin = 'network' | 'cache' | 'bytes';

export interface GenerateStats {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly finishReason: 'stop' | 'length' | 'aborted';
  /** Generated tokens per second, measured as `llama2 run` does. */
  readonly tokensPerSecond: number;
  readonly elapsedMs: number;
}

export type FromEngine =
  | { readonly type: 'progress'; readonly id: number; readonly message: string; readonly fraction?: number }
  /** Text of a request: the echoed prompt ('prompt'), or generated text with the tokens generated so far. */
  | { readonly type: 'text'; readonly id: number; readonly part: 'prompt' | 'completion'; readonly text: string; readonly tokens: number; readonly elapsedMs: number }
  | { readonly type: 'loaded'; readonly id: number; readonly info: ModelInfo }
  | { readonly type: 'done'; readonly id: number; readonly stats: GenerateStats }
  | { readonly type: 'cleared'; readonly id: number; readonly files: number }
  | { readonly type: 'error'; readonly id: number; readonly message: string };
