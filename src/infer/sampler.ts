// Sampling the next token from the logits, bit for bit as llama2.c's run.c does it, so that a
// seeded run prints exactly what the C program prints. run.c works in float32 throughout: every
// intermediate below is rounded to float32 (Math.fround, or a store into a Float32Array) where
// the C code holds it in a `float`.
//
//   temperature 0      → argmax (first maximum)
//   max logit / T overflows float32 (T ≈ 1e-38) → argmax too, the limit of the distribution
//                        (run.c computes NaN probabilities there); the coin is still drawn
//   otherwise          → logits /= temperature; probs = softmax(logits); coin = random_f32()
//     top-p ≤ 0 or ≥ 1 → multinomial: first i with coin < Σ_{j≤i} probs[j]
//     else nucleus     → keep probs ≥ (1 − p)/(n − 1) (they can't be in the nucleus otherwise),
//                        sort descending, cut after the cumulative sum first exceeds p, and draw
//                        from that set with coin · (its total).

import { LlamaError, UsageError } from '../errors.js';
import { wasmSamplerAvailable, wasmSamplerEngineFor } from '../kernels/sampler-wasm.js';

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
  /**
   * 'js': the TypeScript code below. 'wasm': the same computation in WebAssembly
   * (assembly/sampler.ts, several times faster on large vocabularies; needs the kernels module
   * compiled, i.e. wasm kernels created first). Default: 'wasm' when available, else 'js'. Both pick
   * the same tokens bit for bit.
   */
  implementation?: 'js' | 'wasm';
}

export class Sampler {
  readonly temperature: number;
  readonly topp: number;
  readonly rng: Xorshift64Star;
  /**
   * Token ids of the nucleus candidates, and merge-sort scratch, for the TypeScript implementation:
   * made at its first top-p draw (never with the WebAssembly one), then reused for every token.
   */
  private index = new Int32Array(0);
  private scratch = new Int32Array(0);
  /** Whether the WebAssembly implementation samples (sampler-wasm.ts picks its engine per buffer). */
  private readonly wasm: boolean;

  constructor(readonly vocabSize: number, options: SamplerOptions = {}) {
    this.temperature = f32(options.temperature ?? 1);
    this.topp = f32(options.topp ?? 0.9);
    // (NaN would sample garbage, and differently in the two implementations)
    if (!(this.temperature >= 0)) throw new UsageError(`temperature must be a number ≥ 0, got ${options.temperature}`);
    if (Number.isNaN(this.topp)) throw new UsageError('top-p must be a number, got NaN');
    this.rng = new Xorshift64Star(resolveSeed(options.seed));
    this.wasm = options.implementation !== 'js' && wasmSamplerAvailable();
    if (options.implementation === 'wasm' && !this.wasm) {
      throw new LlamaError('the WebAssembly sampler needs the wasm kernels loaded first');
    }
  }

  /** Which implementation samples. */
  get implementation(): 'js' | 'wasm' {
    return this.wasm ? 'wasm' : 'js';
  }

  /**
   * Advances the random stream exactly as sample() would, without sampling: for a step whose
   * sampled token would be thrown away (run.c's chat samples at every prompt token too).
   */
  skip(): void {
    if (this.temperature !== 0) this.rng.nextF32();
  }

  /** Picks the next token. Like run.c, it overwrites `logits` with the probabilities. */
  sample(logits: Float32Array): number {
    const n = this.vocabSize;
    if (logits.length < n) throw new RangeError(`sample: ${logits.length} logits for a vocabulary of ${n}`);
    if (this.temperature === 0) return (this.wasm ? wasmSamplerEngineFor(logits)!.argmax?.(logits, n) : undefined) ?? argmax(logits, n);
    if (this.wasm) return wasmSamplerEngineFor(logits)!.sample(logits, n, this.temperature, this.topp, this.rng.nextF32());
    // logits / temperature overflowing float32 (a temperature of ~1e-38, or huge logits) would
    // make the softmax NaN (∞ − ∞): the distribution is then all on the largest logit. (Dividing
    // by T > 0 keeps the order, so the largest quotient is the largest logit's.)
    if (!Number.isFinite(f32(maxOf(logits, n) / this.temperature))) {
      this.rng.nextF32(); // the draw a sample takes, as with any other temperature
      return argmax(logits, n);
    }
    for (let i = 0; i < n; i++) logits[i] = logits[i]! / this.temperature;
    softmaxF32(logits, n);
    const coin = this.rng.nextF32();
    if (this.topp <= 0 || this.topp >= 1) return sampleMultinomial(logits, n, coin);
    return this.sampleTopP(logits, n, coin);
  }

