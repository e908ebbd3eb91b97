// A model on the GPU: its weights uploaded once (GpuModel), and any number of sessions over them,
// each with its own activations and KV cache (GpuSession) — what runs where the device lives (a
// worker thread in Node.js, a Web Worker in a browser; see host.ts).
//
// Buffers. Weights: one buffer per tensor and layer, with the products that share an input
// concatenated — [Wq; Wk; Wv] and [W1; W3] — so that each is one kernel; Q8_0 matrices as their
// int8 values packed four to a u32 and their float32 scales. A RoPE table (seqLen, headSize/2) of
// (cos, sin). Per session, with B = maxBatch:
//   x (B, dim)  xn (B, dim)  q (B, dim)  ao (B, dim)  hb (B, hidden)  att (B, nHeads, seqLen)
//   keyCache[l], valueCache[l] (seqLen, kvDim)  xf (dim)  logits (vocab)
//   every token's logits (a prompt's, for evaluation), made on first use: xf (B, dim), logits (B, vocab)
//   Q8_0: xq (B, max(dim, hidden) / 4) u32, xs (B, groups) — the quantized input of the next product
//   step (pos0, count), tokens (B): written before each command
//
// A command is one batch of consecutive positions: one command buffer with every layer's kernels
// in order, ending (when its logits are wanted) with the final norm, the classifier and a copy of
// the logits into a mappable buffer, which is read back once. The command buffer of a decode step
// (one token, logits wanted) is the same every time — only `step` and `tokens` change — so the next
// one is recorded while the GPU runs the current one.

/// <reference types="@webgpu/types" />

import type { ModelConfig } from '../../model/config.js';
import { headSize, kvDim, normEps, ropeTheta } from '../../model/config.js';
import {
  type Binding, type KernelShape, type KernelSource, attentionKernel, classifierKernel, embedKernel, gateUpKernel, grid,
  productGroups, qkvKernel, quantizeKernel, residualKernel, rmsnormKernel, shiftKeysKernel,
} from './wgsl.js';
import { type GpuContext, MAP_READ, Usage } from './device.js';

/** A float32 matrix, or Q8_0 values and scales. */
export type GpuMatrixData = Float32Array | { readonly q: Int8Array; readonly s: Float32Array };

/** What a model needs on the GPU, per layer: the matrices (out, in) row-major, the norms. */
export interface GpuWeightsData {
  readonly config: ModelConfig;
  /** Q8_0 group size of the matrices and the embedding, or 0 for float32. */
  readonly groupSize: number;
  readonly tokenEmbedding: GpuMatrixData;
  readonly rmsFinal: Float32Array;
  /** The classifier: the token embedding itself when shared (the same object: uploaded once). */
  readonly wcls: GpuMatrixData;
  readonly layers: ReadonlyArray<{
    readonly rmsAtt: Float32Array; readonly rmsFfn: Float32Array;
    readonly wq: GpuMatrixData; readonly wk: GpuMatrixData; readonly wv: GpuMatrixData; readonly wo: GpuMatrixData;
    readonly w1: GpuMatrixData; readonly w2: GpuMatrixData; readonly w3: GpuMatrixData;
  }>;
}

/** A matrix (or concatenation) on the GPU: float32 values, or Q8_0 words and scales. */
type GpuMatrix = { readonly w: GPUBuffer } | { readonly q: GPUBuffer; readonly s: GPUBuffer };

/** GPUShaderStage.COMPUTE. */
const COMPUTE = 0x4;

interface Pipeline {
  readonly pipeline: GPUComputePipeline;
  readonly bindGroupLayout: GPUBindGroupLayout;
  readonly source: KernelSource;
}

/** Uploads from shared memory are copied through this much ordinary memory at a time. */
const STAGING_BYTES = 16 << 20;

/** Rounds a byte size up to a multiple of 4 (WebGPU copies and bindings need it). */
const align4 = (n: number) => Math.ceil(n / 4) * 4;

