// Parallel generation sessions over one set of weights, with a bounded waiting line.
//
// An InferenceEngine holds its own activations and key/value cache but only views of the weights,
// so several of them can share one weights object: each is a "session" that one request uses at a
// time. All `maxConcurrent` sessions are made up front, when the pool is created: whether their
// key/value caches fit in memory is known at start-up (a pool asked for more than fits either
// refuses to start or keeps what fits), never discovered by a request at run time. A request
// that finds every session busy waits in line (at most `maxQueued` of them, first come first
// served); past that it is refused at once, and the server answers 429.

import { LlamaError, isOutOfMemory } from '../errors.js';
import type { InferenceEngine } from '../infer/engine.js';

/** Every session is busy and the waiting line is full. */
export class BusyError extends LlamaError {
  override name = 'BusyError';
}

interface Waiter {
  resolve(session: InferenceEngine): void;
  reject(err: Error): void;
}

/** More sessions were asked for than fit in memory. */
export class SessionMemoryError extends LlamaError {
  override name = 'SessionMemoryError';
  constructor(readonly fitting: number, readonly asked: number, cause: unknown) {
    super(`only ${fitting} of ${asked} sessions fit in memory (${(cause as Error).message})`);
  }
}

export class SessionPool {
  private readonly idle: InferenceEngine[] = [];
  private readonly waiting: Waiter[] = [];
  private busy = 0;
  /** Sessions generating at once: as asked, or what fit in memory when `fit` is 'cap'. */
  readonly maxConcurrent: number;

  /**
   * @param create  makes a new session (an InferenceEngine over the shared weights)
   * @param maxConcurrent  sessions generating at once (≥ 1), all made now
   * @param maxQueued  requests allowed to wait for a session (≥ 0)
   * @param fit  when fewer sessions fit in memory (at least one): 'refuse' throws
   *   SessionMemoryError, 'cap' keeps those that fit (see maxConcurrent)
   */
  constructor(create: () => InferenceEngine, maxConcurrent: number, readonly maxQueued: number, fit: 'refuse' | 'cap' = 'refuse') {
    if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) throw new LlamaError(`maxConcurrent must be a positive integer, got ${maxConcurrent}`);
    if (!Number.isInteger(maxQueued) || maxQueued < 0) throw new LlamaError(`maxQueued must be a non-negative integer, got ${maxQueued}`);
    while (this.idle.length < maxConcurrent) {
      try {
        this.idle.push(create());
      } catch (err) {
        // a session that does not fit takes no memory (see allocateRunState), so nothing is lost
        if (!isOutOfMemory(err) || this.idle.length === 0) throw err;
        if (fit === 'refuse') throw new SessionMemoryError(this.idle.length, maxConcurrent, err);
        break;
      }
    }
    this.maxConcurrent = this.idle.length;
    this.idle.reverse(); // the first one made (the model's own) is taken first
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
    const session = this.idle.pop();
    if (session !== undefined) this.busy++;
    return session;
  }
}
