// The sampler of llama2.c's run.c in WebAssembly: temperature, float32 softmax, and multinomial or
// top-p (nucleus) sampling — the same arithmetic as src/infer/sampler.ts (the reference), so both
// pick the same token bit for bit. Only the random draw (`coin`) stays in TypeScript.
//
// run.c works in float32 with a SEQUENTIAL float accumulator, so the sums below are scalar and in
// index order (a SIMD sum would round differently). What can be vectorised without changing any
// result is: the division by the temperature (IEEE division is exact per lane), the maximum (order
// does not matter for a maximum), the division by the sum, and the sort.
//
// expf is Mathf.exp = AssemblyScript's port of the expf of ARM's optimized-routines (musl; glibc ≥
// 2.28 uses the same algorithm), evaluated in float64 and rounded once; sampler.ts carries a
// transcription of it.
//
// The nucleus sort. run.c sorts the candidates (probability ≥ cutoff) by descending probability with
// qsort; glibc's qsort is a merge sort, so equal probabilities keep index order. Here each candidate
// becomes one u64, (0x7F800000 − bits(prob)) << 32 | index: for non-negative floats the bit pattern
// orders like the value, so ascending u64 order is descending probability, ties by ascending index —
// the same order. The u64s are sorted by an LSD radix sort on key − smallest key, in digits of ≤ 13
// bits (insertion sort when few). Measured on 32000 candidates (an untrained model's flat
// distribution, keys spanning 2^24): two passes of 12 bits beat three or four narrower ones, and
// sampling takes ~0.31 ms in all; run.c's top-p code (qsort) compiled with -Ofast takes ~3.5 ms here.

/** Scratch bytes `sample` needs for a vocabulary of n: two u64 arrays of n and the radix sort's counters. */
export function sampleScratchBytes(n: i32): usize {
  return (<usize>n << 4) + <usize>(RADIX * 4);
}

/**
 * Picks a token from logits x (n), overwriting x with the probabilities (as run.c does):
 * x /= temperature (> 0); softmax; then multinomial with `coin` when topp ≤ 0 or ≥ 1, else top-p.
 */
export function sample(x: usize, n: i32, temperature: f32, topp: f32, coin: f32, scratch: usize): i32 {
  // The largest logit, before the division: dividing by T > 0 keeps the order, so the largest
  // quotient is max / T (rounded), which the softmax needs. If that overflows (a temperature of
  // ~1e-38, or huge logits), the distribution is all on the largest logit: the argmax (run.c
  // would compute ∞ − ∞ = NaN probabilities). Likewise when every quotient is −∞.
  const max = maxOf(x, n);
  const scaled = max / temperature;
  if (!isFinite<f32>(scaled)) return argmax(x, n);
  divideBy(x, n, temperature);
  const sum = exponentiate(x, n, scaled);
  // (the softmax's last step, x /= sum, is folded into top-p's first pass over x)
  if (topp > 0 && topp < 1) return sampleTopP(x, n, sum, topp, coin, scratch);
  divideBy(x, n, sum);
  return sampleMultinomial(x, n, coin);
}

/** x[i] = x[i] / d. */
function divideBy(x: usize, n: i32, d: f32): void {
  const vd = f32x4.splat(d);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const p = x + (<usize>i << 2);
    v128.store(p, f32x4.div(v128.load(p), vd));
  }
  for (; i < n; i++) {
    const p = x + (<usize>i << 2);
    store<f32>(p, load<f32>(p) / d);
  }
}

/**
 * The largest of x (n): run.c's rule `if (x[i] > max) max = x[i]` per lane (pmax), NaN included,
 * then across the lanes and the tail.
 */