export class GpuModel {
  readonly config: ModelConfig;
  readonly shape: KernelShape;
  readonly device: GPUDevice;
  readonly tuning: GpuContext['tuning'];
  readonly groupSize: number;
  /** Staging memory for uploads from shared memory. */
  private staging: Uint8Array | undefined;
  /** Every buffer of the model, to destroy. */
  private readonly owned: GPUBuffer[] = [];
  readonly rope: GPUBuffer;
  readonly embedding: GpuMatrix;
  readonly rmsFinal: GPUBuffer;
  readonly classifier: GpuMatrix;
  readonly layers: ReadonlyArray<{
    readonly rmsAtt: GPUBuffer; readonly rmsFfn: GPUBuffer;
    readonly qkv: GpuMatrix; readonly wo: GpuMatrix; readonly gateUp: GpuMatrix; readonly w2: GpuMatrix;
  }>;
  readonly pipelines: {
    readonly embed: Pipeline; readonly rmsnorm: Pipeline; readonly rmsnormFinal: Pipeline;
    readonly qkv: Pipeline; readonly attention: Pipeline; readonly wo: Pipeline; readonly gateUp: Pipeline; readonly w2: Pipeline;
    readonly classifier: Pipeline; readonly classifierAll: Pipeline; readonly shiftKeys: Pipeline;
    /** Q8_0: quantizing a (B, dim) input, a (B, hidden) one, and the final norm's row. */
    readonly quantizeDim?: Pipeline; readonly quantizeHidden?: Pipeline; readonly quantizeFinal?: Pipeline;
  };

  constructor(ctx: GpuContext, weights: GpuWeightsData) {
    const c = weights.config;
    this.config = c;
    this.device = ctx.device;
    this.tuning = ctx.tuning;
    this.groupSize = weights.groupSize;
    const gs = weights.groupSize;
    if (c.dim % 4 !== 0 || c.hiddenDim % 4 !== 0) {
      throw new Error(`the WebGPU backend needs dim and hidden_dim to be multiples of 4 (this model: ${c.dim}, ${c.hiddenDim})`);
    }
    if (gs > 0 && gs % 4 !== 0) throw new Error(`the WebGPU backend needs a Q8_0 group size that is a multiple of 4, not ${gs}`);
    this.shape = {
      dim: c.dim, hiddenDim: c.hiddenDim, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headSize: headSize(c), kvDim: kvDim(c),
      vocabSize: c.vocabSize, seqLen: c.seqLen, normEps: normEps(c), groupSize: gs,
    };

    this.rope = this.upload([ropeTable(c)], Usage.STORAGE);
    const uploaded = new Map<GpuMatrixData, GpuMatrix>();
    this.embedding = this.matrices([weights.tokenEmbedding]);
    uploaded.set(weights.tokenEmbedding, this.embedding);
    this.classifier = uploaded.get(weights.wcls) ?? this.matrices([weights.wcls]);
    this.rmsFinal = this.upload([weights.rmsFinal], Usage.STORAGE);
    this.layers = weights.layers.map((l) => ({
      rmsAtt: this.upload([l.rmsAtt], Usage.STORAGE),
      rmsFfn: this.upload([l.rmsFfn], Usage.STORAGE),
      qkv: this.matrices([l.wq, l.wk, l.wv]),
      wo: this.matrices([l.wo]),
      gateUp: this.matrices([l.w1, l.w3]),
      w2: this.matrices([l.w2]),
    }));

    const s = this.shape;
    const t = ctx.tuning;
    const make = (source: KernelSource): Pipeline => {
      const module = this.device.createShaderModule({ label: source.label, code: source.code });
      // an explicit layout: binding 0 the step uniform, then the kernel's storage bindings (used or not)
      const bindGroupLayout = this.device.createBindGroupLayout({
        label: source.label,
        entries: [
          { binding: 0, visibility: COMPUTE, buffer: { type: 'uniform' } },
          ...source.bindings.map((b, i): GPUBindGroupLayoutEntry => ({
            binding: i + 1, visibility: COMPUTE, buffer: { type: b.access === 'read' ? 'read-only-storage' : 'storage' },
          })),
        ],
      });
      const layout = this.device.createPipelineLayout({ bindGroupLayouts: [bindGroupLayout] });
      return { source, bindGroupLayout, pipeline: this.device.createComputePipeline({ label: source.label, layout, compute: { module, entryPoint: 'main' } }) };
    };
    this.pipelines = {
      embed: make(embedKernel(s, t)),
      rmsnorm: make(rmsnormKernel(s, t, false)),
      rmsnormFinal: make(rmsnormKernel(s, t, true)),
      qkv: make(qkvKernel(s, t)),
      attention: make(attentionKernel(s, t)),
      wo: make(residualKernel(s, t, c.dim, 'wo')),
      gateUp: make(gateUpKernel(s, t)),
      w2: make(residualKernel(s, t, c.hiddenDim, 'w2')),
      classifier: make(classifierKernel(s, t)),
      classifierAll: make(classifierKernel(s, t, true)),
      shiftKeys: make(shiftKeysKernel(s, t)),
      ...(gs > 0 ? {
        quantizeDim: make(quantizeKernel(s, t, c.dim, false)),
        quantizeHidden: make(quantizeKernel(s, t, c.hiddenDim, false)),
        quantizeFinal: make(quantizeKernel(s, t, c.dim, true)),
      } : {}),
    };
  }

