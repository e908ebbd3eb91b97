// `node:worker_threads` for the browser bundle: the part of Worker that src/kernels/threads.ts
// and the WebGPU engine use, over a Web Worker (a module worker, so it can import). The worker script — the bundle of
// web/kernel-worker.ts, named thread-worker.js so that threads.ts's URL finds it — receives
// `workerData` as its first message, and answers in ShimMessage envelopes so that a worker's end
// can be told apart from its messages.

/** What the worker script posts back. */
export type ShimMessage = { readonly kind: 'message'; readonly data: unknown } | { readonly kind: 'exit'; readonly code: number };

type Event = 'message' | 'error' | 'exit';
type Listener = (value: never) => void;

const WebWorkerClass = globalThis.Worker;

export class Worker {
  private readonly worker: WebWorker;
  private readonly listeners: Array<{ event: Event; listener: Listener; once: boolean }> = [];
  private exited = false;

  constructor(url: URL | string, options: { workerData?: unknown } = {}) {
    this.worker = new WebWorkerClass(url, { type: 'module' });
    this.worker.onmessage = (e: MessageEvent) => {
      const m = e.data as ShimMessage;
      if (m.kind === 'exit') this.exit(m.code);
      else this.emit('message', m.data);
    };
    this.worker.onerror = (e) => {
      e.preventDefault();
      this.emit('error', new Error(e.message || 'the worker failed to load'));
    };
    this.worker.postMessage(options.workerData);
  }

  /** Messages to the worker after its workerData (the GPU host's commands). */
  postMessage(message: unknown): void {
    this.worker.postMessage(message);
  }

  removeAllListeners(): this {
    this.listeners.length = 0;
    return this;
  }

  on(event: Event, listener: Listener): this {
    this.listeners.push({ event, listener, once: false });
    return this;
  }

  once(event: Event, listener: Listener): this {
    this.listeners.push({ event, listener, once: true });
    return this;
  }

  /** Web Workers never keep a page alive: nothing to do. */
  ref(): void {}
  unref(): void {}

  terminate(): Promise<number> {
    this.worker.terminate();
    this.exit(1);
    return Promise.resolve(1);
  }

  private exit(code: number): void {
    if (this.exited) return;
    this.exited = true;
    this.emit('exit', code);
  }

  private emit(event: Event, value: unknown): void {
    for (const l of [...this.listeners]) {
      if (l.event !== event) continue;
      if (l.once) this.listeners.splice(this.listeners.indexOf(l), 1);
      (l.listener as (value: unknown) => void)(value);
    }
  }
}
