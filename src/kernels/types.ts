// The kernel layer: the few numeric routines the forward pass spends its time in. Two
// implementations share this interface: plain TypeScript (js.ts, the reference the tests compare
// against and the fallback) and WebAssembly SIMD (wasm.ts, compiled from assembly/). The
// interface is platform-neutral: it takes typed-array views, never Node.js objects, so the same
// code runs in worker_threads and in browser Web Workers.
//
// Every Float32Array passed to a kernel must come from the kernel set's own `allocate` (the WASM
// kernels read them in place from their linear memory, by byte offset). Views are created once,
// when a model is loaded; the per-token path creates none.

/** Shape facts the attention kernel needs. */
export interface AttentionShape {
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headSize: number;
  /** nKvHeads * headSize: the row length of the key/value caches. */
  readonly kvDim: number;
  /** Rows in the key/value caches (the context window). */
  readonly seqLen: number;
}

/** One session's arguments to Kernels.attentionMany (attention's). */
export interface AttentionCall {
  out: Float32Array;
  q: Float32Array;
  keyCache: Float32Array;
  valueCache: Float32Array;
  att: Float32Array;
  pos: number;
}

export interface Kernels {
  readonly name: string;
  /**
   * A zeroed float32 buffer the kernels can operate on, in the kernels' memory number `memory`
   * (default 0; kernels with one memory ignore it — see KernelMemories).
   */
  allocate(floats: number, memory?: number): Float32Array;
  /** xout (d) = W (d, n) · x (n); W row-major, one row per output. */
  matmul(xout: Float32Array, x: Float32Array, w: Float32Array, n: number, d: number): void;
  /**
   * matmul for `count` vectors at once: xout (count, d), row v = W · x[v], x (count, n) — each row
   * of W read once for all of them, and every output bit for bit what matmul gives (sessions that
   * decode together must write what each would write alone).
   */
  matmulMany(xout: Float32Array, x: Float32Array, w: Float32Array, n: number, d: number, count: number): void;
  /**
   * matmulMany for float32 products that share their input (Wq, Wk, Wv; W1 and W3): product i's
   * xout (count, d) = W · x[v] — one call, one hand-off to the worker threads, each output bit for
   * bit matmulMany's (optional: else one matmulMany per product).
   */
  matmulManyGroup?(x: Float32Array, n: number, count: number, products: readonly GroupedProduct[]): void;
  /** o (size) = weight ⊙ x / sqrt(mean(x²) + eps), eps default 1e-5 (llama2.c's). `o` may be `x`. */
  rmsnorm(o: Float32Array, x: Float32Array, weight: Float32Array, size: number, eps?: number): void;
  /** rmsnorm of `rows` rows of `size` values one after another (optional: else a call per row). */
  rmsnormRows?(o: Float32Array, x: Float32Array, weight: Float32Array, rows: number, size: number, eps?: number): void;
  /** rope for `rows` consecutive positions pos, pos+1, …: row r of q (rows, dim) and k (rows, kvDim) (optional). */
  ropeRows?(q: Float32Array, k: Float32Array, pos: number, rows: number, dim: number, kvDim: number, headSize: number, theta?: number): void;
  /** In place: x[0..size) = exp(x - max) / Σ exp(x - max). */
  softmax(x: Float32Array, size: number): void;
  /**
   * RoPE at position `pos`: every adjacent pair (x[i], x[i+1]) of each head in q (dim) and in
   * k (kvDim) is rotated by the angle pos · θ^(-(i mod headSize)/headSize), θ default 10000 (llama2.c's).
   */
  rope(q: Float32Array, k: Float32Array, pos: number, dim: number, kvDim: number, headSize: number, theta?: number): void;
  /**
   * Causal attention for one position: for each query head h (sharing kv head h / (nHeads/nKvHeads)),
   * scores_t = q_h · k_t / √headSize for t ≤ pos, softmax, out_h = Σ_t scores_t v_t.
   * keyCache/valueCache are this layer's caches (seqLen, kvDim); att is scratch (nHeads, seqLen).
   */
  attention(out: Float32Array, q: Float32Array, keyCache: Float32Array, valueCache: Float32Array, att: Float32Array, pos: number, shape: AttentionShape): void;
  /**
   * attention for the first `count` of `calls` (sessions decoding together: each its own query,
   * caches and position) in one call — one hand-off to the worker threads — each result bit for
   * bit attention's (optional: else one attention per session).
   */
  attentionMany?(calls: readonly AttentionCall[], count: number, shape: AttentionShape): void;
  /**
   * attention for a block of `count` consecutive positions pos … pos+count-1 (a prompt fed as a
   * block, its keys and values already in the caches): q and out hold count rows of nHeads ·
   * headSize, and row i attends over cache rows 0..pos+i — what `count` calls of attention at
   * positions pos+i compute: bit for bit when `exact`, else up to float32 rounding (the WebAssembly
   * kernels then use matrix × matrix products, faster for long blocks).
   */
  attentionBlock(out: Float32Array, q: Float32Array, keyCache: Float32Array, valueCache: Float32Array, att: Float32Array, pos: number, count: number, shape: AttentionShape, exact?: boolean): void;
  /** −log softmax(logits)[target] over the first n logits (a token's cross-entropy, in nats). */
  crossEntropy(logits: Float32Array, n: number, target: number): number;
  /** SwiGLU gate, in place: hb = silu(hb) ⊙ hb2, silu(x) = x · σ(x). */
  swiglu(hb: Float32Array, hb2: Float32Array, size: number): void;
  /** Residual connection: x += y. */
  add(x: Float32Array, y: Float32Array, size: number): void;
}

