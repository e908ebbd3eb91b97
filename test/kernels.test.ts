// The WebAssembly SIMD kernels against the reference TypeScript kernels (src/kernels/js.ts,
// q8-js.ts, train-js.ts) on random data and awkward sizes (not multiples of 4 or 16), and the
// threaded kernels against the single-threaded ones.
//
// Tolerances. A float32 dot product of n terms summed in a different order differs from the
// float64-summed reference by at most about n·2⁻²⁴·Σ|terms|; the tests require
// |wasm − reference| ≤ 1e-5 · Σ|terms| for every product (matmul, attention, the batched training
// products), and 1e-5 relative (+1e-6 absolute) for the elementwise kernels. The int8 kernels and
// everything threaded must match bit for bit.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { jsKernels } from '../src/kernels/js.js';
import { type KernelSet, createKernels, jsKernelSet } from '../src/kernels/kernel-set.js';
import { dequantize, jsQ8Kernels } from '../src/kernels/q8-js.js';
import { ARGS, CHUNK, OP, Op, claimChunks, controlInts, resetCursors } from '../src/kernels/thread-protocol.js';
import { FUSED_MAX_WORK, createThreadedKernels } from '../src/kernels/threads.js';
import { jsTrainKernels } from '../src/kernels/train-js.js';
import type { AttentionShape } from '../src/kernels/types.js';
import { type WasmKernelSet, createWasmKernels, kernelsUseFma, loadKernelModule, relaxedSimdAvailable } from '../src/kernels/wasm.js';
import { quantizeQ80, readCheckpoint } from '../src/model/checkpoint.js';
import {
  type MatmulKernels, type TrainRowKernels, allocateAttentionScratch, attentionBackward, attentionForward, crossEntropyForward,
  crossEntropySoftmaxBackward, jsMatmul, rmsnormBackward, rmsnormForward, swigluBackward, swigluForward,
} from '../src/train/layers.js';
import { serialWasmMatmul, sharedWasmOf, trainRowKernels } from '../src/train/pool.js';
import { adamwStep } from '../src/train/adamw.js';
import { needsRefdata, ref } from './refdata.js';

/** Deterministic uniform numbers in [-1, 1) (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

function fill(a: Float32Array, rand: () => number, scale = 1): Float32Array {
  for (let i = 0; i < a.length; i++) a[i] = rand() * scale;
  return a;
}

/** A kernel-memory copy of `src`. */
function copyInto(k: { allocate(n: number): Float32Array }, src: Float32Array): Float32Array {
  const a = k.allocate(src.length);
  a.set(src);
  return a;
}

/** Asserts |got − want| ≤ rel · bound[i] for every element, naming the worst one. */
function assertWithin(got: Float32Array, want: Float32Array, bound: (i: number) => number, rel: number, what: string): void {
  assert.equal(got.length >= want.length, true);
  let worst = -1, worstRatio = 0;
  for (let i = 0; i < want.length; i++) {
    const ratio = Math.abs(got[i]! - want[i]!) / (rel * bound(i) + 1e-30);
    if (!(ratio <= worstRatio)) { worstRatio = ratio; worst = i; }
  }
  assert.ok(worstRatio <= 1, `${what}: element ${worst} is ${got[worst]}, expected ${want[worst]} (±${rel * bound(worst)})`);
}

function assertClose(got: Float32Array, want: Float32Array, what: string, rel = 1e-5, abs = 1e-6): void {
  assertWithin(got, want, (i) => Math.abs(want[i]!) + abs / rel, rel, what);
}

function assertSame(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    if (!Object.is(got[i], want[i])) assert.fail(`${what}: element ${i} is ${got[i]}, expected exactly ${want[i]}`);
  }
}

let wasm: WasmKernelSet;
let threaded: KernelSet;

before(async () => {
  wasm = await createWasmKernels({ initialBytes: 1 << 20 });
  threaded = await createThreadedKernels({ threads: 3 }); // more threads than cores: exercises chunk claiming
});
after(async () => {
  await threaded.close();
});

// ------------------------------------------------------------------------------------------------

describe('kernel memory', () => {
  test('allocations are zeroed, 16-byte aligned, disjoint, and survive memory growth', () => {
    const a = wasm.allocate(3);
    const b = wasm.allocate(5);
    assert.equal(a.byteOffset % 16, 0);
    assert.equal(b.byteOffset % 16, 0);
    assert.ok(b.byteOffset >= a.byteOffset + 12);
    a.fill(7);
    const big = wasm.allocate(1 << 20); // 4 MiB: more than the 1 MiB reserved, so the memory grows
    assert.ok(big.every((v) => v === 0));
    assert.deepEqual([...a], [7, 7, 7]); // the earlier view still sees the same bytes
    wasm.add(a, a, 3);
    assert.deepEqual([...a], [14, 14, 14]);
    const q = wasm.allocateInt8(17);
    assert.equal(q.byteOffset % 16, 0);
  });

  test('an array that is not in the kernels\' memory is refused', () => {
    const x = wasm.allocate(4);
    assert.throws(() => wasm.add(x, new Float32Array(4), 4), /not in the kernels' memory/);
    assert.throws(() => wasm.matmul(x, x, x, 4, 4), /matmul w: 4 elements, 16 needed/);
  });

  test('idle worker threads do not keep the process alive', () => {
    const url = new URL('../src/kernels/threads.js', import.meta.url).href;
    const script = `const { createThreadedKernels } = await import(${JSON.stringify(url)});
      const k = await createThreadedKernels({ threads: 2 });
      const w = k.allocate(256 * 256), x = k.allocate(256), o = k.allocate(256);
      w.fill(1); x.fill(2); k.matmul(o, x, w, 256, 256);
      console.log(o[255]);`; // no close()
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, `exit status ${r.status} (signal ${r.signal}); ${r.stderr}`);
    assert.equal(r.stdout.trim(), '512');
  });

  test('chunk claiming: home ranges first, then the others\' leftovers, each chunk exactly once, never a stale command', () => {
    // a fake kernel set that records which rows each matmul chunk covered
    const ran: number[] = [];
    const fake = { matmulRows: (_o: number, _x: number, _w: number, _n: number, r0: number, r1: number) => { for (let r = r0; r < r1; r++) ran.push(r); } };
    const k = [fake] as unknown as Parameters<typeof claimChunks>[0]; // the instance of memory 0 (MEM is 0)
    const threads = 3, chunks = 10, rows = 10;
    const ctrl = new Int32Array(controlInts(threads));
    ctrl[OP] = Op.matmul; ctrl[CHUNK] = 1; ctrl[ARGS + 4] = rows;
    resetCursors(ctrl, 7, threads);
    // participant 1 alone (the others never come): its home range 3..5 first, then 6..9, then 0..2
    assert.equal(claimChunks(k, ctrl, 7, chunks, 1, threads), true);
    assert.deepEqual(ran, [3, 4, 5, 6, 7, 8, 9, 0, 1, 2]);
    // a participant arriving late for command 7 finds nothing left; one still on command 6 runs nothing
    ran.length = 0;
    claimChunks(k, ctrl, 7, chunks, 0, threads);
    claimChunks(k, ctrl, 6, chunks, 2, threads);
    assert.deepEqual(ran, []);
    // fewer chunks than participants: empty home ranges are fine
    resetCursors(ctrl, 8, threads);
    claimChunks(k, ctrl, 8, 2, 2, threads);
    assert.deepEqual(ran, [1, 0]);
  });

  test('worker threads start with the first command split between threads, not before', { skip: process.platform !== 'linux' && 'counts threads in /proc' }, async () => {
    const threadsNow = (): number => Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
    const k = await createThreadedKernels({ threads: 3 });
    try {
      const before = threadsNow();
      const small = k.allocate(64 * 64), x = k.allocate(256), o = k.allocate(256);
      k.matmul(o, x, small, 64, 64); // below the split size: the calling thread alone
      assert.equal(threadsNow(), before, 'no worker yet');
      const big = k.allocate(256 * 256);
      big.fill(1); x.fill(2);
      k.matmul(o, x, big, 256, 256); // split: starts the two workers (and still computes right)
      assert.ok(threadsNow() >= before + 2, `${threadsNow() - before} new threads`);
      assert.equal(o[255], 512);
    } finally {
      await k.close();
    }
  });

  test('warmUp starts the workers ahead for a model too large to run fused, and not for a small one', { skip: process.platform !== 'linux' && 'counts threads in /proc' }, async () => {
    const threadsNow = (): number => Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
    const k = await createThreadedKernels({ threads: 3 });
    try {
      const before = threadsNow();
      k.warmUp!(FUSED_MAX_WORK - 1); // stories260K-sized: fused on the calling thread
      assert.equal(threadsNow(), before, 'no worker for a model that runs fused');
      k.warmUp!(FUSED_MAX_WORK);
      assert.ok(threadsNow() >= before + 2, `${threadsNow() - before} new threads`);
      k.warmUp!(FUSED_MAX_WORK); // once
      assert.equal(threadsNow(), before + 2);
    } finally {
      await k.close();
    }
  });

  test('createKernels picks the implementation asked for', async () => {
    assert.equal((await createKernels({ kind: 'js' })).name, 'js');
    const k = await createKernels({ kind: 'wasm', threads: 1 });
    assert.equal(k.name, 'wasm');
    assert.equal(jsKernelSet.threads, 1);
  });
});

