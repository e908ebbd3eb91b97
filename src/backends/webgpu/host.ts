// The thread that owns the GPU device: acquires it, then runs the commands the engine posts
// (protocol.ts) — load a model's weights, open a session over them, run a batch of tokens — one
// at a time, answering each through the control block. Platform-neutral: host-worker.ts starts it
// in a Node.js worker thread, web/gpu-worker.ts in a Web Worker.

import { requestGpu } from './device.js';
import { GpuModel, GpuSession } from './model.js';
import { DEAD, DONE, ERROR_BYTES, ERROR_LEN, type FromHost, type HostInit, STATUS, TOKENS, type ToHost, controlInts } from './protocol.js';

/**
 * Acquires the device and returns the command handler (or undefined when there is no device, after
 * posting 'failed'). `post` sends the host's one ordinary message.
 */
export async function startHost(init: HostInit, post: (m: FromHost) => void): Promise<((m: ToHost) => void) | undefined> {
  let ctx: Awaited<ReturnType<typeof requestGpu>>;
  try {
    ctx = await requestGpu(init.tuning, init.dawnFlags);
  } catch (err) {
    post({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
    return undefined;
  }
  const maxBatch = ctx.tuning.maxBatch;
  const ctrl = new Int32Array(init.control, 0, controlInts(maxBatch));
  const errorBytes = new Uint8Array(init.control, controlInts(maxBatch) * 4, ERROR_BYTES);
  const models = new Map<number, GpuModel>();
  const sessions = new Map<number, { session: GpuSession; logits: Float32Array; all?: Float32Array }>();
  const tokens = ctrl.subarray(TOKENS, TOKENS + maxBatch);

  const answer = (seq: number, error: string | undefined) => {
    if (error === undefined) {
      Atomics.store(ctrl, STATUS, 0);
    } else {
      const bytes = new TextEncoder().encode(error.split('\n')[0]!);
      const n = Math.min(bytes.length, ERROR_BYTES);
      errorBytes.set(bytes.subarray(0, n));
      Atomics.store(ctrl, ERROR_LEN, n);
      Atomics.store(ctrl, STATUS, 1);
    }
    Atomics.store(ctrl, DONE, seq);
    Atomics.notify(ctrl, DONE);
  };

  async function execute(m: ToHost): Promise<void> {
    switch (m.type) {
      case 'load': {
        ctx.device.pushErrorScope('validation');
        ctx.device.pushErrorScope('out-of-memory');
        const model = new GpuModel(ctx, m.weights);
        const oom = await ctx.device.popErrorScope();
        const invalid = await ctx.device.popErrorScope();
        if (oom !== null || invalid !== null) {
          model.destroy();
          throw new Error(oom !== null ? `the GPU has not enough memory for this model (${oom.message})` : `WebGPU: ${invalid!.message}`);
        }
        models.set(m.model, model);
        return;
      }
      case 'session': {
        const model = models.get(m.model);
        if (model === undefined) throw new Error(`internal: no model ${m.model}`);
        ctx.device.pushErrorScope('validation');
        ctx.device.pushErrorScope('out-of-memory');
        const session = new GpuSession(model);
        const oom = await ctx.device.popErrorScope();
        const invalid = await ctx.device.popErrorScope();
        if (oom !== null || invalid !== null) {
          session.destroy();
          throw new Error(oom !== null ? `the GPU has not enough memory for another session (${oom.message})` : `WebGPU: ${invalid!.message}`);
        }
        sessions.set(m.session, { session, logits: m.logits });
        return;
      }
      case 'run': {
        const s = sessions.get(m.session);
        if (s === undefined) throw new Error(`internal: no session ${m.session}`);
        await s.session.run(tokens, m.count, m.pos0, m.head, m.head === 'all' ? s.all : s.logits);
        return;
      }
      case 'logits-all': {
        const s = sessions.get(m.session);
        if (s === undefined) throw new Error(`internal: no session ${m.session}`);
        s.all = m.logits;
        return;
      }
      case 'shift': {
        const s = sessions.get(m.session);
        if (s === undefined) throw new Error(`internal: no session ${m.session}`);
        await s.session.shift(m.keep, m.drop, m.length);
        return;
      }
      case 'free':
        sessions.get(m.session)?.session.destroy();
        sessions.delete(m.session);
        return;
      case 'unload':
        models.get(m.model)?.destroy();
        models.delete(m.model);
        return;
    }
  }

  // commands arrive one at a time (the caller waits for each answer), but keep them in order anyway
  let queue = Promise.resolve();
  post({ type: 'ready', adapter: ctx.adapterName, tuning: ctx.tuning });
  return (m: ToHost) => {
    queue = queue.then(() => execute(m)).then(
      () => answer(m.seq, undefined),
      (err: unknown) => answer(m.seq, err instanceof Error ? err.message : String(err)),
    );
  };
}

/** Marks the host as stopped (an uncaught error), waking a caller that waits for an answer. */
export function hostDied(control: SharedArrayBuffer): void {
  const ctrl = new Int32Array(control, 0, TOKENS);
  Atomics.store(ctrl, DEAD, 1);
  Atomics.notify(ctrl, DONE);
}