/** A Q8_0 matrix: int8 values and one float32 scale per group (see q8-types.ts). */
export interface QuantizedMatrix {
  readonly q: Int8Array;
  readonly s: Float32Array;
}

/** A weight matrix (out, in), row-major: float32 or Q8_0. */
export type WeightMatrix = Float32Array | QuantizedMatrix;

/**
 * Optional kernel-set capability: several memories. A WebAssembly memory holds at most 4 GiB, so
 * kernels running in one (src/kernels/wasm.ts) spread a larger model over several: each call runs
 * in the memory its arguments live in (all the arguments of one call in one memory), and
 * allocate(n, memory) says where a buffer goes. The loader decides where each layer goes
 * (src/infer/placement.ts); kernels without this capability hold any model in memory 0.
 */
export interface KernelMemories {
  /** The most one memory holds, in bytes. */
  readonly memoryBytes: number;
  /** The memory `view` lives in. */
  memoryOf(view: ArrayBufferView): number;
  /** Bytes memory `index` can still give (all of a fresh one's, less the kernels' own buffers, if not made yet). */
  memoryAvailable(index: number): number;
}

/**
 * Everything one token's forward pass touches (src/infer/forward.ts): the shape, the activation
 * buffers and the weights and caches of its layers, all allocated by the kernel set in one memory.
 * Given to Kernels.fuseForward once, when a model is set up. It may be a range of the model's layers
 * (a model spread over several memories has one per memory): without tokenEmbedding the pass starts
 * from state.x as it is; without rmsFinal and wcls it ends after the last of its layers.
 */
export interface ForwardModel {
  readonly dim: number;
  /** RMSNorm ε and RoPE θ (ModelConfig's normEps, ropeTheta). */
  readonly normEps: number;
  readonly ropeTheta: number;
  readonly hiddenDim: number;
  readonly vocabSize: number;
  readonly shape: AttentionShape;
  /** Q8_0 group size of the matrices and the embedding table, or 0 when they are float32. */
  readonly groupSize: number;
  /** Q8_0: the weights stream from memory rather than sit in the caches (see Q8Kernels.matmulQ8). */
  readonly streamWeights?: boolean;
  readonly state: {
    readonly x: Float32Array; readonly xb: Float32Array; readonly xb2: Float32Array;
    readonly hb: Float32Array; readonly hb2: Float32Array; readonly q: Float32Array;
    readonly att: Float32Array; readonly logits?: Float32Array;
    /** Q8_0 only: the quantized matmul input and its scales. */
    readonly xq?: Int8Array; readonly xs?: Float32Array;
  };
  readonly layers: ReadonlyArray<{
    readonly rmsAtt: Float32Array; readonly wq: WeightMatrix; readonly wk: WeightMatrix; readonly wv: WeightMatrix;
    readonly wo: WeightMatrix; readonly rmsFfn: Float32Array; readonly w1: WeightMatrix; readonly w2: WeightMatrix;
    readonly w3: WeightMatrix; readonly keyCache: Float32Array; readonly valueCache: Float32Array;
  }>;
  readonly tokenEmbedding?: WeightMatrix;
  readonly rmsFinal?: Float32Array;
  readonly wcls?: WeightMatrix;
}

/** One product of a group that shares its input: xout (d) = W (d, n) · input. */
export interface GroupedProduct {
  readonly xout: Float32Array;
  readonly w: WeightMatrix;
  readonly d: number;
}

/** The shared input of a group: float32, or (for Q8_0 weights) as quantized by `quantize`. */
export type GroupedInput =
  | { readonly x: Float32Array }
  | { readonly xq: Int8Array; readonly xs: Float32Array; readonly groupSize: number; readonly streamWeights?: boolean };

/**
 * Optional kernel-set capability: products that share one input (Wq, Wk, Wv of a layer; W1 and W3)
 * prepared once, when a model is set up, to run as ONE hand-off to the worker threads instead of
 * two or three (each hand-off is a synchronisation of every thread). Returns the function that runs
 * them (reading the input buffers as they are at that moment), or undefined when the kernel set
 * prefers separate calls for these products. Results are bit-identical to separate matmul /
 * matmulQ8 calls.
 */
export interface GroupedMatmul {
  groupMatmuls(input: GroupedInput, n: number, products: readonly GroupedProduct[]): (() => void) | undefined;
}

/**
 * Optional kernel-set capability: the whole forward pass of one token (or of a range of layers, see
 * ForwardModel) in one call, computing exactly what forward.ts computes kernel by kernel (same
 * kernels, same order: bit-identical logits, left in model.state.logits; with `logits` false the
 * final norm and classifier are skipped).
 * Returns undefined when the kernel set prefers kernel-by-kernel calls for this model (for instance
 * a model large enough to be split over threads).
 */
export interface FusedForward {
  fuseForward(model: ForwardModel): ((token: number, pos: number, logits: boolean) => void) | undefined;
}

/** Kernels that start helpers (worker threads) on first use, which can be told ahead. */
export interface KernelWarmUp {
  /**
   * A model doing `tokenWork` multiply-adds of matrix × vector per token is being loaded: start now
   * what it will use (the worker threads, tens of milliseconds to come up), while its weights load.
   */
  warmUp(tokenWork: number): void;
}

/** Multiply-adds of one token's matrix × vector products (the weights read per token). */
export function tokenMatmulWork(layers: number, dim: number, kvDim: number, hiddenDim: number, vocabSize: number): number {
  return layers * (2 * dim * dim + 2 * dim * kvDim + 3 * dim * hiddenDim) + dim * vocabSize;
}
