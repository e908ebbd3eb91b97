// Sampling the next token from the logits, bit for bit as llama2.c's run.c does it, so that a
// seeded run prints exactly what the C program prints. run.c works in float32 throughout: every
// intermediate below is rounded to float32 (Math.fround, or a store into a Float32Array) where
// the C code holds it in a `float`.
//
//   temperature 0      → argmax (first maximum)
//   otherwise          → logits /= temperature; probs = softmax(logits); coin = random_f32()
//     top-p ≤ 0 or ≥ 1 → multinomial: first i with coin < Σ_{j≤i} probs[j]
//     else nucleus     → keep probs ≥ (1 − p)/(n − 1) (they can't be in the nucleus otherwise),
//                        sort descending, cut after the cumulative sum first exceeds p, and draw
//                        from that set with coin · (its total).

const f32 = Math.fround;

/**
 * xorshift64* — run.c's random_u32 — on two uint32 halves, so that no BigInt is allocated per
 * token. The state is a uint64; the output is the high 32 bits of state · 0x2545F4914F6CDD1D.
 */
export class Xorshift64Star {
  private hi: number;
  private lo: number;

  constructor(seed: bigint) {
    const s = BigInt.asUintN(64, seed);
    this.hi = Number(s >> 32n) >>> 0;
    this.lo = Number(s & 0xffffffffn) >>> 0;
  }

  /** The current state (to save and restore a generator). */
  get state(): bigint {
    return (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }

  nextU32(): number {
    let hi = this.hi, lo = this.lo;
    // state ^= state >> 12
    lo = (lo ^ ((lo >>> 12) | (hi << 20))) >>> 0;
    hi = (hi ^ (hi >>> 12)) >>> 0;
    // state ^= state << 25
    hi = (hi ^ ((hi << 25) | (lo >>> 7))) >>> 0;
    lo = (lo ^ (lo << 25)) >>> 0;
    // state ^= state >> 27
    lo = (lo ^ ((lo >>> 27) | (hi << 5))) >>> 0;
    hi = (hi ^ (hi >>> 27)) >>> 0;
    this.hi = hi;
    this.lo = lo;
    // (state * M) >> 32 = high word of lo·Mlo + low words of hi·Mlo and lo·Mhi (mod 2^32)
    const M_HI = 0x2545f491, M_LO = 0x4f6cdd1d;
    return (mulHigh32(lo, M_LO) + Math.imul(hi, M_LO) + Math.imul(lo, M_HI)) >>> 0;
  }

  /** A float32 in [0, 1): the top 24 bits of nextU32() / 2^24. */
  nextF32(): number {
    return (this.nextU32() >>> 8) / 16777216;
  }
}

/** High 32 bits of the 64-bit product of two uint32 values. */
function mulHigh32(a: number, b: number): number {
  const a0 = a & 0xffff, a1 = a >>> 16, b0 = b & 0xffff, b1 = b >>> 16;
  const p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  return (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16)) >>> 0;
}

/** The seed run.c uses: the given one, or the current time in seconds when it is 0 (unset). */
export function resolveSeed(seed: number | bigint | undefined): bigint {
  const s = seed === undefined ? 0n : BigInt.asUintN(64, BigInt(seed));
  return s === 0n ? BigInt(Math.floor(Date.now() / 1000)) : s;
}

export interface SamplerOptions {
  /** 0 = greedy. Default 1. */
  temperature?: number;
  /** Nucleus threshold; ≤ 0 or ≥ 1 means plain multinomial sampling. Default 0.9. */
  topp?: number;
  /** xorshift64* seed; 0 or absent = current time (as run.c). Negative values wrap to uint64 as in C. */
  seed?: number | bigint;
}

export class Sampler {
  readonly temperature: number;
  readonly topp: number;
  readonly rng: Xorshift64Star;
  /** Token ids of the nucleus candidates, and merge-sort scratch (made once: no allocation per token). */
  private readonly index: Int32Array;
  private readonly scratch: Int32Array;

