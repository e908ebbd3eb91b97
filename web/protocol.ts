// Messages between the page (app.ts) and the engine's Web Worker (engine-worker.ts).

/** Sampling settings, as in the API (and as `llama2 run`'s flags). */
export interface GenerateSettings {
  readonly prompt: string;
  readonly maxTokens: number;
  readonly temperature: number;
  readonly topP: number;
  /** undefined = random. */
  readonly seed: number | undefined;
}

export type ToEngine =
  | { readonly type: 'load'; readonly modelUrl: string; readonly tokenizerUrl: string; readonly threads: number }
  | ({ readonly type: 'generate' } & GenerateSettings)
  | { readonly type: 'stop' };

export interface ModelInfo {
  readonly dim: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly vocabSize: number;
  readonly seqLen: number;
  /** Kernel set name: "wasm", "wasm×4", "js". */
  readonly kernels: string;
  readonly crossOriginIsolated: boolean;
}

export interface GenerateStats {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly finishReason: 'stop' | 'length' | 'aborted';
  /** Generated tokens per second, measured as `llama2 run` does. */
  readonly tokensPerSecond: number;
  readonly elapsedMs: number;
}

export type FromEngine =
  | { readonly type: 'progress'; readonly message: string }
  | { readonly type: 'loaded'; readonly info: ModelInfo }
  | { readonly type: 'text'; readonly text: string }
  | { readonly type: 'done'; readonly stats: GenerateStats }
  | { readonly type: 'error'; readonly message: string };