function maxOf(x: usize, n: i32): f32 {
  let vmax = v128.load32_splat(x);
  let i = 0;
  for (; i + 4 <= n; i += 4) vmax = f32x4.pmax(vmax, v128.load(x + (<usize>i << 2)));
  let max = f32x4.extract_lane(vmax, 0);
  if (f32x4.extract_lane(vmax, 1) > max) max = f32x4.extract_lane(vmax, 1);
  if (f32x4.extract_lane(vmax, 2) > max) max = f32x4.extract_lane(vmax, 2);
  if (f32x4.extract_lane(vmax, 3) > max) max = f32x4.extract_lane(vmax, 3);
  for (; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    if (v > max) max = v;
  }
  return max;
}

/**
 * The next two steps of run.c's softmax, given its max: x[i] = expf(x[i] − max) with a sequential
 * float32 sum, which it returns (the last step is x[i] /= sum).
 */
function exponentiate(x: usize, n: i32, max: f32): f32 {
  let i = 0;
  // e = expf(x − max), four at a time where all four are in expf's main range (else one by one),
  // and the sum, sequentially in float32 as run.c adds (the additions are the critical path; the
  // exponentials of the next four overlap with them)
  const vmaxs = f32x4.splat(max);
  let sum: f32 = 0;
  for (i = 0; i + 4 <= n; i += 4) {
    const p = x + (<usize>i << 2);
    const v = f32x4.sub(v128.load(p), vmaxs);
    let e: v128;
    if (i32x4.all_true(f32x4.lt(f32x4.abs(v), f32x4.splat(88)))) {
      e = expf4(v);
    } else {
      e = f32x4.splat(Mathf.exp(f32x4.extract_lane(v, 0)));
      e = f32x4.replace_lane(e, 1, Mathf.exp(f32x4.extract_lane(v, 1)));
      e = f32x4.replace_lane(e, 2, Mathf.exp(f32x4.extract_lane(v, 2)));
      e = f32x4.replace_lane(e, 3, Mathf.exp(f32x4.extract_lane(v, 3)));
    }
    v128.store(p, e);
    sum += f32x4.extract_lane(e, 0);
    sum += f32x4.extract_lane(e, 1);
    sum += f32x4.extract_lane(e, 2);
    sum += f32x4.extract_lane(e, 3);
  }
  for (; i < n; i++) {
    const p = x + (<usize>i << 2);
    const e = Mathf.exp(load<f32>(p) - max);
    store<f32>(p, e);
    sum += e;
  }
  return sum;
}

// Mathf.exp (expf_lut of AssemblyScript's std/assembly/util/math.ts) for four values with
// |x| < 88, two float64 lanes at a time: the same float64 operations in the same order, so the
// same results. x·32/ln2 = k + r; e^x = 2^(k/32) · (1 + C2·r + C1·r² + C0·r³).

/** exp2f_data_tab[i] = bits(2^(i/32)) − (i << 47), as in the C library. */
const EXP2F_TAB = memory.data<u64>([
  0x3FF0000000000000, 0x3FEFD9B0D3158574, 0x3FEFB5586CF9890F, 0x3FEF9301D0125B51,
  0x3FEF72B83C7D517B, 0x3FEF54873168B9AA, 0x3FEF387A6E756238, 0x3FEF1E9DF51FDEE1,
  0x3FEF06FE0A31B715, 0x3FEEF1A7373AA9CB, 0x3FEEDEA64C123422, 0x3FEECE086061892D,
  0x3FEEBFDAD5362A27, 0x3FEEB42B569D4F82, 0x3FEEAB07DD485429, 0x3FEEA47EB03A5585,
  0x3FEEA09E667F3BCD, 0x3FEE9F75E8EC5F74, 0x3FEEA11473EB0187, 0x3FEEA589994CCE13,
  0x3FEEACE5422AA0DB, 0x3FEEB737B0CDC5E5, 0x3FEEC49182A3F090, 0x3FEED503B23E255D,
  0x3FEEE89F995AD3AD, 0x3FEEFF76F2FB5E47, 0x3FEF199BDD85529C, 0x3FEF3720DCEF9069,
  0x3FEF5818DCFBA487, 0x3FEF7C97337B9B5F, 0x3FEFA4AFA2A490DA, 0x3FEFD0765B6E4540,
]);

