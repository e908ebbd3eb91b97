// Parallel generation sessions over one set of weights, with a bounded waiting line.
//
// A InferenceEngine holds its own activations and key/value cache but only views of the weights, so
// several of them can share one weights object: each is a "session" that one request uses at a
// time. Sessions are made on first need (up to `maxConcurrent`) and kept for reuse — the kernels'
// memory is never freed, so making a new one per request would grow it without end. A request
// that finds every session busy waits in line (at most `maxQueued` of them, first come first
// served); past that it is refused at once, and the server answers 429.

import { LlamaError } from '../errors.js';
import type { InferenceEngine } from '../infer/engine.js';

/** Every session is busy and the waiting line is full. */
export class BusyError extends LlamaError {
  override name = 'BusyError';
}

interface Waiter {
  resolve(session: InferenceEngine): void;
  reject(err: Error): void;
}

export class SessionPool {
  private readonly idle: InferenceEngine[] = [];
  private readonly waiting: Waiter[] = [];
  private made = 0;
  private busy = 0;

  /**
   * @param create  makes a new session (a InferenceEngine over the shared weights)
   * @param maxConcurrent  sessions generating at once (≥ 1)
   * @param maxQueued  requests allowed to wait for a session (≥ 0)
   */
  constructor(private readonly create: () => InferenceEngine, readonly maxConcurrent: number, readonly maxQueued: number) {
    if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) throw new LlamaError(`maxConcurrent must be a positive integer, got ${maxConcurrent}`);
    if (!Number.isInteger(maxQueued) || maxQueued < 0) throw new LlamaError(`maxQueued must be a non-negative integer, got ${maxQueued}`);
  }

  /** Sessions in use. */
  get active(): number {
    return this.busy;
  }

  /** Requests waiting for a session. */
  get queued(): number {
    return this.waiting.length;
  }

  /**
   * A free session: at once if there is one, else after waiting in line. Throws BusyError when
   * the line is full; rejects with the signal's reason when aborted while waiting.
   */
  acquire(signal?: AbortSignal): Promise<InferenceEngine> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    const session = this.take();
    if (session !== undefined) return Promise.resolve(session);
    if (this.waiting.length >= this.maxQueued) {
      return Promise.reject(new BusyError(`all ${this.maxConcurrent} sessions are busy and ${this.waiting.length} requests are waiting`));
    }
    return new Promise<InferenceEngine>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: (s) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(s);
        },
        reject,
      };
      const onAbort = (): void => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal!.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  /** Gives a session back: to the first request in line, or to the idle set. */
  release(session: InferenceEngine): void {
    const next = this.waiting.shift();
    if (next !== undefined) {
      next.resolve(session); // stays busy, changes hands
      return;
    }
    this.busy--;
    this.idle.push(session);
  }

  /** Refuses everyone still waiting (at shutdown). */
  rejectWaiting(err: Error): void {
    for (const w of this.waiting.splice(0)) w.reject(err);
  }

  private take(): InferenceEngine | undefined {
    let session = this.idle.pop();
    if (session === undefined && this.made < this.maxConcurrent) {
      session = this.create();
      this.made++;
    }
    if (session !== undefined) this.busy++;
    return session;
  }
}
