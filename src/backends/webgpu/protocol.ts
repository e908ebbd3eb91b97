// How the engine talks to the thread that owns the GPU device (host.ts). The model's callers are
// synchronous — forward(token, pos) returns the logits — while WebGPU answers with promises, which
// only an event loop can wait for. So the device lives on its own thread (a worker thread in
// Node.js, a Web Worker in a browser), and a caller posts a command message, then blocks in
// Atomics.wait on a control block of shared memory until the host has written the answer there:
//
//   control (Int32, SharedArrayBuffer):
//     [DONE]       sequence number of the last command answered (the caller waits for its own)
//     [STATUS]     0 = ok, 1 = failed (the message is in the error bytes)
//     [ERROR_LEN]  length of the UTF-8 error message
//     [DEAD]       1 once the host has stopped (an uncaught error): no answer will come
//     [TOKENS …]   the tokens of a `run` command (maxBatch of them)
//   then ERROR_BYTES bytes of error message.
//
// A session's logits are written by the host into the session's own shared Float32Array (the
// last token's; every token's of a batch into a second one, registered on first use). The
// host starts by acquiring the device and posts one ordinary message: 'ready' or 'failed'.

import type { GpuWeightsData, Head } from './model.js';
import type { TuningOverrides } from './device.js';
import type { KernelTuning } from './wgsl.js';

export const DONE = 0;
export const STATUS = 1;
export const ERROR_LEN = 2;
export const DEAD = 3;
export const TOKENS = 4;
export const ERROR_BYTES = 4096;

/** Int32 slots of the control block (tokens included) for a batch size. */
export function controlInts(maxBatch: number): number {
  return TOKENS + maxBatch;
}

/** Bytes of the control block's SharedArrayBuffer. */
export function controlBytes(maxBatch: number): number {
  return controlInts(maxBatch) * 4 + ERROR_BYTES;
}

/** What the host is started with. */
export interface HostInit {
  readonly control: SharedArrayBuffer;
  readonly tuning: TuningOverrides;
  /** Node.js: the `webgpu` package's create() flags (Dawn toggles). */
  readonly dawnFlags: readonly string[];
}

/** Commands (each answered through the control block). */
export type ToHost =
  | { readonly type: 'load'; readonly seq: number; readonly model: number; readonly weights: GpuWeightsData }
  | { readonly type: 'session'; readonly seq: number; readonly model: number; readonly session: number; readonly logits: Float32Array }
  | { readonly type: 'run'; readonly seq: number; readonly session: number; readonly count: number; readonly pos0: number; readonly head: Head }
  /** Where a session's every-token logits go (maxBatch · vocab floats): sent once, before the first 'all' run. */
  | { readonly type: 'logits-all'; readonly seq: number; readonly session: number; readonly logits: Float32Array }
  | { readonly type: 'shift'; readonly seq: number; readonly session: number; readonly keep: number; readonly drop: number; readonly length: number }
  | { readonly type: 'free'; readonly seq: number; readonly session: number }
  | { readonly type: 'unload'; readonly seq: number; readonly model: number };

/** The host's one ordinary message, once the device is (or is not) there. */
export type FromHost =
  | { readonly type: 'ready'; readonly adapter: string; readonly tuning: KernelTuning }
  | { readonly type: 'failed'; readonly message: string };