// @ts-ignore: decorator
@inline function expf2(xd: v128): v128 {
  const N: f64 = 32;
  const shift = reinterpret<f64>(0x4338000000000000); // 0x1.8p52
  const z = f64x2.mul(f64x2.splat(reinterpret<f64>(0x3FF71547652B82FE) * N), xd);
  const kd = f64x2.add(z, f64x2.splat(shift));
  const r = f64x2.sub(z, f64x2.sub(kd, f64x2.splat(shift)));
  let t = i64x2.splat(load<u64>(EXP2F_TAB + ((<usize>i64x2.extract_lane(kd, 0) & 31) << 3)));
  t = i64x2.replace_lane(t, 1, load<u64>(EXP2F_TAB + ((<usize>i64x2.extract_lane(kd, 1) & 31) << 3)));
  const s = i64x2.add(t, i64x2.shl(kd, 47));
  const c = f64x2.add(f64x2.mul(f64x2.splat(reinterpret<f64>(0x3FAC6AF84B912394) / N / N / N), r), f64x2.splat(reinterpret<f64>(0x3FCEBFCE50FAC4F3) / N / N));
  let y = f64x2.add(f64x2.mul(f64x2.splat(reinterpret<f64>(0x3FE62E42FF0C52D6) / N), r), f64x2.splat(1));
  y = f64x2.add(y, f64x2.mul(c, f64x2.mul(r, r)));
  return f64x2.mul(y, s);
}

// @ts-ignore: decorator
@inline function expf4(x: v128): v128 {
  const lo = f32x4.demote_f64x2_zero(expf2(f64x2.promote_low_f32x4(x)));
  const hi = f32x4.demote_f64x2_zero(expf2(f64x2.promote_low_f32x4(v128.shuffle<f32>(x, x, 2, 3, 0, 1))));
  return v128.shuffle<f32>(lo, hi, 0, 1, 4, 5);
}

function sampleMultinomial(probs: usize, n: i32, coin: f32): i32 {
  let cdf: f32 = 0;
  for (let i = 0; i < n; i++) {
    cdf += load<f32>(probs + (<usize>i << 2));
    if (coin < cdf) return i;
  }
  return n - 1; // in case of rounding errors
}

/**
 * Index of the first largest value, as argmax finds it, four values at a time: the maximum (pmax
 * keeps the first of equals and skips NaN, as the scalar `>` does), then the first index holding
 * it. Greedy decoding's whole sampler.
 */
export function greedy(x: usize, n: i32): i32 {
  const max = maxOf(x, n);
  if (max != max) return 0; // x[0] is NaN: nothing compares greater
  const vmax = f32x4.splat(max);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    if (v128.any_true(f32x4.eq(v128.load(x + (<usize>i << 2)), vmax))) break;
  }
  for (; i < n; i++) if (load<f32>(x + (<usize>i << 2)) == max) return i;
  return 0;
}

/** Index of the first largest value (run.c's argmax). */
function argmax(x: usize, n: i32): i32 {
  let best = 0;
  let max = load<f32>(x);
  for (let i = 1; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    if (v > max) {
      max = v;
      best = i;
    }
  }
  return best;
}

/** Candidates up to this many are sorted by insertion; more by radix sort. */
const INSERTION_MAX: i32 = 48;

/**
 * Top-p over the exponentials e (n) and their sum: first p = e / sum in place (the probabilities
 * run.c leaves in the logits) while collecting the candidates p ≥ cutoff as sort keys; then the
 * candidates sorted, summed in order until the sum exceeds topp, and a draw from that prefix.
 */
