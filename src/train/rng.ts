// A small seeded random number generator for training: xoshiro128** (Blackman & Vigna), seeded
// through splitmix32. Its whole state is four uint32 words, so a training checkpoint can save it
// and a resumed run draws exactly the numbers an uninterrupted run would have drawn.
//
// Used for: the order of the training windows (data.ts), dropout masks (layers.ts) and the
// initial weights (init.ts). Not cryptographic, not the same stream as PyTorch's generator.

export type RngState = [number, number, number, number];

export class Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;

  constructor(seed: number) {
    this.seed(seed);
  }

  /** Resets the state from a seed (any integer; only the low 53 bits matter). */
  seed(seed: number): void {
    // splitmix32 over both halves of the seed fills the four words; never all zero.
    let x = (seed >>> 0) ^ Math.floor(seed / 4294967296) * 0x9e3779b1;
    const next = (): number => {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** A uniformly distributed uint32. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** A float in [0, 1) with 24 random bits (exactly representable in float32). */
  nextFloat(): number {
    return (this.nextU32() >>> 8) / 16777216;
  }

  /** An integer in [0, n), n ≤ 2^32, without modulo bias. */
  nextInt(n: number): number {
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const u = this.nextU32();
      if (u < limit) return u % n;
    }
  }

  /** A standard normal sample (Box–Muller; one of the pair is discarded to keep the state simple). */
  nextNormal(): number {
    const u1 = 1 - this.nextFloat(); // (0, 1]: log is finite
    const u2 = this.nextFloat();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  getState(): RngState {
    return [this.s0 >>> 0, this.s1 >>> 0, this.s2 >>> 0, this.s3 >>> 0];
  }

  setState(s: readonly number[]): void {
    if (s.length !== 4 || !s.every((w) => Number.isInteger(w) && w >= 0 && w < 4294967296) || s.every((w) => w === 0)) {
      throw new RangeError(`bad generator state ${JSON.stringify(s)}`);
    }
    this.s0 = s[0]! | 0;
    this.s1 = s[1]! | 0;
    this.s2 = s[2]! | 0;
    this.s3 = s[3]! | 0;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