  /** A buffer holding the given arrays one after another (each padded to 4 bytes). */
  upload(parts: ReadonlyArray<ArrayBufferView>, usage: number): GPUBuffer {
    const size = parts.reduce((n, p) => n + align4(p.byteLength), 0);
    const buffer = this.device.createBuffer({ size: Math.max(4, size), usage: usage | Usage.COPY_DST });
    let offset = 0;
    for (const p of parts) {
      const bytes = new Uint8Array(p.buffer, p.byteOffset, p.byteLength);
      if (p.byteLength % 4 === 0 && !(p.buffer instanceof SharedArrayBuffer)) {
        this.device.queue.writeBuffer(buffer, offset, bytes);
      } else {
        // shared memory (which Dawn cannot read) and odd sizes go through a staging copy, a chunk at a time
        for (let done = 0; done < p.byteLength; done += STAGING_BYTES) {
          const n = Math.min(STAGING_BYTES, p.byteLength - done);
          const chunk = (this.staging ??= new Uint8Array(STAGING_BYTES)).subarray(0, align4(n));
          chunk.fill(0, n);
          chunk.set(bytes.subarray(done, done + n));
          this.device.queue.writeBuffer(buffer, offset + done, chunk);
        }
      }
      offset += align4(p.byteLength);
    }
    this.owned.push(buffer);
    return buffer;
  }

  /** Matrices of the same kind concatenated by rows (Q8_0: values, then scales, each in order). */
  private matrices(ms: readonly GpuMatrixData[]): GpuMatrix {
    if (ms.every((m) => m instanceof Float32Array)) return { w: this.upload(ms as Float32Array[], Usage.STORAGE) };
    const q8 = ms as ReadonlyArray<{ q: Int8Array; s: Float32Array }>;
    if (q8.some((m) => m.q === undefined)) throw new Error('a model mixes float32 and Q8_0 matrices');
    return { q: this.upload(q8.map((m) => m.q), Usage.STORAGE), s: this.upload(q8.map((m) => m.s), Usage.STORAGE) };
  }

  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned.length = 0;
  }
}

/** (cos, sin) of pos · θ^(-i/headSize) for every position and even i — float64, then float32, as the CPU kernels round them. */
function ropeTable(c: ModelConfig): Float32Array {
  const hs = headSize(c);
  const theta = ropeTheta(c);
  const table = new Float32Array(c.seqLen * hs);
  for (let i = 0; i < hs; i += 2) {
    const freq = 1 / Math.pow(theta, i / hs);
    for (let pos = 0; pos < c.seqLen; pos++) {
      const angle = pos * freq;
      table[pos * hs + i] = Math.cos(angle);
      table[pos * hs + i + 1] = Math.sin(angle);
    }
  }
  return table;
}

/** Whose logits a command computes and reads back: none (prompt tokens), the last token's, or every token's. */
export type Head = 'none' | 'last' | 'all';

/** One kernel launch of a command: pipeline, bind group, workgroups. */
interface Dispatch {
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  /** Workgroups (x, y), the y of batch-wide kernels being the batch size (filled in per command). */
  readonly groups: (count: number) => [number, number];
}

