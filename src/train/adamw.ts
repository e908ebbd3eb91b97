// The optimiser, exactly as torch.optim.AdamW computes it, and global-norm gradient clipping as
// torch.nn.utils.clip_grad_norm_. For step t (1-based), per parameter θ with gradient g:
//
//   θ ← θ − lr · wd · θ                    (decoupled weight decay; wd = 0 for norm weights)
//   m ← β1 · m + (1 − β1) · g
//   v ← β2 · v + (1 − β2) · g²
//   θ ← θ − lr / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
//
// Clipping: n = ‖all gradients‖₂; if n > max: g ← g · max / (n + 1e-6).

export interface AdamWHyper {
  readonly beta1: number;
  readonly beta2: number;
  /** Default 1e-8 (torch's). */
  readonly eps: number;
  /** Applied only to tensors whose `decay` flag is set (2-D and larger). */
  readonly weightDecay: number;
}

/** One AdamW step over one tensor (params, grads, m, v of the same length). `step` is 1-based. */
export function adamwStep(params: Float32Array, grads: Float32Array, m: Float32Array, v: Float32Array, lr: number, weightDecay: number, hyper: AdamWHyper, step: number): void {
  const { beta1, beta2, eps } = hyper;
  const bc1 = 1 - Math.pow(beta1, step);
  const bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, step));
  const stepSize = lr / bc1;
  const decay = 1 - lr * weightDecay;
  for (let i = 0; i < params.length; i++) {
    const g = grads[i]!;
    const mi = (m[i] = beta1 * m[i]! + (1 - beta1) * g);
    const vi = (v[i] = beta2 * v[i]! + (1 - beta2) * g * g);
    const theta = Math.fround(params[i]! * decay);
    params[i] = theta - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + eps);
  }
}

/**
 * Scales the gradients so that their global L2 norm is at most `maxNorm` (0 or less: no clipping).
 * Returns the norm before clipping.
 */
export function clipGradNorm(grads: Float32Array, maxNorm: number): number {
  let ss = 0;
  for (let i = 0; i < grads.length; i++) ss += grads[i]! * grads[i]!;
  const norm = Math.sqrt(ss);
  if (maxNorm > 0) {
    const coef = maxNorm / (norm + 1e-6);
    if (coef < 1) for (let i = 0; i < grads.length; i++) grads[i] = grads[i]! * coef;
  }
  return norm;
}