// ------------------------------------------------------------------------------------------------

describe('fp32 inference kernels: wasm vs reference', () => {
  const rand = rng(1);

  for (const [n, d] of [[1, 1], [3, 5], [17, 9], [64, 64], [172, 64], [288, 300], [771, 13]] as const) {
    test(`matmul ${d}×${n}`, () => {
      const w = fill(new Float32Array(n * d), rand), x = fill(new Float32Array(n), rand);
      const want = new Float32Array(d);
      jsKernels.matmul(want, x, w, n, d);
      const bound = (i: number): number => { let s = 0; for (let j = 0; j < n; j++) s += Math.abs(w[i * n + j]! * x[j]!); return s; };
      for (const k of [wasm, threaded]) {
        const out = k.allocate(d);
        k.matmul(out, copyInto(k, x), copyInto(k, w), n, d);
        assertWithin(out, want, bound, 1e-5, `${k.name} matmul`);
      }
    });
  }

  test('matmul split over threads equals the single-threaded result exactly', () => {
    const n = 290, d = 1001; // large enough to be split, odd row count
    const w = fill(new Float32Array(n * d), rand), x = fill(new Float32Array(n), rand);
    const one = wasm.allocate(d), many = threaded.allocate(d);
    wasm.matmul(one, copyInto(wasm, x), copyInto(wasm, w), n, d);
    threaded.matmul(many, copyInto(threaded, x), copyInto(threaded, w), n, d);
    assertSame(many, one, 'threaded matmul');
  });

  for (const [n, d, count] of [[64, 64, 3], [288, 300, 4], [771, 130, 5], [19, 40, 2], [290, 517, 8], [33, 1029, 6]] as const) {
    test(`matmulMany: ${count} vectors through ${d}×${n} = matmul for each, bit for bit (wasm, threads)`, () => {
      const w = fill(new Float32Array(n * d), rand), x = fill(new Float32Array(count * n), rand);
      for (const k of [wasm, threaded]) {
        const kw = copyInto(k, w), kx = copyInto(k, x), out = k.allocate(count * d), one = k.allocate(d), xv = k.allocate(n);
        k.matmulMany(out, kx, kw, n, d, count);
        for (let v = 0; v < count; v++) {
          xv.set(kx.subarray(v * n, (v + 1) * n));
          k.matmul(one, xv, kw, n, d);
          assertSame(out.subarray(v * d, (v + 1) * d), one, `${k.name} vector ${v}`);
        }
      }
    });
  }

  test('matmulManyGroup: products sharing their input (split and not) = matmulMany for each, bit for bit (wasm, threads)', () => {
    const n = 288, count = 4;
    const x = fill(new Float32Array(count * n), rand);
    const ds = [[288, 96, 96], [768, 768], [40, 1000, 7]]; // (96 and 40 rows: below the threads' split)
    for (const k of [wasm, threaded]) {
      const kx = copyInto(k, x);
      for (const group of ds) {
        const products = group.map((d) => ({ xout: k.allocate(count * d), w: copyInto(k, fill(new Float32Array(n * d), rand)), d }));
        k.matmulManyGroup!(kx, n, count, products);
        for (const p of products) {
          const one = k.allocate(count * p.d);
          k.matmulMany(one, kx, p.w, n, p.d, count);
          assertSame(p.xout, one, `${k.name} group ${group.join('/')} product of ${p.d}`);
        }
      }
    }
  });

  for (const size of [1, 7, 64, 289]) {
    test(`rmsnorm, softmax, swiglu, add over ${size}`, () => {
      const x = fill(new Float32Array(size), rand, 3), wt = fill(new Float32Array(size), rand), y = fill(new Float32Array(size), rand);
      const want = new Float32Array(size);
      jsKernels.rmsnorm(want, x, wt, size);
      const o = wasm.allocate(size);
      wasm.rmsnorm(o, copyInto(wasm, x), copyInto(wasm, wt), size);
      assertClose(o, want, 'rmsnorm');
      const inPlace = copyInto(wasm, x); // o may be x
      wasm.rmsnorm(inPlace, inPlace, copyInto(wasm, wt), size);
      assertClose(inPlace, want, 'rmsnorm in place');
      // another ε (Hugging Face models carry rms_norm_eps, e.g. 1e-6): tiny inputs make it matter
      const tiny = x.map((v) => v * 1e-3);
      const want6 = new Float32Array(size), want5 = new Float32Array(size);
      jsKernels.rmsnorm(want6, tiny, wt, size, 1e-6);
      jsKernels.rmsnorm(want5, tiny, wt, size);
      const o6 = wasm.allocate(size);
      wasm.rmsnorm(o6, copyInto(wasm, tiny), copyInto(wasm, wt), size, 1e-6);
      assertClose(o6, want6, 'rmsnorm eps 1e-6');
      assert.ok(Math.abs(want6[0]! - want5[0]!) > 1e-3 * Math.abs(want6[0]!), 'ε changes the result');

      const s = Float32Array.from(x);
      jsKernels.softmax(s, size);
      const ws = copyInto(wasm, x);
      wasm.softmax(ws, size);
      assertClose(ws, s, 'softmax');

      const h = Float32Array.from(x);
      jsKernels.swiglu(h, y, size);
      const wh = copyInto(wasm, x);
      wasm.swiglu(wh, copyInto(wasm, y), size);
      assertClose(wh, h, 'swiglu');

      const a = Float32Array.from(x);
      jsKernels.add(a, y, size);
      const wa = copyInto(wasm, x);
      wasm.add(wa, copyInto(wasm, y), size);
      assertSame(wa, a, 'add'); // one float32 addition per element: exact
    });
  }

  for (const [dim, kvDim, headSize, pos] of [[288, 288, 48, 0], [288, 96, 48, 255], [64, 32, 8, 17], [12, 6, 6, 1000]] as const) {
    test(`rope dim ${dim} kvDim ${kvDim} head ${headSize} at ${pos}`, () => {
      const q = fill(new Float32Array(dim), rand), k = fill(new Float32Array(kvDim), rand);
      const wq = copyInto(wasm, q), wk = copyInto(wasm, k);
      jsKernels.rope(q, k, pos, dim, kvDim, headSize);
      wasm.rope(wq, wk, pos, dim, kvDim, headSize);
      assertClose(wq, q, 'rope q', 1e-5, 1e-6);
      assertClose(wk, k, 'rope k', 1e-5, 1e-6);
      // θ = 500000 (Llama 3's base): table path and direct path alike
      const q2 = fill(new Float32Array(dim), rand), k2 = fill(new Float32Array(kvDim), rand);
      const wq2 = copyInto(wasm, q2), wk2 = copyInto(wasm, k2);
      jsKernels.rope(q2, k2, pos, dim, kvDim, headSize, 500000);
      wasm.rope(wq2, wk2, pos, dim, kvDim, headSize, 500000);
      assertClose(wq2, q2, 'rope q θ 500000', 1e-5, 1e-6);
      assertClose(wk2, k2, 'rope k θ 500000', 1e-5, 1e-6);
    });
  }

  // (a block's rows: position 60 + 10 rows grows the RoPE table past its first 64 rows; head 7 has no table)
  for (const [dim, kvDim, headSize, pos, rows] of [[288, 96, 48, 60, 10], [64, 32, 8, 0, 3], [14, 7, 7, 5, 4]] as const) {
    test(`rmsnormRows / ropeRows: ${rows} rows of dim ${dim}, head ${headSize}, from position ${pos} — bit for bit a call per row`, () => {
      const k = wasm;
      const x = copyInto(k, fill(new Float32Array(rows * dim), rand)), w = copyInto(k, fill(new Float32Array(dim), rand));
      const out = k.allocate(rows * dim), want = k.allocate(rows * dim);
      k.rmsnormRows!(out, x, w, rows, dim, 1e-6);
      for (let r = 0; r < rows; r++) k.rmsnorm(want.subarray(r * dim, (r + 1) * dim), x.subarray(r * dim, (r + 1) * dim), w, dim, 1e-6);
      assertSame(out, want, 'rmsnormRows');
      const q = fill(new Float32Array(rows * dim), rand), kk = fill(new Float32Array(rows * kvDim), rand);
      const q1 = copyInto(k, q), k1 = copyInto(k, kk), q2 = copyInto(k, q), k2 = copyInto(k, kk);
      k.ropeRows!(q1, k1, pos, rows, dim, kvDim, headSize, 10000);
      for (let r = 0; r < rows; r++) k.rope(q2.subarray(r * dim, (r + 1) * dim), k2.subarray(r * kvDim, (r + 1) * kvDim), pos + r, dim, kvDim, headSize, 10000);
      assertSame(q1, q2, 'ropeRows q');
      assertSame(k1, k2, 'ropeRows k');
    });
  }

  const shapes: [string, AttentionShape, number][] = [
    ['15M-like (6 heads of 48)', { nHeads: 6, nKvHeads: 6, headSize: 48, kvDim: 288, seqLen: 40 }, 39],
    ['grouped-query (8 heads, 4 kv, size 8)', { nHeads: 8, nKvHeads: 4, headSize: 8, kvDim: 32, seqLen: 20 }, 7],
    ['odd head size 7, first position', { nHeads: 3, nKvHeads: 1, headSize: 7, kvDim: 7, seqLen: 5 }, 0],
    ['long context, split over threads', { nHeads: 12, nKvHeads: 4, headSize: 20, kvDim: 80, seqLen: 600 }, 599],
  ];
  for (const [name, s, pos] of shapes) {
    test(`attention ${name}`, () => {
      const q = fill(new Float32Array(s.nHeads * s.headSize), rand);
      const kc = fill(new Float32Array(s.seqLen * s.kvDim), rand), vc = fill(new Float32Array(s.seqLen * s.kvDim), rand);
      const want = new Float32Array(s.nHeads * s.headSize);
      const att = new Float32Array(s.nHeads * s.seqLen);
      jsKernels.attention(want, q, kc, vc, att, pos, s);
      let single: Float32Array | undefined;
      for (const k of [wasm, threaded]) {
        const out = k.allocate(want.length);
        const katt = k.allocate(att.length);
        k.attention(out, copyInto(k, q), copyInto(k, kc), copyInto(k, vc), katt, pos, s);
        // Σ_t att_t·|v_t| ≤ max|v| = 1: the output error bound of a convex combination
        assertWithin(out, want, () => 1, 1e-5, `${k.name} attention`);
        for (let h = 0; h < s.nHeads; h++) {
          assertClose(katt.subarray(h * s.seqLen, h * s.seqLen + pos + 1), att.subarray(h * s.seqLen, h * s.seqLen + pos + 1), `${k.name} attention weights, head ${h}`);
        }
        if (single === undefined) single = out;
        else assertSame(out, single, 'threaded attention');
      }
    });
  }

  test('attentionMany: sessions at different positions in one call = attention for each, bit for bit (threads)', () => {
    const s: AttentionShape = { nHeads: 6, nKvHeads: 3, headSize: 48, kvDim: 144, seqLen: 300 };
    for (const positions of [[299, 17, 150], [0, 1], [5, 40, 80, 120, 160, 200, 240, 299, 3, 9, 11]]) {
      const calls = positions.map((pos) => ({
        out: threaded.allocate(s.nHeads * s.headSize), q: copyInto(threaded, fill(new Float32Array(s.nHeads * s.headSize), rand)),
        keyCache: copyInto(threaded, fill(new Float32Array(s.seqLen * s.kvDim), rand)),
        valueCache: copyInto(threaded, fill(new Float32Array(s.seqLen * s.kvDim), rand)), att: threaded.allocate(s.nHeads * s.seqLen), pos,
      }));
      threaded.attentionMany!(calls, calls.length, s);
      for (const [i, c] of calls.entries()) {
        const one = wasm.allocate(c.out.length);
        wasm.attention(one, copyInto(wasm, c.q), copyInto(wasm, c.keyCache), copyInto(wasm, c.valueCache), wasm.allocate(c.att.length), c.pos, s);
        assertSame(c.out, one, `session ${i} of ${calls.length} at position ${c.pos}`);
      }
    }
  });
});

