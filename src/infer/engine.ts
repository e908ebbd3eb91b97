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
   * Feeds tokens at positions pos, pos+1, … (pos + tokens.length ≤ seqLen; positions before pos
   * already fed): a prompt, whose tokens all go into the KV cache — in blocks, each weight matrix
   * read once per block rather than once per token, where the engine can. Without `visit` no
   * logits are computed (what advance() does token by token); with it, every token's logits are,
   * handed to visit(i, logits) in order (evaluation; the array is valid during the call only).
   * The same numbers as forward()/advance() token by token up to float32 rounding.
   */
  prefill(tokens: ArrayLike<number>, pos: number, visit?: (index: number, logits: Float32Array) => void): void;
  /**
   * The context shift, for running past the window: of the `length` positions the KV cache holds
   * (0..length-1), keeps the first `keep`, drops the `drop` after them, and moves the rest down by
   * `drop` positions, in every layer. RoPE made each cached key a rotation by its position, so a
   * key moved from p to p − drop is rotated by −drop positions (θ as the config says); values
   * need no change. Afterwards the cache holds length − drop positions, and the next token goes
   * at position length − drop. 0 ≤ keep, 0 ≤ drop, keep + drop ≤ length ≤ seqLen.
   */
  shift(keep: number, drop: number, length: number): void;
  /**
   * Optional hint: the token forward() will be asked for next, at `pos` (the generation loop says
   * so right after sampling it). Sessions of one model that decode at once (a server's requests)
   * may then compute it together with another session's token — the weights read once for both;
   * the numbers are the same.
   */
  prepare?(token: number, pos: number): void;
  /**
   * Optional: −log softmax(logits)[target] of logits this engine returned, computed where they
   * are (SIMD on the WebAssembly kernels); evaluation scores with it, else in plain TypeScript.
   */
  crossEntropy?(logits: Float32Array, target: number): number;
  /**
   * Another engine over the same weights with its own activations and KV cache (a server session):
   * the weights are not copied.
   */
  session(): InferenceEngine;
}