  private sampleTopP(probs: Float32Array, n: number, coin: number): number {
    const topp = this.topp;
    if (this.index.length < n) {
      this.index = new Int32Array(n);
      this.scratch = new Int32Array(n);
    }
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

/** The largest of x[0..n) (run.c's rule: `if (x[i] > max) max = x[i]`). */
function maxOf(x: Float32Array, n: number): number {
  let max = x[0]!;
  for (let i = 1; i < n; i++) if (x[i]! > max) max = x[i]!;
  return max;
}

/** run.c's softmax in float32 arithmetic (expf, a float accumulator), in place. */
export function softmaxF32(x: Float32Array, n: number): void {
  let max = x[0]!;
  for (let i = 1; i < n; i++) if (x[i]! > max) max = x[i]!;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    x[i] = expf(f32(x[i]! - max));
    sum = f32(sum + x[i]!);
  }
  for (let i = 0; i < n; i++) x[i] = x[i]! / sum;
}

// expf, as the C library computes it: the algorithm of ARM's optimized-routines (glibc ≥ 2.28,
// musl, and AssemblyScript's Mathf.exp, which the WebAssembly sampler uses). Math.exp rounded to
// float32 is the correctly rounded e^x, which this expf misses by one ulp about once in a
// thousand calls; to pick the same tokens as the C program the sampler needs the C library's value.
//
//   x·32/ln2 = k + r, |r| ≤ 1/2, k integer;  e^x = 2^(k/32) · 2^(r/32)
//   2^(k/32) = 2^(k>>5) · T[k & 31];  2^(r/32) ≈ 1 + C2·r + C1·r² + C0·r³   (all in float64)
// The float64 operations below are those of the C code, in the same order (no fused multiply-add).

const EXPF_TABLE_BITS = 5;
const EXPF_N = 1 << EXPF_TABLE_BITS;
/** The table's entries, as stored by the C library: bits(2^(i/32)) − (i << 47). */
const EXP2F_TAB = [
  0x3FF0000000000000n, 0x3FEFD9B0D3158574n, 0x3FEFB5586CF9890Fn, 0x3FEF9301D0125B51n,
  0x3FEF72B83C7D517Bn, 0x3FEF54873168B9AAn, 0x3FEF387A6E756238n, 0x3FEF1E9DF51FDEE1n,
  0x3FEF06FE0A31B715n, 0x3FEEF1A7373AA9CBn, 0x3FEEDEA64C123422n, 0x3FEECE086061892Dn,
  0x3FEEBFDAD5362A27n, 0x3FEEB42B569D4F82n, 0x3FEEAB07DD485429n, 0x3FEEA47EB03A5585n,
  0x3FEEA09E667F3BCDn, 0x3FEE9F75E8EC5F74n, 0x3FEEA11473EB0187n, 0x3FEEA589994CCE13n,
  0x3FEEACE5422AA0DBn, 0x3FEEB737B0CDC5E5n, 0x3FEEC49182A3F090n, 0x3FEED503B23E255Dn,
  0x3FEEE89F995AD3ADn, 0x3FEEFF76F2FB5E47n, 0x3FEF199BDD85529Cn, 0x3FEF3720DCEF9069n,
  0x3FEF5818DCFBA487n, 0x3FEF7C97337B9B5Fn, 0x3FEFA4AFA2A490DAn, 0x3FEFD0765B6E4540n,
];
const bitsView = new DataView(new ArrayBuffer(8));
function f64FromBits(bits: bigint): number {
  bitsView.setBigUint64(0, BigInt.asUintN(64, bits));
  return bitsView.getFloat64(0);
}
function f32FromBits(bits: number): number {
  bitsView.setUint32(0, bits);
  return bitsView.getFloat32(0);
}
/** 2^(i/32) exactly as the table encodes it (T[i] + (i << 47)). */
const EXP2_FRACTION = Float64Array.from(EXP2F_TAB, (t, i) => f64FromBits(t + (BigInt(i) << 47n)));
/** 2^m for m = -160 .. 160 (exact: powers of two). */
const POW2_BIAS = 160;
const POW2 = Float64Array.from({ length: 2 * POW2_BIAS + 1 }, (_, i) => 2 ** (i - POW2_BIAS));
const EXPF_SHIFT = f64FromBits(0x4338000000000000n); // 0x1.8p52: adding it rounds to an integer
const EXPF_INV_LN2_N = f64FromBits(0x3FF71547652B82FEn) * EXPF_N;
const EXPF_C0 = f64FromBits(0x3FAC6AF84B912394n) / EXPF_N / EXPF_N / EXPF_N;
const EXPF_C1 = f64FromBits(0x3FCEBFCE50FAC4F3n) / EXPF_N / EXPF_N;
const EXPF_C2 = f64FromBits(0x3FE62E42FF0C52D6n) / EXPF_N;
const EXPF_OVERFLOW = f32FromBits(0x42B17217); //   above: +Infinity
const EXPF_UNDERFLOW = f32FromBits(0xC2CFF1B4); //  below: 0

/** e^x for a float32 x, rounded to float32 as the C library's expf rounds it. */
export function expf(x: number): number {
  if (!(Math.abs(x) < 88)) {
    if (x === -Infinity) return 0;
    if (x !== x || x === Infinity) return x + x;
    if (x > EXPF_OVERFLOW) return Infinity;
    if (x < EXPF_UNDERFLOW) return 0;
  }
  const z = EXPF_INV_LN2_N * x;
  const k = (z + EXPF_SHIFT) - EXPF_SHIFT; // z rounded to an integer (ties to even)
  const r = z - k;
  const s = EXP2_FRACTION[k & (EXPF_N - 1)]! * POW2[(k >> EXPF_TABLE_BITS) + POW2_BIAS]!;
  const c = EXPF_C0 * r + EXPF_C1;
  let y = EXPF_C2 * r + 1;
  y += c * (r * r);
  return f32(y * s);
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