// ------------------------------------------------------------------------------------------------

describe('int8 (Q8_0) kernels', () => {
  const rand = rng(2);

  test('activation quantization is the weight quantization of checkpoint.ts on whole groups', () => {
    const x = fill(new Float32Array(256), rand, 5);
    const want = quantizeQ80(x, 64);
    const xq = new Int8Array(256), xs = new Float32Array(4);
    jsQ8Kernels.quantize(xq, xs, x, 256, 64);
    assertSame(xq, want.q, 'q');
    assertSame(xs, want.s, 'scales');
  });

  for (const [n, d, gs] of [[172, 64, 64], [64, 172, 64], [288, 300, 32], [512, 37, 64], [96, 7, 32], [100, 9, 16], [33, 5, 64], [1000, 3, 48]] as const) {
    test(`matmulQ8 ${d}×${n}, group ${gs}: wasm and threads bit-identical to the reference (weights read as cached and as streamed), which equals the dequantized product`, () => {
      const w = fill(new Float32Array(n * d), rand);
      const x = fill(new Float32Array(n), rand, 4);
      if (n > gs) x.fill(0, Math.floor((n - 1) / gs) * gs); // an all-zero group: scale 0, values 0
      const { q: wq, s: ws } = quantizeQ80(padTo(w, gs), gs); // the v2 layout: groups over the flattened tensor
      const groups = Math.ceil(n / gs);

      const xq = new Int8Array(n), xs = new Float32Array(groups), want = new Float32Array(d);
      jsQ8Kernels.quantize(xq, xs, x, n, gs);
      jsQ8Kernels.matmulQ8(want, xq, xs, wq, ws, n, d, gs);

      // exact arithmetic would give Σ_j deq(W)[r, j] · deq(x)[j]; only float rounding may differ
      const dw = new Float32Array(n * d), dx = new Float32Array(n);
      dequantize(dw, wq, ws, 0, n * d, gs);
      dequantize(dx, xq, xs, 0, n, gs);
      const exact = new Float32Array(d);
      jsKernels.matmul(exact, dx, dw, n, d);
      const bound = (i: number): number => { let s = 0; for (let j = 0; j < n; j++) s += Math.abs(dw[i * n + j]! * dx[j]!); return s; };
      assertWithin(want, exact, bound, 1e-5, 'reference int8 vs dequantized float');

      for (const k of [wasm, threaded]) {
        const kxq = k.allocateInt8(n), kxs = k.allocate(groups), out = k.allocate(d);
        const kwq = k.allocateInt8(wq.length), kws = copyInto(k, ws);
        kwq.set(wq);
        k.quantize(kxq, kxs, copyInto(k, x), n, gs);
        assertSame(kxq, xq, `${k.name} quantized x`);
        assertSame(kxs, xs, `${k.name} x scales`);
        for (const streamed of [false, true]) {
          out.fill(NaN);
          k.matmulQ8(out, kxq, kxs, kwq, kws, n, d, gs, streamed);
          assertSame(out, want, `${k.name} matmulQ8${streamed ? ', streamed' : ''}`);
        }
      }
    });
  }

  // (fewer than 16 rows take gemm-q8.ts's in-place kernel, 16 or more its packed one: tiles of
  // 4 rows × 8 channels, blocks of 16 KiB of packed W — 32 channels at group 256 — and rows in
  // blocks that fit the scratch — 196 at group 64; the cases cut tiles and blocks short.
  // 172 × 64 and group 48 go row by row)
  for (const [M, n, d, gs] of [[9, 288, 70, 32], [4, 768, 130, 32], [13, 256, 33, 64], [1, 64, 8, 16], [6, 172, 64, 64], [5, 96, 10, 48],
    [16, 256, 70, 32], [37, 512, 131, 64], [64, 512, 520, 64], [230, 128, 43, 64], [21, 1024, 75, 256], [17, 64, 29, 8]] as const) {
    test(`matmulQ8Forward ${M} rows × (${d}×${n}), group ${gs}: wasm and threads bit-identical to ${M} calls of matmulQ8`, () => {
      const w = fill(new Float32Array(n * d), rand);
      const { q: wq, s: ws } = quantizeQ80(padTo(w, gs), gs);
      const groups = Math.ceil(n / gs);
      const xq = new Int8Array(M * n), xs = new Float32Array(M * groups), want = new Float32Array(M * d);
      for (let m = 0; m < M; m++) {
        const x = fill(new Float32Array(n), rand, 3);
        jsQ8Kernels.quantize(xq.subarray(m * n), xs.subarray(m * groups), x, n, gs);
        jsQ8Kernels.matmulQ8(want.subarray(m * d), xq.subarray(m * n), xs.subarray(m * groups), wq, ws, n, d, gs);
      }
      const js = new Float32Array(M * d);
      jsQ8Kernels.matmulQ8Forward(js, xq, xs, wq, ws, M, n, d, gs);
      assertSame(js, want, 'reference matmulQ8Forward');
      for (const k of [wasm, threaded]) {
        const kxq = k.allocateInt8(M * n), kwq = k.allocateInt8(wq.length), out = k.allocate(M * d);
        kxq.set(xq);
        kwq.set(wq);
        out.fill(NaN);
        k.matmulQ8Forward(out, kxq, copyInto(k, xs), kwq, copyInto(k, ws), M, n, d, gs);
        assertSame(out, want, `${k.name} matmulQ8Forward`);
      }
    });
  }

  test('stories260K.v2.bin: int8 w2 (hidden 172, group 64) against its dequantized weights', needsRefdata, () => {
    const ckpt = readCheckpoint(ref('data', 'models', 'stories260K.v2.bin'));
    assert.equal(ckpt.format, 'v2');
    if (ckpt.format !== 'v2') return;
    const { config: c, groupSize: gs } = ckpt.q8;
    const n = c.hiddenDim, d = c.dim;
    assert.equal(n % gs === 0, false, 'this test is about rows that straddle groups');
    const w2 = ckpt.q8.w2[1]!;
    const x = fill(new Float32Array(n), rand, 2);
    const kxq = wasm.allocateInt8(n), kxs = wasm.allocate(Math.ceil(n / gs)), out = wasm.allocate(d);
    const kwq = wasm.allocateInt8(w2.q.length), kws = copyInto(wasm, w2.s);
    kwq.set(w2.q);
    wasm.quantize(kxq, kxs, copyInto(wasm, x), n, gs);
    wasm.matmulQ8(out, kxq, kxs, kwq, kws, n, d, gs);
    const dw = new Float32Array(n * d);
    dequantize(dw, w2.q, w2.s, 0, n * d, gs);
    const want = new Float32Array(d);
    jsKernels.matmul(want, x, dw, n, d); // float activations: the error is the activation quantization's
    let worst = 0, norm = 0;
    for (let i = 0; i < d; i++) { worst = Math.max(worst, Math.abs(out[i]! - want[i]!)); norm = Math.max(norm, Math.abs(want[i]!)); }
    assert.ok(worst <= 0.02 * norm, `int8 product off by ${worst} (largest output ${norm})`);
  });
});