export class GpuSession {
  private readonly device: GPUDevice;
  private readonly owned: GPUBuffer[] = [];
  private readonly step: GPUBuffer;
  private readonly tokens: GPUBuffer;
  private readonly logits: GPUBuffer;
  private readonly readback: GPUBuffer;
  /** Every layer's kernels, in order, then the final norm and classifier. */
  private readonly body: Dispatch[];
  private readonly head: Dispatch[];
  /** The head for every token of a batch, its logits and their readback: made on first use (buildAll). */
  private all: { readonly head: Dispatch[]; readonly logits: GPUBuffer; readonly readback: GPUBuffer } | undefined;
  private readonly buildAll: () => NonNullable<GpuSession['all']>;
  /** The context shift: each layer's caches, a scratch copy of rows, the rotation, and the key kernel per layer. */
  private readonly caches: Array<{ readonly keys: GPUBuffer; readonly values: GPUBuffer; readonly rotate: Dispatch }> = [];
  private readonly scratch: GPUBuffer;
  private readonly rotation: GPUBuffer;
  private readonly rotationData: Float32Array;
  /** The decode step's command buffer, recorded ahead. */
  private nextDecode: GPUCommandBuffer | undefined;
  private readonly stepData = new Uint32Array(4);
  private readonly tokenData: Uint32Array;
  /** The first validation or device error since the last command, reported by the next one. */
  private failure: string | undefined;

