// Training's element-wise and row-wise kernels (src/train/layers.ts and adamw.ts have each one's
// TypeScript reference, in float64 where this is float32): the attention softmax's backward, SwiGLU
// forward and backward, the cross-entropy's gradient, RMSNorm forward and backward, AdamW (the
// attention's causal softmax is kernels.ts's causalSoftmaxRows). Arguments are byte addresses of
// float32 arrays.

import { exp1, exp4 } from './exp';
import { hsum, scaleInPlace } from './simd';

/**
 * Backward through the causal softmax of one head, in place over the (T, T) gradient s: for each
 * row t, with P the probabilities and g = s the gradient of the probabilities,
 *   s[t2] = P[t2] · (g[t2] − Σ_{u ≤ t} P[u] g[u]) · scale   for t2 ≤ t,   0 after.
 */
export function softmaxBackwardRows(P: usize, s: usize, T: i32, scale: f32): void {
  const rowBytes = <usize>T << 2;
  const vscale = f32x4.splat(scale);
  for (let t = 0; t < T; t++) {
    const pr = P + <usize>t * rowBytes, sr = s + <usize>t * rowBytes;
    const valid = t + 1;
    let vdot = f32x4.splat(0);
    let i = 0;
    for (; i + 4 <= valid; i += 4) {
      const o = <usize>i << 2;
      vdot = f32x4.add(vdot, f32x4.mul(v128.load(pr + o), v128.load(sr + o)));
    }
    let dot = hsum(vdot);
    for (; i < valid; i++) dot += load<f32>(pr + (<usize>i << 2)) * load<f32>(sr + (<usize>i << 2));
    const vd = f32x4.splat(dot);
    i = 0;
    for (; i + 4 <= valid; i += 4) {
      const o = <usize>i << 2;
      v128.store(sr + o, f32x4.mul(f32x4.mul(v128.load(pr + o), f32x4.sub(v128.load(sr + o), vd)), vscale));
    }
    for (; i < valid; i++) {
      const o = <usize>i << 2;
      store<f32>(sr + o, load<f32>(pr + o) * (load<f32>(sr + o) - dot) * scale);
    }
    if (valid < T) memory.fill(sr + (<usize>valid << 2), 0, <usize>(T - valid) << 2);
  }
}