/** w, zero-padded to a whole number of groups (quantizeQ80 insists on whole groups). */
function padTo(w: Float32Array, gs: number): Float32Array {
  if (w.length % gs === 0) return w;
  const p = new Float32Array(Math.ceil(w.length / gs) * gs);
  p.set(w);
  return p;
}

// ------------------------------------------------------------------------------------------------

describe('batched training products: wasm vs reference', () => {
  const rand = rng(3);

  // (gemm packs K in slices of 224 and columns in blocks of 128: the last cases cross both; dW's
  // A is read by columns, copied a tile at a time: [300, 40, 70] has K = 300 there)
  for (const [BT, C, OC] of [[1, 1, 1], [7, 13, 9], [10, 64, 33], [33, 17, 70], [64, 288, 96], [5, 100, 130], [9, 300, 141], [130, 520, 20], [300, 40, 70]] as const) {
    test(`matmulForward / matmulBackward BT ${BT}, C ${C}, OC ${OC}`, () => {
      const inp = fill(new Float32Array(BT * C), rand), w = fill(new Float32Array(OC * C), rand);
      const dout = fill(new Float32Array(BT * OC), rand);
      const dinp0 = fill(new Float32Array(BT * C), rand), dw0 = fill(new Float32Array(OC * C), rand); // += onto these

      const out = new Float32Array(BT * OC);
      jsTrainKernels.matmulForward(out, inp, w, BT, C, OC);
      const dinp = Float32Array.from(dinp0), dw = Float32Array.from(dw0);
      jsTrainKernels.matmulBackward(dinp, dw, dout, inp, w, BT, C, OC);

      const outBound = (i: number): number => {
        const b = Math.floor(i / OC), o = i % OC;
        let s = 0; for (let c = 0; c < C; c++) s += Math.abs(inp[b * C + c]! * w[o * C + c]!);
        return s;
      };
      const dinpBound = (i: number): number => {
        const b = Math.floor(i / C), c = i % C;
        let s = Math.abs(dinp0[i]!); for (let o = 0; o < OC; o++) s += Math.abs(dout[b * OC + o]! * w[o * C + c]!);
        return s;
      };
      const dwBound = (i: number): number => {
        const o = Math.floor(i / C), c = i % C;
        let s = Math.abs(dw0[i]!); for (let b = 0; b < BT; b++) s += Math.abs(dout[b * OC + o]! * inp[b * C + c]!);
        return s;
      };

      const results: Float32Array[][] = [];
      for (const k of [wasm, threaded]) {
        const kout = k.allocate(BT * OC), kdinp = copyInto(k, dinp0), kdw = copyInto(k, dw0);
        const kinp = copyInto(k, inp), kw = copyInto(k, w);
        k.matmulForward(kout, kinp, kw, BT, C, OC);
        k.matmulBackward(kdinp, kdw, copyInto(k, dout), kinp, kw, BT, C, OC);
        assertWithin(kout, out, outBound, 1e-5, `${k.name} matmulForward`);
        assertWithin(kdinp, dinp, dinpBound, 1e-5, `${k.name} matmulBackward dinp`);
        assertWithin(kdw, dw, dwBound, 1e-5, `${k.name} matmulBackward dw`);
        results.push([kout, kdinp, kdw]);
      }
      assertSame(results[1]![0]!, results[0]![0]!, 'threaded matmulForward');
      assertSame(results[1]![1]!, results[0]![1]!, 'threaded dinp');
      assertSame(results[1]![2]!, results[0]![2]!, 'threaded dw');
    });
  }
});

