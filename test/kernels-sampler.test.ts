// The WebAssembly sampler (assembly/sampler.ts) against the TypeScript sampler (src/infer/sampler.ts,
// the reference): the same tokens and the same probabilities, bit for bit, over distributions that
// exercise every path (flat and peaked nucleus, radix and insertion sort, ties, multinomial,
// expf's special range). And expf against the C library's expf.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sampler, expf } from '../src/infer/sampler.js';
import { createWasmKernels, loadKernelModule, wasmSupported } from '../src/kernels/wasm.js';

const skip = { skip: !wasmSupported() && 'no WebAssembly SIMD' };

/** Deterministic uniform numbers in [0, 1) (a 32-bit LCG). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

test('expf equals glibc 2.36 expf where Math.exp rounded to float32 does not', () => {
  // [bits(x), bits(expf(x))] printed by a C program calling glibc's expf; in each case
  // Math.fround(Math.exp(x)) is one ulp away.
  const cases: Array<[number, number]> = [
    [0xc211c117, 0x252c7a3b], [0xc186f812, 0x334a43ff], [0xc1f09627, 0x29c3d19c], [0xc0f916e5, 0x39da462d],
    [0xc169fe78, 0x34ef0aed], [0xc0b78793, 0x3b53acfa], [0xbf6d4950, 0x3ecaa384], [0xc1cb2612, 0x2d24d350],
  ];
  const bits = new Uint32Array(2);
  const f = new Float32Array(bits.buffer);
  for (const [x, y] of cases) {
    bits[0] = x; bits[1] = y;
    assert.equal(expf(f[0]!), f[1]!, `expf(${f[0]})`);
    assert.notEqual(Math.fround(Math.exp(f[0]!)), f[1]!);
  }
  assert.equal(expf(0), 1);
  assert.equal(expf(-Infinity), 0);
  assert.equal(expf(-200), 0);
  assert.equal(expf(100), Infinity);
  assert.ok(Number.isNaN(expf(NaN)));
  // everywhere else within one float32 ulp of e^x
  const rand = lcg(3);
  for (let i = 0; i < 20000; i++) {
    const x = Math.fround(-80 * rand()); // normal results (subnormal ones have fewer bits)
    const exact = Math.exp(x);
    assert.ok(Math.abs(expf(x) - exact) <= Math.abs(exact) * 2 ** -23, `expf(${x})`);
  }
});

test('WebAssembly sampler = TypeScript sampler, bit for bit (tokens and probabilities)', skip, async () => {
  await loadKernelModule();
  const rand = lcg(11);
  const shapes: Array<{ vocab: number; temperature: number; topp: number; make: (i: number) => number }> = [
    { vocab: 512, temperature: 1, topp: 0.9, make: () => 6 * rand() - 3 }, // peaked: few candidates (insertion sort)
    { vocab: 512, temperature: 1, topp: 0.9, make: () => 0.5 * rand() }, // flat, few hundred candidates: small digits, 3 passes
    { vocab: 32000, temperature: 1, topp: 0.9, make: () => 0.1 * rand() }, // near flat: radix sort of ~all
    { vocab: 32000, temperature: 1, topp: 0.9, make: () => 1.2 * rand() }, // an untrained model's: keys span 2^24, two passes
    { vocab: 32000, temperature: 1, topp: 0.99, make: () => -14 * rand() }, // candidates over 10 binades: three passes
    { vocab: 4096, temperature: 0.7, topp: 0.95, make: (i) => (i % 7 === 0 ? 2 : 0) + Math.round(3 * rand()) / 4 }, // many ties
    { vocab: 513, temperature: 1.3, topp: 0, make: () => 4 * rand() }, // multinomial, odd length
    { vocab: 300, temperature: 1, topp: 1, make: () => 4 * rand() },
    { vocab: 1000, temperature: 1, topp: 0.5, make: (i) => (i === 17 ? 150 : -150 * rand()) }, // expf's special range
    { vocab: 5, temperature: 1, topp: 0.01, make: () => 0 }, // flat, empty nucleus: argmax
  ];
  for (const { vocab, temperature, topp, make } of shapes) {
    const js = new Sampler(vocab, { seed: 5, temperature, topp, implementation: 'js' });
    const wasm = new Sampler(vocab, { seed: 5, temperature, topp, implementation: 'wasm' });
    assert.equal(wasm.implementation, 'wasm');
    const a = new Float32Array(vocab);
    const b = new Float32Array(vocab);
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < vocab; i++) a[i] = b[i] = Math.fround(make(i));
      const ta = js.sample(a);
      const tb = wasm.sample(b);
      assert.equal(tb, ta, `vocab ${vocab}, topp ${topp}, round ${round}`);
      assert.deepEqual(b, a, `probabilities, vocab ${vocab}, topp ${topp}, round ${round}`);
    }
  }
});

test('logits in the kernels\' memory are sampled in place: same tokens and probabilities as a plain array', skip, async () => {
  const kernels = await createWasmKernels();
  const rand = lcg(21);
  const inKernels = kernels.allocate(32000);
  const plain = new Float32Array(32000);
  const a = new Sampler(32000, { seed: 3 });
  const b = new Sampler(32000, { seed: 3 });
  for (let round = 0; round < 10; round++) {
    for (let i = 0; i < plain.length; i++) inKernels[i] = plain[i] = Math.fround(2 * rand());
    assert.equal(a.sample(inKernels), b.sample(plain), `round ${round}`);
    assert.deepEqual(inKernels, plain, `probabilities, round ${round}`);
  }
});

test('a Sampler over a longer logits buffer samples from the first vocabSize values only', skip, async () => {
  await loadKernelModule();
  const logits = new Float32Array(64).fill(50); // beyond the vocabulary: would dominate
  for (let i = 0; i < 10; i++) logits[i] = i;
  const copy = logits.slice();
  const js = new Sampler(10, { seed: 9, implementation: 'js' }).sample(logits);
  const wasm = new Sampler(10, { seed: 9, implementation: 'wasm' }).sample(copy);
  assert.ok(js < 10);
  assert.equal(wasm, js);
  assert.deepEqual(copy, logits);
});

test('a temperature whose logits / T overflow float32 samples the argmax (both implementations), drawing one coin', async () => {
  if (wasmSupported()) await loadKernelModule();
  const rand = lcg(31);
  const cases: Array<{ vocab: number; temperature: number; make: () => number }> = [
    { vocab: 512, temperature: 1e-38, make: () => 20 * rand() - 10 },
    { vocab: 32000, temperature: 3e-39, make: () => 20 * rand() - 10 }, // subnormal temperature
    { vocab: 32000, temperature: 1.4e-45, make: () => 2 * rand() }, // the smallest float32
    { vocab: 513, temperature: 1e-39, make: () => -1 - 5 * rand() }, // every quotient −∞
    { vocab: 300, temperature: 0.5, make: () => 3e38 * rand() }, // huge logits
  ];
  for (const { vocab, temperature, make } of cases) {
    for (const topp of [0, 0.9, 1]) {
      for (const implementation of wasmSupported() ? ['js', 'wasm'] as const : ['js'] as const) {
        const sampler = new Sampler(vocab, { seed: 7, temperature, topp, implementation });
        const reference = new Sampler(vocab, { seed: 7, temperature: 1, implementation: 'js' });
        for (let round = 0; round < 3; round++) {
          const logits = Float32Array.from({ length: vocab }, make);
          let best = 0;
          for (let i = 1; i < vocab; i++) if (logits[i]! > logits[best]!) best = i;
          assert.equal(sampler.sample(logits), best, `${implementation}: T ${temperature}, top-p ${topp}, round ${round}`);
          reference.rng.nextF32();
          assert.equal(sampler.rng.state, reference.rng.state, 'one coin per token, as at any temperature');
        }
      }
    }
  }
});

test('top-p and temperature edge values: the same token from both implementations, NaN and negative refused', async () => {
  if (wasmSupported()) await loadKernelModule();
  const implementations = wasmSupported() ? ['js', 'wasm'] as const : ['js'] as const;
  for (const vocab of [1, 2, 7, 512]) {
    const logits = Float32Array.from({ length: vocab }, (_, i) => Math.sin(i * 7.3) * 3);
    let best = 0;
    for (let i = 1; i < vocab; i++) if (logits[i]! > logits[best]!) best = i;
    for (const topp of [1e-45, 1e-38, 0.5, 0.99999999, 1 - 1e-7, -0, -1, 2]) {
      for (const temperature of [1e-30, 0.7, 5]) {
        const tokens = implementations.map((implementation) => new Sampler(vocab, { seed: 3, temperature, topp, implementation }).sample(logits.slice()));
        assert.ok(tokens.every((t) => t === tokens[0] && t >= 0 && t < vocab), `vocab ${vocab}, top-p ${topp}, T ${temperature}: ${tokens}`);
        // a nucleus this small, or a temperature this low, holds the most likely token alone
        if (topp === 1e-45 || topp === 1e-38 || temperature === 1e-30) assert.equal(tokens[0], best, `vocab ${vocab}, top-p ${topp}, T ${temperature}`);
      }
    }
  }
  for (const bad of [{ temperature: NaN }, { temperature: -0.5 }, { topp: NaN }]) {
    assert.throws(() => new Sampler(10, bad), /must be a number/, JSON.stringify(bad));
  }
});

test('greedy in the kernels\' memory (SIMD) = the TypeScript argmax: ties go to the first, NaN skipped, a leading NaN gives 0', skip, async () => {
  const k = await createWasmKernels();
  const cases: number[][] = [
    [1, 3, 2, 3], [-5, -5, -5], [0, -0, 0], [-0, 0], [NaN, 5, 6], [1, NaN, 7, 7, NaN], [-Infinity, -Infinity, -3], [Infinity, 1, Infinity],
  ];
  let s = 11;
  for (const n of [1, 3, 4, 5, 31, 512, 32000]) {
    const v: number[] = [];
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      v.push(Math.round(((s >>> 8) / 16777216) * 40) / 4); // many ties
    }
    cases.push(v);
  }
  for (const values of cases) {
    const n = values.length;
    const inKernels = k.allocate(n);
    inKernels.set(values);
    const greedy = new Sampler(n, { temperature: 0 });
    const reference = new Sampler(n, { temperature: 0, implementation: 'js' });
    assert.equal(greedy.sample(inKernels), reference.sample(Float32Array.from(values)), `[${values.slice(0, 8).join(', ')}${n > 8 ? ', …' : ''}] (${n} values)`);
  }
});