  constructor(readonly vocabSize: number, options: SamplerOptions = {}) {
    this.temperature = f32(options.temperature ?? 1);
    this.topp = f32(options.topp ?? 0.9);
    this.rng = new Xorshift64Star(resolveSeed(options.seed));
    this.index = new Int32Array(vocabSize);
    this.scratch = new Int32Array(vocabSize);
  }

  /** Picks the next token. Like run.c, it overwrites `logits` with the probabilities. */
  sample(logits: Float32Array): number {
    const n = this.vocabSize;
    if (this.temperature === 0) return argmax(logits, n);
    for (let i = 0; i < n; i++) logits[i] = logits[i]! / this.temperature;
    softmaxF32(logits, n);
    const coin = this.rng.nextF32();
    if (this.topp <= 0 || this.topp >= 1) return sampleMultinomial(logits, n, coin);
    return this.sampleTopP(logits, n, coin);
  }

  private sampleTopP(probs: Float32Array, n: number, coin: number): number {
    const topp = this.topp;
    const idx = this.index;
    // Tokens below the cutoff can't be part of the nucleus: (1 - p) spread over the other n - 1.
    const cutoff = f32(f32(1 - topp) / (n - 1));
    let n0 = 0;
    for (let i = 0; i < n; i++) if (probs[i]! >= cutoff) idx[n0++] = i;
    if (n0 === 0) return argmax(probs, n); // flat distribution, tiny p: run.c would read out of bounds
    sortByProbDescending(idx, this.scratch, n0, probs);
    // the smallest prefix whose probability exceeds topp
    let cumulative = 0;
    let last = n0 - 1;
    for (let i = 0; i < n0; i++) {
      cumulative = f32(cumulative + probs[idx[i]!]!);
      if (cumulative > topp) {
        last = i;
        break;
      }
    }
    const r = f32(coin * cumulative);
    let cdf = 0;
    for (let i = 0; i <= last; i++) {
      cdf = f32(cdf + probs[idx[i]!]!);
      if (r < cdf) return idx[i]!;
    }
    return idx[last]!;
  }
}

/** Index of the first largest value. */
export function argmax(x: Float32Array, n: number): number {
  let best = 0;
  let max = x[0]!;
  for (let i = 1; i < n; i++) {
    if (x[i]! > max) {
      max = x[i]!;
      best = i;
    }
  }
  return best;
}

/** run.c's softmax in float32 arithmetic (expf, a float accumulator), in place. */
export function softmaxF32(x: Float32Array, n: number): void {
  let max = x[0]!;
  for (let i = 1; i < n; i++) if (x[i]! > max) max = x[i]!;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    x[i] = Math.exp(f32(x[i]! - max));
    sum = f32(sum + x[i]!);
  }
  for (let i = 0; i < n; i++) x[i] = x[i]! / sum;
}

function sampleMultinomial(probs: Float32Array, n: number, coin: number): number {
  let cdf = 0;
  for (let i = 0; i < n; i++) {
    cdf = f32(cdf + probs[i]!);
    if (coin < cdf) return i;
  }
  return n - 1; // in case of rounding errors
}

/**
 * Sorts idx[0..n) by probs[idx] descending, keeping equal probabilities in index order — what
 * glibc's qsort (a merge sort for arrays this size) does with run.c's comparator. Bottom-up merge
 * sort with a preallocated scratch array.
 */
function sortByProbDescending(idx: Int32Array, tmp: Int32Array, n: number, probs: Float32Array): void {
  let src = idx, dst = tmp;
  for (let width = 1; width < n; width *= 2) {
    for (let lo = 0; lo < n; lo += 2 * width) {
      const mid = Math.min(lo + width, n), hi = Math.min(lo + 2 * width, n);
      let i = lo, j = mid, k = lo;
      while (i < mid && j < hi) dst[k++] = probs[src[j]!]! > probs[src[i]!]! ? src[j++]! : src[i++]!;
      while (i < mid) dst[k++] = src[i++]!;
      while (j < hi) dst[k++] = src[j++]!;
    }
    const t = src; src = dst; dst = t;
  }
  if (src !== idx) for (let i = 0; i < n; i++) idx[i] = src[i]!;
}