describe('several products of one input in one call (matmulForwardMany: batched prefill)', () => {
  const rand = rng(5);
  // column chunks run across the products' boundaries (OC not multiples of 8 included); the last
  // case is small enough to run on the calling thread
  for (const [BT, C, OCs] of [[64, 288, [288, 96, 96]], [130, 40, [13, 70, 29]], [256, 64, [172, 172]], [3, 5, [2, 7]]] as const) {
    test(`BT ${BT}, C ${C}, OC ${OCs.join(' + ')}: bit for bit one matmulForward per product (3 threads)`, () => {
      const inp = copyInto(threaded, fill(new Float32Array(BT * C), rand));
      const products = OCs.map((OC) => ({ out: threaded.allocate(BT * OC), w: copyInto(threaded, fill(new Float32Array(OC * C), rand)), OC }));
      threaded.matmulForwardMany!(inp, BT, C, products);
      for (const [i, p] of products.entries()) {
        const want = threaded.allocate(BT * p.OC);
        threaded.matmulForward(want, inp, p.w, BT, C, p.OC);
        assertSame(p.out, want, `product ${i}`);
      }
    });
  }
});

describe('cross-entropy and SwiGLU split over threads', () => {
  const rand = rng(9);
  test('crossEntropy of 32,000 logits: one thread and three within 1e-6 of the float64 reference; SwiGLU of 100,000 values bit for bit', () => {
    const n = 32000;
    const logits = fill(new Float32Array(n), rand, 8);
    for (const target of [0, 12345, n - 1]) {
      const want = jsKernels.crossEntropy(logits, n, target);
      for (const k of [wasm, threaded]) {
        const got = k.crossEntropy(copyInto(k, logits), n, target);
        assert.ok(Math.abs(got - want) < 1e-6, `${k.name}: ${got} vs ${want}`);
      }
    }
    const size = 100_003;
    const a = fill(new Float32Array(size), rand, 6), b = fill(new Float32Array(size), rand);
    const one = copyInto(wasm, a), many = copyInto(threaded, a);
    wasm.swiglu(one, copyInto(wasm, b), size);
    threaded.swiglu(many, copyInto(threaded, b), size);
    assertSame(many, one, 'threaded swiglu');
  });
  test('the same in a second memory (each call runs on the instance of its arrays\' memory)', async () => {
    const two = await createThreadedKernels({ threads: 3, memoryBytes: 1 << 20 });
    try {
      const n = 32000;
      const logits = fill(new Float32Array(n), rand, 8);
      const inSecond = two.allocate(n, 1);
      inSecond.set(logits);
      const got = two.crossEntropy(inSecond, n, 777), want = jsKernels.crossEntropy(logits, n, 777);
      assert.ok(Math.abs(got - want) < 1e-6, `memory 1: ${got} vs ${want}`);
      const size = 50_000;
      const a = fill(new Float32Array(size), rand, 6), b = fill(new Float32Array(size), rand);
      const one = copyInto(wasm, a);
      wasm.swiglu(one, copyInto(wasm, b), size);
      const ha = two.allocate(size, 1), hb = two.allocate(size, 1);
      ha.set(a); hb.set(b);
      two.swiglu(ha, hb, size);
      assertSame(ha, one, 'threaded swiglu in memory 1');
    } finally {
      await two.close();
    }
  });
});

