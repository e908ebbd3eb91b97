// What everything that runs a model — the generation loop, chat, eval, bench, the server, the
// library and the browser — needs from it, whatever computes it: the Transformer of forward.ts on
// the TypeScript or WebAssembly kernels, or another backend (WebGPU). A backend implements this
// interface; nothing above it asks which backend it is.

import type { ModelConfig } from '../model/config.js';

export interface InferenceEngine {
  readonly config: ModelConfig;
  /** What computes it, for display ('wasm×2', 'js', …). */
  readonly backend: string;
  /**
   * Runs token `token` at position `pos` (0 ≤ pos < seqLen; positions 0..pos-1 already fed) and
   * returns the logits (vocab). The array is the engine's own: valid until its next call.
   */
  forward(token: number, pos: number): Float32Array;
  /** Feeds a token whose logits will not be read (a prompt token followed by another): the KV cache only. */
  advance(token: number, pos: number): void;
  /**
   * Another engine over the same weights with its own activations and KV cache (a server session):
   * the weights are not copied.
   */
  session(): InferenceEngine;
}
