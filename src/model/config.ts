// The shape of a Llama 2 model: the seven numbers every llama2.c checkpoint header carries, plus
// whether the output classifier shares its weights with the token embedding.

import { FormatError } from '../errors.js';

export interface ModelConfig {
  /** Transformer width (residual stream size). */
  readonly dim: number;
  /** Width of the SwiGLU feed-forward layer (w1/w3 output size). */
  readonly hiddenDim: number;
  readonly nLayers: number;
  /** Number of query heads. */
  readonly nHeads: number;
  /** Number of key/value heads: = nHeads (multi-head), 1 (multi-query) or a divisor (grouped-query). */
  readonly nKvHeads: number;
  readonly vocabSize: number;
  /** Maximum sequence length (context window). */
  readonly seqLen: number;
  /** True when the classifier is the token embedding matrix (tied weights). */
  readonly sharedClassifier: boolean;
  /** RMSNorm's ε (Hugging Face `rms_norm_eps`, Meta `norm_eps`); default 1e-5, what llama2.c hard-codes. */
  readonly normEps?: number;
  /** RoPE base θ (Hugging Face `rope_theta`); default 10000, what llama2.c hard-codes. */
  readonly ropeTheta?: number;
}

/** llama2.c's RMSNorm ε and RoPE θ: the values a `.bin` checkpoint implies (it cannot record others). */
export const DEFAULT_NORM_EPS = 1e-5;
export const DEFAULT_ROPE_THETA = 10000;

/** The model's RMSNorm ε. */
export function normEps(c: ModelConfig): number {
  return c.normEps ?? DEFAULT_NORM_EPS;
}

/** The model's RoPE base θ. */
export function ropeTheta(c: ModelConfig): number {
  return c.ropeTheta ?? DEFAULT_ROPE_THETA;
}

/** True when a llama2.c `.bin` (v0, v1, v2) can hold this model: its ε and θ are llama2.c's. */
export function fitsLlama2c(c: ModelConfig): boolean {
  return normEps(c) === DEFAULT_NORM_EPS && ropeTheta(c) === DEFAULT_ROPE_THETA;
}

/** Size of one attention head. */
export function headSize(c: ModelConfig): number {
  return c.dim / c.nHeads;
}

/** Total width of the key (or value) projection: nKvHeads heads of headSize each. */
export function kvDim(c: ModelConfig): number {
  return (c.dim * c.nKvHeads) / c.nHeads;
}

/** The hidden size llama2.c's model.py derives: 2/3 of 4·dim, rounded up to a multiple of `multipleOf`. */
export function hiddenDimFor(dim: number, multipleOf: number): number {
  const h = Math.floor((2 * (4 * dim)) / 3);
  return multipleOf * Math.floor((h + multipleOf - 1) / multipleOf);
}

/**
 * Checks that a header describes a model that can exist. `where` names the file (or flag) in the
 * error message. Sizes are bounded so that no tensor overflows a typed array.
 */
export function validateConfig(c: ModelConfig, where: string): void {
  const fields: Array<[string, number]> = [
    ['dim', c.dim], ['hidden_dim', c.hiddenDim], ['n_layers', c.nLayers], ['n_heads', c.nHeads],
    ['n_kv_heads', c.nKvHeads], ['vocab_size', c.vocabSize], ['seq_len', c.seqLen],
  ];
  for (const [name, v] of fields) {
    if (!Number.isInteger(v) || v <= 0) throw new FormatError(where, `impossible header: ${name} = ${v} (must be a positive integer)`);
    if (v > 1 << 24) throw new FormatError(where, `impossible header: ${name} = ${v} is too large`);
  }
  if (c.normEps !== undefined && !(Number.isFinite(c.normEps) && c.normEps > 0 && c.normEps < 1)) {
    throw new FormatError(where, `impossible header: norm epsilon ${c.normEps} (must be in (0, 1))`);
  }
  if (c.ropeTheta !== undefined && !(Number.isFinite(c.ropeTheta) && c.ropeTheta > 1)) {
    throw new FormatError(where, `impossible header: rope theta ${c.ropeTheta} (must be a finite number above 1)`);
  }
  if (c.dim % c.nHeads !== 0) throw new FormatError(where, `impossible header: dim ${c.dim} is not divisible by n_heads ${c.nHeads}`);
  if (c.nHeads % c.nKvHeads !== 0) throw new FormatError(where, `impossible header: n_heads ${c.nHeads} is not divisible by n_kv_heads ${c.nKvHeads}`);
  if (headSize(c) % 2 !== 0) throw new FormatError(where, `impossible header: head size ${headSize(c)} is odd (RoPE rotates pairs)`);
  // Largest single tensor must fit a typed array (2^31 elements is a safe bound everywhere).
  const largest = Math.max(c.vocabSize * c.dim, c.nLayers * c.dim * c.hiddenDim, c.nLayers * c.dim * c.dim);
  if (largest > 2 ** 31 - 1) throw new FormatError(where, `impossible header: a tensor of ${largest} elements is too large`);
}