// ------------------------------------------------------------------------------------------------

/**
 * Causal attention and its gradients straight from the formulas (layers.ts's header), in float64,
 * one (batch row, head) and one value at a time — no products, tiles or offsets shared with
 * layers.ts.
 */
function naiveAttention(q: Float32Array, k: Float32Array, v: Float32Array, dout: Float32Array,
  d: { B: number; T: number; nHeads: number; nKvHeads: number; hs: number }) {
  const { B, T, nHeads, nKvHeads, hs } = d;
  const C = nHeads * hs, kvd = nKvHeads * hs, scale = 1 / Math.sqrt(hs);
  const att: Float32Array[] = [];
  const out = new Float32Array(B * T * C), dq = new Float64Array(B * T * C);
  const dk = new Float64Array(B * T * kvd), dv = new Float64Array(B * T * kvd);
  const qi = (b: number, t: number, h: number, i: number): number => (b * T + t) * C + h * hs + i;
  const ki = (b: number, t: number, g: number, i: number): number => (b * T + t) * kvd + g * hs + i;
  for (let b = 0; b < B; b++) for (let h = 0; h < nHeads; h++) {
    const g = Math.floor(h / (nHeads / nKvHeads));
    const P = new Float64Array(T * T);
    for (let t = 0; t < T; t++) {
      let max = -Infinity;
      for (let u = 0; u <= t; u++) {
        let s = 0;
        for (let i = 0; i < hs; i++) s += q[qi(b, t, h, i)]! * k[ki(b, u, g, i)]!;
        P[t * T + u] = s * scale;
        max = Math.max(max, s * scale);
      }
      let sum = 0;
      for (let u = 0; u <= t; u++) sum += (P[t * T + u] = Math.exp(P[t * T + u]! - max));
      for (let u = 0; u <= t; u++) P[t * T + u]! /= sum;
      for (let i = 0; i < hs; i++) {
        let o = 0;
        for (let u = 0; u <= t; u++) o += P[t * T + u]! * v[ki(b, u, g, i)]!;
        out[qi(b, t, h, i)] = o;
      }
      // backward of row t: dP, dS, then its terms of dQ, dK, dV
      const dP = new Float64Array(t + 1);
      let dot = 0;
      for (let u = 0; u <= t; u++) {
        for (let i = 0; i < hs; i++) dP[u] += dout[qi(b, t, h, i)]! * v[ki(b, u, g, i)]!;
        dot += P[t * T + u]! * dP[u]!;
      }
      for (let u = 0; u <= t; u++) {
        const dS = P[t * T + u]! * (dP[u]! - dot) * scale;
        for (let i = 0; i < hs; i++) {
          dq[qi(b, t, h, i)] += dS * k[ki(b, u, g, i)]!;
          dk[ki(b, u, g, i)] += dS * q[qi(b, t, h, i)]!;
          dv[ki(b, u, g, i)] += P[t * T + u]! * dout[qi(b, t, h, i)]!;
        }
      }
    }
    att.push(Float32Array.from(P));
  }
  return { att, out, dq: Float32Array.from(dq), dk: Float32Array.from(dk), dv: Float32Array.from(dv) };
}