  constructor(readonly model: GpuModel) {
    const device = model.device;
    this.device = device;
    const c = model.config;
    const s = model.shape;
    const B = model.tuning.maxBatch;
    const f32 = (n: number, extra = 0) => this.buffer(n * 4, Usage.STORAGE | extra);
    this.step = this.buffer(16, Usage.UNIFORM);
    this.tokens = this.buffer(B * 4, Usage.STORAGE);
    this.tokenData = new Uint32Array(B);
    const x = f32(B * c.dim), xn = f32(B * c.dim), q = f32(B * c.dim), ao = f32(B * c.dim), hb = f32(B * c.hiddenDim);
    const att = f32(B * c.nHeads * c.seqLen);
    const xf = f32(c.dim);
    this.logits = f32(c.vocabSize, Usage.COPY_SRC);
    this.readback = device.createBuffer({ size: c.vocabSize * 4, usage: Usage.MAP_READ | Usage.COPY_DST });
    this.owned.push(this.readback);
    const gs = model.groupSize;
    const widest = Math.max(c.dim, c.hiddenDim);
    const xq = gs > 0 ? this.buffer(B * widest, Usage.STORAGE) : undefined;
    const xs = gs > 0 ? f32(B * Math.ceil(widest / gs)) : undefined;

    const P = model.pipelines;
    const t = model.tuning;
    const dispatch = (p: Pipeline, resources: Record<string, GPUBuffer>, groups: Dispatch['groups']): Dispatch => {
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: this.step } }];
      p.source.bindings.forEach((b: Binding, i) => {
        const buffer = resources[b.name];
        if (buffer === undefined) throw new Error(`internal: no buffer for ${b.name} of ${p.source.label}`);
        entries.push({ binding: i + 1, resource: { buffer } });
      });
      return { pipeline: p.pipeline, bindGroup: device.createBindGroup({ label: p.source.label, layout: p.bindGroupLayout, entries }), groups };
    };
    /** The inputs of a product kernel: a float32 activation, or its quantized form (after `quantize`). */
    const product = (m: GpuMatrix, input: GPUBuffer): Record<string, GPUBuffer> =>
      'w' in m ? { w: m.w, xv: input } : { wq: m.q, ws: m.s, xq: xq!, xs: xs! };
    const byItems = (items: number) => () => productGroups(t, items);
    const quantize = (p: Pipeline | undefined, input: GPUBuffer, n: number): Dispatch[] =>
      p === undefined ? [] : [dispatch(p, { x: input, xq: xq!, xs: xs! }, (count) => [Math.ceil(Math.ceil(n / gs) / 64), count])];
    const embedding: Record<string, GPUBuffer> = 'w' in model.embedding ? { emb: model.embedding.w } : { embq: model.embedding.q, embs: model.embedding.s };

    this.scratch = f32(c.seqLen * s.kvDim, Usage.COPY_SRC);
    this.rotationData = new Float32Array(s.headSize);
    this.rotation = f32(s.headSize);
    this.body = [dispatch(P.embed, { tokens: this.tokens, ...embedding, x }, (count) => [Math.ceil(c.dim / 64), count])];
    for (const L of model.layers) {
      const keyCache = f32(c.seqLen * s.kvDim, Usage.COPY_SRC);
      const valueCache = f32(c.seqLen * s.kvDim, Usage.COPY_SRC);
      this.caches.push({
        keys: keyCache, values: valueCache,
        rotate: dispatch(P.shiftKeys, { rot: this.rotation, src: this.scratch, kc: keyCache }, (rows) => grid(Math.ceil((rows * s.kvDim) / 2 / 64))),
      });
      // (appended one by one: the project spreads no array into a call, see test/no-call-spread)
      for (const step of [
        dispatch(P.rmsnorm, { x, w: L.rmsAtt, o: xn }, (count) => [count, 1]),
        ...quantize(P.quantizeDim, xn, c.dim),
        dispatch(P.qkv, { ...product(L.qkv, xn), rope: model.rope, q, kc: keyCache, vc: valueCache }, byItems((c.dim + 2 * s.kvDim) / 2)),
        dispatch(P.attention, { q, kc: keyCache, vc: valueCache, att, ao }, (count) => [c.nHeads, count]),
        ...quantize(P.quantizeDim, ao, c.dim),
        dispatch(P.wo, { ...product(L.wo, ao), x }, byItems(c.dim)),
        dispatch(P.rmsnorm, { x, w: L.rmsFfn, o: xn }, (count) => [count, 1]),
        ...quantize(P.quantizeDim, xn, c.dim),
        dispatch(P.gateUp, { ...product(L.gateUp, xn), hb }, byItems(c.hiddenDim)),
        ...quantize(P.quantizeHidden, hb, c.hiddenDim),
        dispatch(P.w2, { ...product(L.w2, hb), x }, byItems(c.dim)),
      ]) this.body.push(step);
    }
    this.head = [
      dispatch(P.rmsnormFinal, { x, w: model.rmsFinal, o: xf }, () => [1, 1]),
      ...(P.quantizeFinal === undefined ? [] : [dispatch(P.quantizeFinal, { x: xf, xq: xq!, xs: xs! }, () => [Math.ceil(Math.ceil(c.dim / gs) / 64), 1])]),
      dispatch(P.classifier, { ...product(model.classifier, xf), logits: this.logits }, byItems(c.vocabSize)),
    ];
    this.buildAll = () => {
      const xfAll = f32(B * c.dim);
      const logits = f32(B * c.vocabSize, Usage.COPY_SRC);
      const readback = device.createBuffer({ size: B * c.vocabSize * 4, usage: Usage.MAP_READ | Usage.COPY_DST });
      this.owned.push(readback);
      const head = [dispatch(P.rmsnorm, { x, w: model.rmsFinal, o: xfAll }, (count) => [count, 1])];
      for (const d of quantize(P.quantizeDim, xfAll, c.dim)) head.push(d);
      head.push(dispatch(P.classifierAll, { ...product(model.classifier, xfAll), logits }, byItems(c.vocabSize)));
      return { head, logits, readback };
    };
    void device.lost.then((info) => { this.failure ??= `the GPU device was lost: ${info.message}`; });
  }

  private buffer(bytes: number, usage: number): GPUBuffer {
    const b = this.device.createBuffer({ size: Math.max(16, align4(bytes)), usage: usage | Usage.COPY_DST });
    this.owned.push(b);
    return b;
  }

  /** The command buffer of one batch of `count` tokens (with the final norm, classifier and logits copy when asked). */
  private record(count: number, head: Head): GPUCommandBuffer {
    const encoder = this.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    const run = (d: Dispatch) => {
      const [gx, gy] = d.groups(count);
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(gx, gy);
    };
    for (const d of this.body) run(d);
    const vocab = this.model.config.vocabSize;
    if (head === 'last') for (const d of this.head) run(d);
    const all = head === 'all' ? (this.all ??= this.buildAll()) : undefined;
    if (all !== undefined) for (const d of all.head) run(d);
    pass.end();
    if (head === 'last') encoder.copyBufferToBuffer(this.logits, 0, this.readback, 0, vocab * 4);
    if (all !== undefined) encoder.copyBufferToBuffer(all.logits, 0, all.readback, 0, count * vocab * 4);
    return encoder.finish();
  }

  /**
   * Runs `count` tokens at positions pos0 … pos0 + count - 1 (count ≤ maxBatch). head 'last': waits
   * for the last token's logits and copies them into `out`; 'all': every token's, token b's at
   * out[b · vocab …]; 'none': returns once the work is queued.
   */
  async run(tokens: ArrayLike<number>, count: number, pos0: number, head: Head, out: Float32Array | undefined): Promise<void> {
    if (this.failure !== undefined) throw new Error(this.failure);
    this.stepData[0] = pos0;
    this.stepData[1] = count;
    this.device.queue.writeBuffer(this.step, 0, this.stepData);
    for (let i = 0; i < count; i++) this.tokenData[i] = tokens[i]!;
    this.device.queue.writeBuffer(this.tokens, 0, this.tokenData, 0, count);
    const decode = count === 1 && head === 'last';
    const commands = decode && this.nextDecode !== undefined ? this.nextDecode : this.record(count, head);
    if (decode) this.nextDecode = undefined;
    this.device.pushErrorScope('validation');
    this.device.queue.submit([commands]);
    const validation = this.device.popErrorScope();
    if (head === 'none' || out === undefined) {
      const err = await validation;
      if (err !== null) throw new Error(`WebGPU: ${err.message}`);
      return;
    }
    // record the next decode step while this one runs
    this.nextDecode ??= this.record(1, 'last');
    const readback = head === 'last' ? this.readback : this.all!.readback;
    const bytes = (head === 'last' ? 1 : count) * this.model.config.vocabSize * 4;
    await readback.mapAsync(MAP_READ, 0, bytes);
    out.set(new Float32Array(readback.getMappedRange(0, bytes)));
    readback.unmap();
    const err = await validation;
    if (err !== null) throw new Error(`WebGPU: ${err.message}`);
    if (this.failure !== undefined) throw new Error(this.failure);
  }

  /**
   * The context shift (see InferenceEngine.shift): in every layer, cache rows keep + drop … length - 1
   * move down by drop; keys are rotated by −drop positions on the way (the angles in float64, as
   * the CPU engine computes them).
   */
  async shift(keep: number, drop: number, length: number): Promise<void> {
    if (this.failure !== undefined) throw new Error(this.failure);
    const rows = length - keep - drop;
    if (drop === 0 || rows === 0) return;
    const s = this.model.shape;
    const theta = ropeTheta(this.model.config);
    for (let i = 0; i < s.headSize; i += 2) {
      const angle = -drop * (1 / Math.pow(theta, i / s.headSize));
      this.rotationData[i] = Math.cos(angle);
      this.rotationData[i + 1] = Math.sin(angle);
    }
    this.device.queue.writeBuffer(this.rotation, 0, this.rotationData);
    this.stepData[0] = keep;
    this.stepData[1] = rows;
    this.device.queue.writeBuffer(this.step, 0, this.stepData);
    const rowBytes = s.kvDim * 4;
    const encoder = this.device.createCommandEncoder();
    for (const c of this.caches) {
      // values: through the scratch buffer (a copy within one buffer is not allowed)
      encoder.copyBufferToBuffer(c.values, (keep + drop) * rowBytes, this.scratch, 0, rows * rowBytes);
      encoder.copyBufferToBuffer(this.scratch, 0, c.values, keep * rowBytes, rows * rowBytes);
      // keys: out to the scratch buffer, rotated back in
      encoder.copyBufferToBuffer(c.keys, (keep + drop) * rowBytes, this.scratch, 0, rows * rowBytes);
      const pass = encoder.beginComputePass();
      const [gx, gy] = c.rotate.groups(rows);
      pass.setPipeline(c.rotate.pipeline);
      pass.setBindGroup(0, c.rotate.bindGroup);
      pass.dispatchWorkgroups(gx, gy);
      pass.end();
    }
    this.device.pushErrorScope('validation');
    this.device.queue.submit([encoder.finish()]);
    const err = await this.device.popErrorScope();
    if (err !== null) throw new Error(`WebGPU: ${err.message}`);
  }

  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned.length = 0;
  }
}