/** out = silu(a) ⊙ b over n values, silu(a) = a · σ(a) = a / (1 + e^−a); out may be a (in place). */
export function swigluForwardTrain(out: usize, a: usize, b: usize, n: i32): void {
  const one = f32x4.splat(1);
  let i = 0;
  // four vectors a trip: their exponentials' dependency chains overlap (the same arithmetic)
  for (; i + 16 <= n; i += 16) {
    const o = <usize>i << 2;
    const x0 = v128.load(a + o), x1 = v128.load(a + o, 16), x2 = v128.load(a + o, 32), x3 = v128.load(a + o, 48);
    const e0 = exp4(f32x4.neg(x0)), e1 = exp4(f32x4.neg(x1)), e2 = exp4(f32x4.neg(x2)), e3 = exp4(f32x4.neg(x3));
    v128.store(out + o, f32x4.mul(f32x4.div(x0, f32x4.add(one, e0)), v128.load(b + o)));
    v128.store(out + o, f32x4.mul(f32x4.div(x1, f32x4.add(one, e1)), v128.load(b + o, 16)), 16);
    v128.store(out + o, f32x4.mul(f32x4.div(x2, f32x4.add(one, e2)), v128.load(b + o, 32)), 32);
    v128.store(out + o, f32x4.mul(f32x4.div(x3, f32x4.add(one, e3)), v128.load(b + o, 48)), 48);
  }
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const x = v128.load(a + o);
    v128.store(out + o, f32x4.mul(f32x4.div(x, f32x4.add(one, exp4(f32x4.neg(x)))), v128.load(b + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const x = load<f32>(a + o);
    store<f32>(out + o, (x / (<f32>1 + exp1(-x))) * load<f32>(b + o));
  }
}

/** swigluBackwardTrain for the four values at the given addresses, e = e^(−a) already computed. */
// @ts-ignore: decorator
@inline function swigluBackward4(da: usize, db: usize, dout: usize, a: usize, b: usize, e: v128): void {
  const one = f32x4.splat(1);
  const x = v128.load(a), g = v128.load(dout);
  const sig = f32x4.div(one, f32x4.add(one, e));
  v128.store(db, f32x4.add(v128.load(db), f32x4.mul(f32x4.mul(g, x), sig)));
  const dsilu = f32x4.mul(sig, f32x4.add(one, f32x4.mul(x, f32x4.sub(one, sig))));
  v128.store(da, f32x4.add(v128.load(da), f32x4.mul(f32x4.mul(g, v128.load(b)), dsilu)));
}

/**
 * SwiGLU's backward over n values, accumulating:  db += dout · silu(a);
 * da += dout · b · σ(a) · (1 + a · (1 − σ(a)))   (the derivative of a · σ(a)).
 */
export function swigluBackwardTrain(da: usize, db: usize, dout: usize, a: usize, b: usize, n: i32): void {
  const one = f32x4.splat(1);
  let i = 0;
  // four vectors a trip: their exponentials' dependency chains overlap (the same arithmetic)
  for (; i + 16 <= n; i += 16) {
    const o = <usize>i << 2;
    const e0 = exp4(f32x4.neg(v128.load(a + o))), e1 = exp4(f32x4.neg(v128.load(a + o, 16)));
    const e2 = exp4(f32x4.neg(v128.load(a + o, 32))), e3 = exp4(f32x4.neg(v128.load(a + o, 48)));
    swigluBackward4(da + o, db + o, dout + o, a + o, b + o, e0);
    swigluBackward4(da + o + 16, db + o + 16, dout + o + 16, a + o + 16, b + o + 16, e1);
    swigluBackward4(da + o + 32, db + o + 32, dout + o + 32, a + o + 32, b + o + 32, e2);
    swigluBackward4(da + o + 48, db + o + 48, dout + o + 48, a + o + 48, b + o + 48, e3);
  }
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    swigluBackward4(da + o, db + o, dout + o, a + o, b + o, exp4(f32x4.neg(v128.load(a + o))));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const x = load<f32>(a + o), g = load<f32>(dout + o);
    const sig = <f32>1 / (<f32>1 + exp1(-x));
    store<f32>(db + o, load<f32>(db + o) + g * x * sig);
    store<f32>(da + o, load<f32>(da + o) + g * load<f32>(b + o) * (sig * (<f32>1 + x * (<f32>1 - sig))));
  }
}

/**
 * The cross-entropy's gradient for one position, in place over its probabilities p (n): p · s,
 * and (p[y] − 1) · s at the target y (s = dloss / positions counted).
 */
export function crossEntropyBackwardRow(p: usize, n: i32, y: i32, s: f32): void {
  const py = load<f32>(p + (<usize>y << 2));
  scaleInPlace(p, n, s);
  store<f32>(p + (<usize>y << 2), (py - 1) * s);
}

/**
 * One AdamW step over n parameters in float32, as torch.optim.AdamW computes it (torch's float32
 * tensor operations, one after another; src/train/adamw.ts is the float64 reference):
 *   p ← p · decay;  m ← β1 · m + (1 − β1) · g;  v ← β2 · v + (1 − β2) · g · g;
 *   p ← p − stepSize · m / (√v / bc2Sqrt + ε)          with g = grad · gradScale (clipping)
 */
export function adamwTrain(
  p: usize, g: usize, m: usize, v: usize, n: i32,
  decay: f32, beta1: f32, oneMinusBeta1: f32, beta2: f32, oneMinusBeta2: f32, stepSize: f32, bc2Sqrt: f32, eps: f32, gradScale: f32,
): void {
  const vd = f32x4.splat(decay), b1 = f32x4.splat(beta1), c1 = f32x4.splat(oneMinusBeta1), b2 = f32x4.splat(beta2);
  const c2 = f32x4.splat(oneMinusBeta2), ss = f32x4.splat(stepSize), bc = f32x4.splat(bc2Sqrt), ep = f32x4.splat(eps);
  const gs = f32x4.splat(gradScale);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const gi = f32x4.mul(v128.load(g + o), gs);
    const mi = f32x4.add(f32x4.mul(v128.load(m + o), b1), f32x4.mul(gi, c1));
    const vi = f32x4.add(f32x4.mul(v128.load(v + o), b2), f32x4.mul(f32x4.mul(gi, gi), c2));
    v128.store(m + o, mi);
    v128.store(v + o, vi);
    const denom = f32x4.add(f32x4.div(f32x4.sqrt(vi), bc), ep);
    v128.store(p + o, f32x4.sub(f32x4.mul(v128.load(p + o), vd), f32x4.mul(ss, f32x4.div(mi, denom))));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const gi = load<f32>(g + o) * gradScale;
    const mi = load<f32>(m + o) * beta1 + gi * oneMinusBeta1;
    const vi = load<f32>(v + o) * beta2 + gi * gi * oneMinusBeta2;
    store<f32>(m + o, mi);
    store<f32>(v + o, vi);
    store<f32>(p + o, load<f32>(p + o) * decay - stepSize * (mi / (Mathf.sqrt(vi) / bc2Sqrt + eps)));
  }
}