describe('training row kernels (assembly/train.ts, float32) vs the float64 loops of src/train/layers.ts', () => {
  const rand = rng(21);
  const rows = (): TrainRowKernels => trainRowKernels(wasm.exports);
  const mmWith = (r: TrainRowKernels | undefined): MatmulKernels => ({ ...jsMatmul, ...(r ? { rows: r } : {}) });

  test('causal softmax and its backward of one head (T = 37): within 1e-5 of the reference; 0 above the diagonal', () => {
    const T = 37, hs = 8, scale = 1 / Math.sqrt(hs);
    const dims = { B: 1, T, nHeads: 1, nKvHeads: 1, hs };
    const q = copyInto(wasm, fill(new Float32Array(T * hs), rand, 3)), kk = copyInto(wasm, fill(new Float32Array(T * hs), rand, 3));
    const v = copyInto(wasm, fill(new Float32Array(T * hs), rand)), dout = copyInto(wasm, fill(new Float32Array(T * hs), rand));
    const run = (r: TrainRowKernels | undefined) => {
      const mm = mmWith(r);
      const sc = allocateAttentionScratch(T, (n) => wasm.allocate(n));
      const att = [wasm.allocate(T * T)], out = wasm.allocate(T * hs);
      attentionForward(mm, out, att, q, kk, v, dims, sc);
      const dq = wasm.allocate(T * hs), dk = wasm.allocate(T * hs), dv = wasm.allocate(T * hs);
      attentionBackward(mm, dq, dk, dv, dout, att, q, kk, v, dims, sc);
      return { att: att[0]!, out, dq, dk, dv };
    };
    const want = run(undefined), got = run(rows());
    // (the gradients subtract a row's dot product: relative to the largest value, not to each one)
    const largest = (a: Float32Array): number => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    for (const key of ['att', 'out', 'dq', 'dk', 'dv'] as const) assertWithin(got[key], want[key], () => largest(want[key]), 1e-5, `attention ${key}`);
    for (let t = 0; t < T; t++) for (let u = t + 1; u < T; u++) assert.equal(got.att[t * T + u], 0);
  });

  test('attention on the heads in place and causal tiles (TypeScript, and WebAssembly gemm and row kernels; two parts): within 1e-5 of the formulas written out in float64 over five shapes; 0 above the diagonal', () => {
    const wasmMm = serialWasmMatmul(wasm.exports, sharedWasmOf(wasm)!, 0);
    const largest = (a: Float32Array): number => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    // T below, at and across the tiles of 64 and the products' slices of 224 terms; GQA; odd head sizes
    for (const [B, T, nHeads, nKvHeads, hs] of [[2, 100, 4, 2, 8], [1, 256, 2, 2, 16], [1, 64, 3, 1, 5], [1, 300, 2, 1, 12], [1, 7, 2, 2, 8]] as const) {
      const dims = { B, T, nHeads, nKvHeads, hs };
      const C = nHeads * hs, kvd = nKvHeads * hs;
      const q = copyInto(wasm, fill(new Float32Array(B * T * C), rand, 3)), kk = copyInto(wasm, fill(new Float32Array(B * T * kvd), rand, 3));
      const v = copyInto(wasm, fill(new Float32Array(B * T * kvd), rand)), dout = copyInto(wasm, fill(new Float32Array(B * T * C), rand));
      const run = (mm: MatmulKernels) => {
        const sc = allocateAttentionScratch(T, (n) => wasm.allocate(n));
        const att = Array.from({ length: B * nHeads }, () => fill(wasm.allocate(T * T), rand)); // stale values: all overwritten
        const out = wasm.allocate(B * T * C);
        const dq = wasm.allocate(B * T * C), dk = wasm.allocate(B * T * kvd), dv = wasm.allocate(B * T * kvd);
        // two parts, as two training threads split the (batch row, kv head) pairs
        const pairs = B * nKvHeads, half = Math.floor(pairs / 2);
        for (const [p0, p1] of [[0, half], [half, pairs]]) attentionForward(mm, out, att, q, kk, v, dims, sc, undefined, p0, p1);
        for (const [p0, p1] of [[0, half], [half, pairs]]) attentionBackward(mm, dq, dk, dv, dout, att, q, kk, v, dims, sc, undefined, p0, p1);
        return { att, out, dq, dk, dv };
      };
      const want = naiveAttention(q, kk, v, dout, dims);
      for (const [name, mm] of [['js', jsMatmul], ['wasm', wasmMm]] as const) {
        const got = run(mm);
        const what = `${name}: B ${B}, T ${T}, ${nHeads}/${nKvHeads} heads of ${hs}`;
        got.att.forEach((a, i) => {
          assertWithin(a, want.att[i]!, () => 1, 1e-5, `${what}: att ${i}`);
          for (let t = 0; t < T; t++) for (let u = t + 1; u < T; u++) assert.equal(a[t * T + u], 0, `${what}: att ${i} above the diagonal`);
        });
        for (const key of ['out', 'dq', 'dk', 'dv'] as const) assertWithin(got[key], want[key], () => largest(want[key]), 1e-5, `${what}: ${key}`);
      }
    }
  });

  test('SwiGLU forward and backward over 1,001 values (a part from 3): within 1e-5 of the reference', () => {
    const n = 1001;
    const a = copyInto(wasm, fill(new Float32Array(n), rand, 8)), b = copyInto(wasm, fill(new Float32Array(n), rand, 2));
    const dout = copyInto(wasm, fill(new Float32Array(n), rand));
    const start = fill(new Float32Array(n), rand);
    const run = (r: TrainRowKernels | undefined) => {
      const mm = mmWith(r);
      const out = wasm.allocate(n), da = copyInto(wasm, start), db = copyInto(wasm, start);
      swigluForward(out, a, b, n, 3, mm);
      swigluBackward(da, db, dout, a, b, n, 3, mm);
      return { out, da, db };
    };
    const want = run(undefined), got = run(rows());
    for (const key of ['out', 'da', 'db'] as const) assertClose(got[key], want[key], `swiglu ${key}`, 1e-5, 1e-7);
    assert.equal(got.out[2], 0, 'before the part: untouched');
  });

  test('AdamW in float32 (torch\'s arithmetic) over a slice, with a clipping factor, three steps: within 1e-5 of the float64 reference', () => {
    const n = 1003, from = 2, to = 1001;
    const hyper = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
    const p0 = fill(new Float32Array(n), rand, 0.1);
    const grads = [fill(new Float32Array(n), rand), fill(new Float32Array(n), rand, 1e-3), fill(new Float32Array(n), rand, 10)];
    const run = (r: TrainRowKernels | undefined) => {
      const p = copyInto(wasm, p0), g = wasm.allocate(n), m = wasm.allocate(n), v = wasm.allocate(n);
      grads.forEach((gs, step) => {
        g.set(gs);
        if (r !== undefined) r.adamw(p, g, m, v, 1e-3, hyper.weightDecay, hyper, step + 1, from, to, step === 2 ? 0.25 : 1);
        else adamwStep(p, g, m, v, 1e-3, hyper.weightDecay, hyper, step + 1, from, to, step === 2 ? 0.25 : 1);
      });
      return { p, m, v };
    };
    const want = run(undefined), got = run(rows());
    // (float32 roundings of values that cross zero: relative to each array's largest value)
    const largest = (a: Float32Array): number => a.reduce((x, y) => Math.max(x, Math.abs(y)), 0);
    for (const key of ['p', 'm', 'v'] as const) assertWithin(got[key], want[key], () => largest(want[key]), 1e-5, `adamw ${key}`);
    assert.equal(got.p[0], p0[0], 'outside the slice: untouched');
    assert.equal(got.p[1002], p0[1002]);
  });

  test('RMSNorm forward (with the saved 1/rms) and backward (accumulating), 5 rows of 290: within 1e-5', () => {
    const BT = 5, C = 290;
    const x = copyInto(wasm, fill(new Float32Array(BT * C), rand, 3)), w = copyInto(wasm, fill(new Float32Array(C), rand));
    const dout = copyInto(wasm, fill(new Float32Array(BT * C), rand)), start = fill(new Float32Array(BT * C), rand);
    const run = (r: TrainRowKernels | undefined) => {
      const mm = mmWith(r);
      const out = wasm.allocate(BT * C), rstd = wasm.allocate(BT), dx = copyInto(wasm, start), dw = copyInto(wasm, start.subarray(0, C));
      rmsnormForward(out, rstd, x, w, BT, C, mm);
      rmsnormBackward(dx, dw, dout, x, w, rstd, BT, C, mm);
      return { out, rstd, dx, dw };
    };
    const want = run(undefined), got = run(rows());
    const largest = (a: Float32Array): number => a.reduce((m, y) => Math.max(m, Math.abs(y)), 0);
    for (const key of ['out', 'rstd', 'dx', 'dw'] as const) assertWithin(got[key], want[key], () => largest(want[key]), 1e-5, `rmsnorm ${key}`);
  });

  test('cross-entropy forward (argmax, ties to the first) and backward, an ignored row included: within 1e-5', () => {
    const BT = 3, V = 1003;
    const logits = fill(new Float32Array(BT * V), rand, 6);
    logits[V + 500] = logits[V + 700] = 40; // a tie for the largest in row 1
    const targets = Int32Array.from([5, 700, -1]);
    const run = (r: TrainRowKernels | undefined) => {
      const mm = mmWith(r);
      const probs = copyInto(wasm, logits), result = new Float64Array(2);
      crossEntropyForward(probs, targets, BT, V, result, 0, 0, BT, mm);
      const loss = result[0]!, count = result[1]!;
      crossEntropySoftmaxBackward(probs, probs, targets, 1, count, BT, V, 0, BT, mm);
      return { loss, count, probs };
    };
    const want = run(undefined), got = run(rows());
    assert.equal(got.count, 2);
    assert.ok(Math.abs(got.loss - want.loss) <= 1e-5 * Math.abs(want.loss), `loss ${got.loss} vs ${want.loss}`);
    assertClose(got.probs, want.probs, 'dlogits', 1e-5, 1e-9);
  });
});

