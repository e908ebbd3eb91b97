// The WebGPU backend behind the InferenceEngine interface: what generate, chat, eval, bench, the
// server and the library call, synchronously, while the GPU work runs on the host thread
// (protocol.ts explains the hand-off, host.ts and model.ts the work).
//
// Prompts are fed in batches: advance() and prefill() only record the tokens; the recorded
// positions go to the GPU together — as one matrix × matrix pass per maxBatch tokens — with the
// next forward(), or when maxBatch of them wait. prefill() with a visitor sends them maxBatch at a
// time and reads every token's logits back per batch. The logits are the same as token by token
// (the batch is causal) up to float32 rounding.
//
// For the trainer next: GpuModel's buffers are tensors on the device and wgsl.ts's kernels are
// functions of (step, bindings), so a GPU trainer is the same pattern — the parameters, gradients
// and AdamW moments as buffers laid out by parameterTable (src/model/weights.ts, llm.c's one-buffer
// layout), each layer's backward kernel next to its forward (the products' backward are two more
// products: dinp = doutᵀ W, dW += doutᵀ inp), the whole step recorded in one command buffer and
// only the loss read back — behind the TrainKernels seam (src/kernels/train-types.ts) the way this
// file stands behind InferenceEngine.

import { Worker } from 'node:worker_threads';
import { LlamaError } from '../../errors.js';
import type { InferenceEngine } from '../../infer/engine.js';
import type { Q8Weights } from '../../model/checkpoint.js';
import { openModelSource } from '../../model/open.js';
import type { ModelSource } from '../../model/source.js';
import type { ModelConfig } from '../../model/config.js';
import { kvDim } from '../../model/config.js';
import type { TransformerWeights } from '../../model/weights.js';
import { contextLengthFor } from '../../infer/forward.js';
import { type LoadModelOptions, type WeightAllocator, loadFloat32Weights, loadQ8Weights, loadsAsQ8 } from '../../infer/load.js';
import type { TuningOverrides } from './device.js';
import type { KernelTuning } from './wgsl.js';
import type { GpuMatrixData, GpuWeightsData, Head } from './model.js';
import { DEAD, DONE, ERROR_LEN, type FromHost, type HostInit, STATUS, TOKENS, type ToHost, controlBytes, controlInts } from './protocol.js';

export interface WebGpuOptions {
  /** Kernel tuning overrides (the benchmark's sweep; defaults suit the adapter). */
  readonly tuning?: TuningOverrides;
  /**
   * Node.js only: flags of the `webgpu` package's create() — Dawn toggles such as
   * 'enable-dawn-features=disable_robustness' (the benchmark's sweep).
   */
  readonly dawnFlags?: readonly string[];
}

/** The tokens one command can carry at most (the host's batch size may be smaller). */
const MAX_BATCH_LIMIT = 256;

/** The host thread and the control block shared with it; every engine over this device sends its commands here. */
export class WebGpuDevice {
  private seq = 0;
  private nextId = 1;
  private readonly ctrl: Int32Array;
  private readonly errorBytes: Uint8Array;
  readonly tokens: Int32Array;

  /** Tokens one command carries at most. */
  readonly maxBatch: number;

  /** `tuning`: how the kernels use this adapter (subgroups, workgroup sizes, batch), as chosen for it. */
  private constructor(private readonly worker: Worker, control: SharedArrayBuffer, readonly adapter: string, readonly tuning: KernelTuning) {
    const maxBatch = tuning.maxBatch;
    this.maxBatch = maxBatch;
    this.ctrl = new Int32Array(control, 0, controlInts(maxBatch));
    this.errorBytes = new Uint8Array(control, controlInts(maxBatch) * 4);
    this.tokens = this.ctrl.subarray(TOKENS, TOKENS + maxBatch);
  }