function sampleTopP(e: usize, n: i32, sum: f32, topp: f32, coin: f32, scratch: usize): i32 {
  // tokens below the cutoff can't be part of the nucleus: (1 − p) spread over the other n − 1
  const cutoff = (<f32>1 - topp) / <f32>(n - 1);
  const keys = scratch;
  let n0 = 0;
  // four at a time: p = e / sum (IEEE division, lane by lane the scalar result), the candidates'
  // (key, index) pairs interleaved as u64s, the smallest and largest key
  const vsum = f32x4.splat(sum), vcut = f32x4.splat(cutoff), vtop = i32x4.splat(0x7F800000);
  let vmin = i32x4.splat(-1), vmax = i32x4.splat(0);
  let index = i32x4(0, 1, 2, 3);
  const four = i32x4.splat(4);
  let i = 0;
  for (; i + 4 <= n; i += 4, index = i32x4.add(index, four)) {
    const at = e + (<usize>i << 2);
    const p = f32x4.div(v128.load(at), vsum);
    v128.store(at, p);
    const take = f32x4.ge(p, vcut);
    const lanes = i32x4.bitmask(take);
    if (lanes == 0) continue;
    const key = i32x4.sub(vtop, p);
    if (lanes == 15) {
      const out = keys + (<usize>n0 << 3);
      v128.store(out, v128.shuffle<i32>(index, key, 0, 4, 1, 5));
      v128.store(out, v128.shuffle<i32>(index, key, 2, 6, 3, 7), 16);
      vmin = i32x4.min_u(vmin, key);
      vmax = i32x4.max_u(vmax, key);
      n0 += 4;
    } else {
      // some lanes: keep the others out of the min and max
      vmin = i32x4.min_u(vmin, v128.or(key, v128.not(take)));
      vmax = i32x4.max_u(vmax, v128.and(key, take));
      for (let lane = 0; lane < 4; lane++) {
        if ((lanes >> lane) & 1) {
          const k = <u32>(0x7F800000 - reinterpret<u32>(load<f32>(at + (<usize>lane << 2))));
          store<u64>(keys + (<usize>n0 << 3), (<u64>k << 32) | <u64>(i + lane));
          n0++;
        }
      }
    }
  }
  let minKey = min(min(i32x4.extract_lane(vmin, 0) as u32, i32x4.extract_lane(vmin, 1) as u32), min(i32x4.extract_lane(vmin, 2) as u32, i32x4.extract_lane(vmin, 3) as u32));
  let maxKey = max(max(i32x4.extract_lane(vmax, 0) as u32, i32x4.extract_lane(vmax, 1) as u32), max(i32x4.extract_lane(vmax, 2) as u32, i32x4.extract_lane(vmax, 3) as u32));
  for (; i < n; i++) {
    const at = e + (<usize>i << 2);
    const p = load<f32>(at) / sum;
    store<f32>(at, p);
    if (p >= cutoff) {
      const key: u32 = 0x7F800000 - reinterpret<u32>(p);
      store<u64>(keys + (<usize>n0 << 3), (<u64>key << 32) | <u64>i);
      minKey = min(minKey, key);
      maxKey = max(maxKey, key);
      n0++;
    }
  }
  if (n0 == 0) return argmax(e, n); // flat distribution, tiny p (run.c would read out of bounds)
  const other = scratch + (<usize>n << 3);
  const sorted = n0 <= INSERTION_MAX ? insertionSort(keys, n0) : radixSort(keys, other, scratch + (<usize>n << 4), n0, minKey, maxKey);
  // the smallest prefix whose probability exceeds topp, keeping every running sum (in the other
  // half of the scratch) for the draw below
  const sums = sorted == keys ? other : keys;
  let cumulative: f32 = 0;
  let last = n0 - 1;
  for (let j = 0; j < n0; j++) {
    cumulative += probOf(sorted, j);
    store<f32>(sums + (<usize>j << 2), cumulative);
    if (cumulative > topp) {
      last = j;
      break;
    }
  }
  // run.c draws r = coin · cumulative and takes the first j ≤ last whose running sum exceeds r:
  // the running sums never decrease, so a binary search finds the same j
  const r = coin * cumulative;
  let lo = 0, hi = last; // the answer is in [lo, hi]; hi = last also when no sum exceeds r
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (r < load<f32>(sums + (<usize>mid << 2))) hi = mid;
    else lo = mid + 1;
  }
  return indexOf(sorted, lo);
}