describe('the two builds: kernels.wasm and kernels-fma.wasm (relaxed SIMD)', () => {
  const dir = new URL('../src/kernels/', import.meta.url);
  const rand = rng(21);

  test('fused multiply-adds change only the matrix × matrix product and the exponentials beside it: every one-token kernel bit for bit, the products within 1e-5 of the reference in both', async (t) => {
    await loadKernelModule(); // turns relaxed SIMD on where the engine has it behind a flag
    if (kernelsUseFma() !== true) {
      t.skip('relaxed SIMD is not available here (or LLAMA2TS_FMA=0): only kernels.wasm runs');
      return;
    }
    const plain = await createWasmKernels({ module: readFileSync(new URL('kernels.wasm', dir)), initialBytes: 1 << 20 });
    const fma = await createWasmKernels({ module: readFileSync(new URL('kernels-fma.wasm', dir)), initialBytes: 1 << 20 });
    const sets = [plain, fma] as const;
    const both = (f: (k: WasmKernelSet) => Float32Array, what: string): void => assertSame(f(fma), f(plain), `kernels-fma.wasm ${what}`);

    // one token: matmul (both kernels: small and rows), several vectors, int8, attention, norms
    for (const [n, d] of [[64, 64], [288, 300], [771, 13]] as const) {
      const x = fill(new Float32Array(n * 3), rand), w = fill(new Float32Array(n * d), rand);
      both((k) => { const o = k.allocate(d); k.matmul(o, copyInto(k, x.subarray(0, n)), copyInto(k, w), n, d); return o; }, `matmul ${d}×${n}`);
      both((k) => { const o = k.allocate(3 * d); k.matmulMany(o, copyInto(k, x), copyInto(k, w), n, d, 3); return o; }, `matmulMany ${d}×${n}`);
    }
    const n = 256, d = 96, gs = 32;
    const { q: wq, s: ws } = quantizeQ80(fill(new Float32Array(n * d), rand), gs);
    const x = fill(new Float32Array(n), rand);
    both((k) => {
      const kxq = k.allocateInt8(n), kxs = k.allocate(n / gs), kwq = k.allocateInt8(wq.length), o = k.allocate(d);
      kwq.set(wq);
      k.quantize(kxq, kxs, copyInto(k, x), n, gs);
      k.matmulQ8(o, kxq, kxs, kwq, copyInto(k, ws), n, d, gs);
      return o;
    }, 'matmulQ8');
    const s: AttentionShape = { nHeads: 6, nKvHeads: 6, headSize: 48, kvDim: 288, seqLen: 64 };
    const q = fill(new Float32Array(288), rand), kc = fill(new Float32Array(64 * 288), rand), vc = fill(new Float32Array(64 * 288), rand);
    both((k) => { const o = k.allocate(288); k.attention(o, copyInto(k, q), copyInto(k, kc), copyInto(k, vc), k.allocate(6 * 64), 40, s); return o; }, 'attention');
    both((k) => { const o = k.allocate(288); k.rmsnorm(o, copyInto(k, q), copyInto(k, kc.subarray(0, 288)), 288); return o; }, 'rmsnorm');
    both((k) => { const o = copyInto(k, q); k.softmax(o, 288); return o; }, 'softmax');
    both((k) => { const o = copyInto(k, q); k.swiglu(o, copyInto(k, kc.subarray(0, 288)), 288); return o; }, 'swiglu');
    // stories260K's heads of 8 (their own score and value loops)
    const s8: AttentionShape = { nHeads: 8, nKvHeads: 4, headSize: 8, kvDim: 32, seqLen: 64 };
    both((k) => {
      const o = k.allocate(64);
      k.attention(o, copyInto(k, q.subarray(0, 64)), copyInto(k, kc.subarray(0, 64 * 32)), copyInto(k, vc.subarray(0, 64 * 32)), k.allocate(8 * 64), 45, s8);
      return o;
    }, 'attention, heads of 8');

    // the exponentials beside the products (exp.ts's exp2Neg4, fused in kernels-fma.wasm):
    // evaluation's cross-entropy in both builds within 1e-6 of the float64 reference, over a row
    // of 32,000 and one of 512
    for (const V of [32000, 512]) {
      const logits = fill(new Float32Array(V), rand, 8);
      const want = jsKernels.crossEntropy(logits, V, 7);
      for (const [i, k] of sets.entries()) {
        const got = k.crossEntropy(copyInto(k, logits), V, 7);
        assert.ok(Math.abs(got - want) <= 1e-6 * Math.max(1, Math.abs(want)), `${i === 0 ? 'kernels.wasm' : 'kernels-fma.wasm'} crossEntropy over ${V}: ${got} against ${want}`);
      }
    }

    // the products of training, batched prefill and evaluation: each build within 1e-5 of the
    // float64 reference (as the tests above check for the default one)
    const [BT, C, OC] = [130, 520, 20];
    const inp = fill(new Float32Array(BT * C), rand), w = fill(new Float32Array(OC * C), rand);
    const want = new Float32Array(BT * OC);
    jsTrainKernels.matmulForward(want, inp, w, BT, C, OC);
    const bound = (i: number): number => {
      const b = Math.floor(i / OC), o = i % OC;
      let sum = 0; for (let c = 0; c < C; c++) sum += Math.abs(inp[b * C + c]! * w[o * C + c]!);
      return sum;
    };
    for (const [i, k] of sets.entries()) {
      const out = k.allocate(BT * OC);
      k.matmulForward(out, copyInto(k, inp), copyInto(k, w), BT, C, OC);
      assertWithin(out, want, bound, 1e-5, `${i === 0 ? 'kernels.wasm' : 'kernels-fma.wasm'} matmulForward`);
    }
  });

  test('LLAMA2TS_FMA=0 keeps kernels.wasm', async () => {
    const url = new URL('../src/kernels/wasm.js', import.meta.url).href;
    const script = `const m = await import(${JSON.stringify(url)}); await m.loadKernelModule(); console.log(String(m.kernelsUseFma()));`;
    const run = (env: Record<string, string>): string =>
      spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' }).stdout.trim();
    assert.equal(run({ LLAMA2TS_FMA: '0' }), 'false');
    assert.equal(run({ LLAMA2TS_FMA: '1' }), String(await relaxedSimdAvailable()));
  });
});