/**
 * RMSNorm forward over `rows` rows of C values: r = 1 / √(mean(x²) + eps) per row (saved in
 * rstd for the backward), out = (x · r) ⊙ weight.
 */
export function rmsnormForwardTrain(out: usize, rstd: usize, x: usize, weight: usize, rows: i32, C: i32, eps: f64): void {
  const rowBytes = <usize>C << 2;
  for (let row = 0; row < rows; row++) {
    const xr = x + <usize>row * rowBytes, orow = out + <usize>row * rowBytes;
    let acc = f32x4.splat(0);
    let i = 0;
    for (; i + 4 <= C; i += 4) {
      const v = v128.load(xr + (<usize>i << 2));
      acc = f32x4.add(acc, f32x4.mul(v, v));
    }
    let ss = hsum(acc);
    for (; i < C; i++) { const v = load<f32>(xr + (<usize>i << 2)); ss += v * v; }
    const r = <f32>(1.0 / Math.sqrt(<f64>(ss / <f32>C) + eps));
    store<f32>(rstd + (<usize>row << 2), r);
    const vr = f32x4.splat(r);
    i = 0;
    for (; i + 4 <= C; i += 4) {
      const o = <usize>i << 2;
      v128.store(orow + o, f32x4.mul(f32x4.mul(v128.load(xr + o), vr), v128.load(weight + o)));
    }
    for (; i < C; i++) { const o = <usize>i << 2; store<f32>(orow + o, load<f32>(xr + o) * r * load<f32>(weight + o)); }
  }
}

/**
 * RMSNorm backward over `rows` rows, accumulating: with g = weight ⊙ dout and r the saved rstd,
 *   dweight += dout ⊙ x · r;   dx += r · g − x · r³ · (g · x) / C
 */
export function rmsnormBackwardTrain(dx: usize, dweight: usize, dout: usize, x: usize, weight: usize, rstd: usize, rows: i32, C: i32): void {
  const rowBytes = <usize>C << 2;
  for (let row = 0; row < rows; row++) {
    const xr = x + <usize>row * rowBytes, dr = dout + <usize>row * rowBytes, dxr = dx + <usize>row * rowBytes;
    const r = load<f32>(rstd + (<usize>row << 2));
    let acc = f32x4.splat(0);
    let i = 0;
    for (; i + 4 <= C; i += 4) {
      const o = <usize>i << 2;
      acc = f32x4.add(acc, f32x4.mul(f32x4.mul(v128.load(weight + o), v128.load(dr + o)), v128.load(xr + o)));
    }
    let gx = hsum(acc);
    for (; i < C; i++) { const o = <usize>i << 2; gx += load<f32>(weight + o) * load<f32>(dr + o) * load<f32>(xr + o); }
    const k = (r * r * r * gx) / <f32>C;
    const vr = f32x4.splat(r), vk = f32x4.splat(k);
    i = 0;
    for (; i + 4 <= C; i += 4) {
      const o = <usize>i << 2;
      const d = v128.load(dr + o), xv = v128.load(xr + o);
      v128.store(dweight + o, f32x4.add(v128.load(dweight + o), f32x4.mul(f32x4.mul(d, xv), vr)));
      v128.store(dxr + o, f32x4.add(v128.load(dxr + o), f32x4.sub(f32x4.mul(f32x4.mul(vr, v128.load(weight + o)), d), f32x4.mul(vk, xv))));
    }
    for (; i < C; i++) {
      const o = <usize>i << 2;
      const d = load<f32>(dr + o), xv = load<f32>(xr + o);
      store<f32>(dweight + o, load<f32>(dweight + o) + d * xv * r);
      store<f32>(dxr + o, load<f32>(dxr + o) + (r * load<f32>(weight + o) * d - k * xv));
    }
  }
}