  /** Starts the host thread and waits for its device; a one-line LlamaError when there is none. */
  static async open(options: WebGpuOptions = {}): Promise<WebGpuDevice> {
    if (typeof SharedArrayBuffer === 'undefined') throw new LlamaError('the WebGPU backend needs SharedArrayBuffer (a cross-origin isolated page)');
    // LLAMA2_WEBGPU_TUNING (JSON) lets the device benchmark sweep the kernels' tuning
    const env = typeof process !== 'undefined' ? process.env?.['LLAMA2_WEBGPU_TUNING'] : undefined;
    let fromEnv: TuningOverrides = {};
    try {
      if (env) fromEnv = JSON.parse(env) as TuningOverrides;
    } catch {
      throw new LlamaError(`LLAMA2_WEBGPU_TUNING is not JSON: ${env}`);
    }
    const tuning = { ...fromEnv, ...options.tuning };
    const maxBatch = Math.min(tuning.maxBatch ?? 32, MAX_BATCH_LIMIT);
    const control = new SharedArrayBuffer(controlBytes(maxBatch));
    const init: HostInit = { control, tuning: { ...tuning, maxBatch }, dawnFlags: [...(options.dawnFlags ?? [])] };
    // execArgv []: the host needs no Node.js flags, and some (--input-type, …) would make it fail
    const worker = new Worker(new URL('./host-worker.js', import.meta.url), { workerData: init, execArgv: [] });
    worker.unref();
    const first = await new Promise<FromHost>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`the WebGPU host stopped (exit code ${code})`)));
    }).catch((err: unknown) => ({ type: 'failed' as const, message: err instanceof Error ? err.message : String(err) }));
    worker.removeAllListeners();
    if (first.type === 'failed') {
      await worker.terminate();
      throw new LlamaError(`--backend webgpu: ${first.message}`);
    }
    return new WebGpuDevice(worker, control, first.adapter, first.tuning);
  }

  /** A fresh id for a model or a session. */
  id(): number {
    return this.nextId++;
  }

  /** Sends a command and waits (blocking this thread) for its answer; throws its error. */
  call(m: ToHost): void {
    this.worker.postMessage(m);
    const ctrl = this.ctrl;
    for (;;) {
      const done = Atomics.load(ctrl, DONE);
      if (done === m.seq) break;
      if (Atomics.load(ctrl, DEAD) !== 0) throw new LlamaError('the WebGPU host stopped unexpectedly');
      Atomics.wait(ctrl, DONE, done, 1000);
    }
    if (Atomics.load(ctrl, STATUS) !== 0) {
      const n = Atomics.load(ctrl, ERROR_LEN);
      throw new LlamaError(new TextDecoder().decode(this.errorBytes.slice(0, n)));
    }
  }

  nextSeq(): number {
    return ++this.seq;
  }

  /** Stops the host thread (the device and everything on it go with it). */
  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

/** The per-layer GPU weights of a loaded model (views, not copies; float32 stacks sliced by layer), for a config whose seqLen is the context window. */
function gpuWeights(w: TransformerWeights | Q8Weights, c: ModelConfig): GpuWeightsData {
  const q8 = 'groupSize' in w;
  const layer = (m: Float32Array | readonly { q: Int8Array; s: Float32Array }[], l: number): GpuMatrixData => {
    if (!(m instanceof Float32Array)) return m[l]!;
    const per = m.length / c.nLayers;
    return m.subarray(l * per, (l + 1) * per);
  };
  const norm = (a: Float32Array, l: number) => a.subarray(l * c.dim, (l + 1) * c.dim);
  const emb = w.tokenEmbedding;
  return {
    config: c,
    groupSize: q8 ? w.groupSize : 0,
    tokenEmbedding: emb,
    rmsFinal: w.rmsFinal,
    wcls: w.wcls === w.tokenEmbedding ? emb : w.wcls,
    layers: Array.from({ length: c.nLayers }, (_, l) => ({
      rmsAtt: norm(w.rmsAtt, l), rmsFfn: norm(w.rmsFfn, l),
      wq: layer(w.wq, l), wk: layer(w.wk, l), wv: layer(w.wv, l), wo: layer(w.wo, l),
      w1: layer(w.w1, l), w2: layer(w.w2, l), w3: layer(w.w3, l),
    })),
  };
}

