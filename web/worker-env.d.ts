// The globals of a browser's dedicated worker that the engine's workers use, beyond what Node.js's
// types already declare (fetch, MessageChannel, MessageEvent, crypto, performance).

interface WebWorkerErrorEvent {
  readonly message: string;
  preventDefault(): void;
}

/** A Web Worker, as seen from the worker that starts it. */
interface WebWorker {
  onmessage: ((e: MessageEvent) => void) | null;
  onerror: ((e: WebWorkerErrorEvent) => void) | null;
  postMessage(message: unknown): void;
  terminate(): void;
}

declare var Worker: new (url: URL | string, options?: { type?: 'classic' | 'module' }) => WebWorker;
/** The worker's global scope (each worker file gives it the type it needs). */
declare const self: unknown;
declare const location: { readonly href: string };
declare var crossOriginIsolated: boolean | undefined;

/** Synchronous reads of a Blob (dedicated workers only): how a local model file is read a part at a time. */
declare var FileReaderSync: new () => { readAsArrayBuffer(blob: Blob): ArrayBuffer };

/** The Cache API (secure contexts): what the engine worker uses to keep downloaded models. */
interface Cache {
  match(request: string): Promise<Response | undefined>;
  put(request: string, response: Response): Promise<void>;
  delete(request: string): Promise<boolean>;
  keys(): Promise<readonly unknown[]>;
}
declare var caches: {
  open(name: string): Promise<Cache>;
  delete(name: string): Promise<boolean>;
};