// @ts-ignore: decorator
@inline function probOf(keys: usize, i: i32): f32 {
  return reinterpret<f32>(0x7F800000 - <u32>(load<u64>(keys + (<usize>i << 3)) >> 32));
}

// @ts-ignore: decorator
@inline function indexOf(keys: usize, i: i32): i32 {
  return <i32>load<u64>(keys + (<usize>i << 3));
}

/** Sorts n u64s at a ascending (all distinct); returns a. */
function insertionSort(a: usize, n: i32): usize {
  for (let i = 1; i < n; i++) {
    const v = load<u64>(a + (<usize>i << 3));
    let j = i - 1;
    while (j >= 0 && load<u64>(a + (<usize>j << 3)) > v) {
      store<u64>(a + (<usize>(j + 1) << 3), load<u64>(a + (<usize>j << 3)));
      j--;
    }
    store<u64>(a + (<usize>(j + 1) << 3), v);
  }
  return a;
}

/** Radix digits of at most 13 bits (8192 counters, 32 KiB): two passes sort keys that span ≤ 2^26 values. */
const MAX_DIGIT_BITS: u32 = 13;
const RADIX: i32 = 1 << MAX_DIGIT_BITS;

/**
 * Stable LSD radix sort of n u64s by their high 32 bits (all in [minKey, maxKey]), between a and b;
 * the low 32 bits (ascending already) keep their order among equal keys. It sorts by key − minKey,
 * in digits of ≤ 13 bits: two passes for the 32000 candidates of a flat distribution (which span a
 * few binades), more passes of smaller digits for a few hundred candidates, whose counters would
 * otherwise cost more than the candidates. Returns the array holding the result (a or b).
 */
function radixSort(a: usize, b: usize, counts: usize, n: i32, minKey: u32, maxKey: u32): usize {
  const spread: u32 = 32 - <u32>clz(maxKey - minKey);
  if (spread == 0) return a; // all keys equal: index order it is
  // a pass costs about n (count, then place) plus 2^bits (clear the counters, prefix sums): take
  // the number of passes that minimises passes · (n + 2^bits), digits of at most 13 bits
  let passes: u32 = (spread + MAX_DIGIT_BITS - 1) / MAX_DIGIT_BITS;
  let bits: u32 = (spread + passes - 1) / passes;
  for (let p: u32 = passes + 1; p <= 4; p++) {
    const b = (spread + p - 1) / p;
    if (<u64>p * (<u64>n + (<u64>1 << b)) < <u64>passes * (<u64>n + (<u64>1 << bits))) {
      passes = p;
      bits = b;
    }
  }
  const mask: u32 = (1 << bits) - 1;
  let src = a, dst = b;
  for (let d: u32 = 0; d < passes; d++) {
    const shift = d * bits;
    memory.fill(counts, 0, <usize>(mask + 1) << 2);
    for (let i = 0; i < n; i++) {
      const c = counts + (<usize>(((<u32>(load<u64>(src + (<usize>i << 3)) >> 32) - minKey) >> shift) & mask) << 2);
      store<u32>(c, load<u32>(c) + 1);
    }
    // exclusive prefix sums: where each digit value's run starts
    let total: u32 = 0;
    for (let v: u32 = 0; v <= mask; v++) {
      const c = counts + (<usize>v << 2);
      const size = load<u32>(c);
      store<u32>(c, total);
      total += size;
    }
    for (let i = 0; i < n; i++) {
      const v = load<u64>(src + (<usize>i << 3));
      const c = counts + (<usize>(((<u32>(v >> 32) - minKey) >> shift) & mask) << 2);
      const at = load<u32>(c);
      store<u32>(c, at + 1);
      store<u64>(dst + (<usize>at << 3), v);
    }
    const t = src; src = dst; dst = t;
  }
  return src;
}