/** A model on the GPU, shared by its sessions. */
class GpuModelHandle {
  constructor(readonly device: WebGpuDevice, readonly id: number, readonly config: ModelConfig, readonly groupSize: number) {}
}

export class WebGpuEngine implements InferenceEngine {
  /** The model's config, seqLen being the context window the KV cache holds. */
  readonly config: ModelConfig;
  readonly backend: string;
  /** Q8_0 group size of the weights on the GPU, 0 for float32. */
  readonly groupSize: number;
  private readonly sessionId: number;
  private readonly logits: Float32Array;
  /** Tokens recorded by advance(), not yet sent: positions pendingPos … pendingPos + pending - 1. */
  private readonly pendingTokens: Int32Array;
  private pending = 0;
  private pendingPos = 0;
  /** Every token's logits of a batch (maxBatch · vocab), and a view per token: made on the first prefill with a visitor. */
  private allLogits: Float32Array[] | undefined;

  private constructor(private readonly model: GpuModelHandle) {
    const device = model.device;
    this.config = model.config;
    this.groupSize = model.groupSize;
    this.backend = `webgpu (${device.adapter})`;
    this.sessionId = device.id();
    this.logits = new Float32Array(new SharedArrayBuffer(this.config.vocabSize * 4));
    this.pendingTokens = new Int32Array(device.maxBatch);
    device.call({ type: 'session', seq: device.nextSeq(), model: model.id, session: this.sessionId, logits: this.logits });
  }

  /**
   * Uploads a model's weights (float32 or Q8_0, as the loaders give them) to the device and opens
   * a session. The weights are only read: memory backed by a SharedArrayBuffer is shared with the
   * host thread, anything else copied once. `contextLength`: the positions a session's KV cache
   * holds (default min(seq_len, 4096), as the CPU engine's).
   */
  static create(device: WebGpuDevice, weights: TransformerWeights | Q8Weights, contextLength?: number): WebGpuEngine {
    const c: ModelConfig = { ...weights.config, seqLen: contextLengthFor(weights.config, contextLength) };
    if (kvDim(c) % 2 !== 0) throw new LlamaError('the WebGPU backend needs an even kv dimension');
    const id = device.id();
    device.call({ type: 'load', seq: device.nextSeq(), model: id, weights: gpuWeights(weights, c) });
    return new WebGpuEngine(new GpuModelHandle(device, id, c, 'groupSize' in weights ? weights.groupSize : 0));
  }

  /** Another session over the same weights on the GPU, with its own KV cache. */
  session(): WebGpuEngine {
    return new WebGpuEngine(this.model);
  }

  forward(token: number, pos: number): Float32Array {
    this.record(token, pos);
    this.send('last');
    return this.logits;
  }

  advance(token: number, pos: number): void {
    this.record(token, pos);
    if (this.pending === this.pendingTokens.length) this.send('none');
  }

  /**
   * A prompt: without `visit`, its tokens join the pending batch as advance() puts them (sent
   * maxBatch at a time as one matrix × matrix pass, the rest with the next command); with it, they
   * go maxBatch at a time with every token's logits computed on the GPU and read back per batch.
   */
  prefill(tokens: ArrayLike<number>, pos: number, visit?: (index: number, logits: Float32Array) => void): void {
    if (visit === undefined) {
      for (let i = 0; i < tokens.length; i++) this.advance(tokens[i]!, pos + i);
      return;
    }
    this.send('none');
    const views = this.allLogits ??= this.registerAllLogits();
    for (let i = 0; i < tokens.length; i += views.length) {
      const n = Math.min(views.length, tokens.length - i);
      for (let j = 0; j < n; j++) this.record(tokens[i + j]!, pos + i + j);
      this.send('all');
      for (let j = 0; j < n; j++) visit(i + j, views[j]!);
    }
  }

