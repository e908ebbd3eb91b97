// The optimiser, exactly as torch.optim.AdamW computes it, and global-norm gradient clipping as
// torch.nn.utils.clip_grad_norm_. For step t (1-based), per parameter θ with gradient g:
//
//   θ ← θ − lr · wd · θ                    (decoupled weight decay; wd = 0 for norm weights)
//   m ← β1 · m + (1 − β1) · g
//   v ← β2 · v + (1 − β2) · g²
//   θ ← θ − lr / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
//
// Clipping: n = ‖all gradients‖₂; if n > max: g ← g · max / (n + 1e-6) — applied as AdamW reads
// each gradient (adamwStep's gradScale), the gradients themselves left as backward() made them.

export interface AdamWHyper {
  readonly beta1: number;
  readonly beta2: number;
  /** Default 1e-8 (torch's). */
  readonly eps: number;
  /** Applied only to tensors whose `decay` flag is set (2-D and larger). */
  readonly weightDecay: number;
}

/**
 * One AdamW step over one tensor (params, grads, m, v of the same length), its values [from, to)
 * (default all: threads take a slice each). `step` is 1-based. Each gradient is read as
 * float32(g · gradScale) when gradScale ≠ 1: clipGradNorm's scaling, without its pass over them.
 */
export function adamwStep(params: Float32Array, grads: Float32Array, m: Float32Array, v: Float32Array, lr: number, weightDecay: number, hyper: AdamWHyper, step: number, from = 0, to = params.length, gradScale = 1): void {
  const { beta1, beta2, eps } = hyper;
  const bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, step));
  const stepSize = lr / (1 - Math.pow(beta1, step));
  const decay = 1 - lr * weightDecay;
  for (let i = from; i < to; i++) {
    const g = gradScale === 1 ? grads[i]! : Math.fround(grads[i]! * gradScale);
    const mi = (m[i] = beta1 * m[i]! + (1 - beta1) * g);
    const vi = (v[i] = beta2 * v[i]! + (1 - beta2) * g * g);
    const theta = Math.fround(params[i]! * decay);
    params[i] = theta - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + eps);
  }
}

/** Σ g² over grads[from, to), in float64. */
export function sumOfSquares(grads: Float32Array, from: number, to: number): number {
  let ss = 0;
  for (let i = from; i < to; i++) ss += grads[i]! * grads[i]!;
  return ss;
}

/** The factor clipping scales gradients of global norm `norm` by: max / (norm + 1e-6) when that is below 1, else 1. */
export function clipFactor(norm: number, maxNorm: number): number {
  if (!(maxNorm > 0)) return 1;
  const coef = maxNorm / (norm + 1e-6);
  return coef < 1 ? coef : 1;
}