  /** Shared memory for a batch's every-token logits, handed to the host once; a view per token. */
  private registerAllLogits(): Float32Array[] {
    const vocab = this.config.vocabSize;
    const batch = this.pendingTokens.length;
    const all = new Float32Array(new SharedArrayBuffer(batch * vocab * 4));
    const device = this.model.device;
    device.call({ type: 'logits-all', seq: device.nextSeq(), session: this.sessionId, logits: all });
    return Array.from({ length: batch }, (_, j) => all.subarray(j * vocab, (j + 1) * vocab));
  }

  shift(keep: number, drop: number, length: number): void {
    const ok = (n: number): boolean => Number.isInteger(n) && n >= 0;
    if (!(ok(keep) && ok(drop) && ok(length) && keep + drop <= length && length <= this.config.seqLen)) {
      throw new RangeError(`cannot shift: keep ${keep} and drop ${drop} of ${length} positions (context window ${this.config.seqLen})`);
    }
    this.send('none');
    const device = this.model.device;
    device.call({ type: 'shift', seq: device.nextSeq(), session: this.sessionId, keep, drop, length });
  }

  /** Frees this session's buffers on the GPU (the engine is unusable afterwards). */
  free(): void {
    const device = this.model.device;
    device.call({ type: 'free', seq: device.nextSeq(), session: this.sessionId });
  }

  /** Appends a token at `pos` to the pending batch (sending the batch first if `pos` does not follow it). */
  private record(token: number, pos: number): void {
    const c = this.config;
    if (!(pos >= 0 && pos < c.seqLen)) throw new RangeError(`position ${pos} is outside the context window (${c.seqLen})`);
    if (!(token >= 0 && token < c.vocabSize)) throw new RangeError(`token ${token} is outside the vocabulary (${c.vocabSize})`);
    if (this.pending > 0 && pos !== this.pendingPos + this.pending) this.send('none');
    if (this.pending === 0) this.pendingPos = pos;
    this.pendingTokens[this.pending++] = token;
  }

  private send(head: Head): void {
    if (this.pending === 0) return;
    const device = this.model.device;
    device.tokens.set(this.pendingTokens.subarray(0, this.pending));
    const count = this.pending;
    this.pending = 0;
    device.call({ type: 'run', seq: device.nextSeq(), session: this.sessionId, count, pos0: this.pendingPos, head });
  }
}

/**
 * Loads a model (a path in any format, or an open ModelSource) onto the GPU, as loadTransformer
 * does onto the CPU kernels: Q8_0 weights for a model stored as Q8_0 (unless options.dequantize)
 * or with options.quantize 'q8', otherwise float32; a KV cache of options.contextLength positions.
 * The weights are read into shared memory, which the host thread uploads from without a copy;
 * nothing keeps them afterwards.
 */
export function loadWebGpuEngine(device: WebGpuDevice, model: string | ModelSource, options: LoadModelOptions = {}): WebGpuEngine {
  const shared: WeightAllocator = {
    allocate: (n) => new Float32Array(new SharedArrayBuffer(n * 4)),
    allocateInt8: (n) => new Int8Array(new SharedArrayBuffer(Math.ceil(n / 4) * 4), 0, n),
  };
  const source = typeof model === 'string' ? openModelSource(model) : model;
  try {
    const weights = loadsAsQ8(source, options)
      ? loadQ8Weights(source, shared, options.groupSize ?? 64, options.chunkFloats)
      : loadFloat32Weights(source, shared, options.chunkFloats);
    return WebGpuEngine.create(device, weights, options.contextLength);
  } finally {
    if (typeof model === 'string') source.close();
  }
}
