// A llama2.c model as an ONNX graph, for the side-by-side benchmark with onnxruntime (bench/versus.ts):
// the forward pass of a sequence of T tokens (T fixed at export) returning the logits of the last
// position — what a prompt's prefill computes. Standard ONNX operators only (opset 17), float32,
// weights as initializers (the matrices transposed for MatMul, as PyTorch exports nn.Linear):
//
//   x = Gather(embedding, tokens)                                        (1, T, C)
//   per layer:  n = x / sqrt(mean(x²) + ε) · w        (Pow, ReduceMean, Add, Sqrt, Div, Mul)
//               q, k, v = n Wqᵀ, n Wkᵀ, n Wvᵀ; RoPE on the (even, odd) pairs of q and k (tables)
//               attention per head (grouped-query heads by broadcasting), causal mask, softmax
//               x += (attention) Woᵀ;  x += (silu(m W1ᵀ) ⊙ m W3ᵀ) W2ᵀ,  m = rmsnorm(x)
//   logits = rmsnorm(x[T-1]) · Wclsᵀ                                     (1, V)
//
// The protobuf is written with src/tokenizer/protobuf.ts's writer (no dependency). Field numbers
// are onnx.proto's.

import { writeFileSync } from 'node:fs';
import { type ModelConfig, headSize, kvDim, normEps, ropeTheta } from '../src/model/config.js';
import type { TransformerWeights } from '../src/model/weights.js';
import { ProtobufWriter } from '../src/tokenizer/protobuf.js';

const FLOAT = 1, INT64 = 7; // TensorProto.DataType
const ATTR_FLOAT = 1, ATTR_INT = 2, ATTR_INTS = 7; // AttributeProto.AttributeType

type Attribute = { name: string; f?: number; i?: number; ints?: number[] };

interface Node { op: string; inputs: string[]; outputs: string[]; attributes?: Attribute[] }

interface Initializer { name: string; dims: number[]; type: typeof FLOAT | typeof INT64; data: Float32Array | BigInt64Array }

function message(fill: (w: ProtobufWriter) => void): Uint8Array {
  const w = new ProtobufWriter();
  fill(w);
  return w.finish();
}

function tensorProto(t: Initializer): Uint8Array {
  return message((w) => {
    for (const d of t.dims) w.uint64(1, d);
    w.int32(2, t.type);
    w.string(8, t.name);
    w.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  });
}

function attributeProto(a: Attribute): Uint8Array {
  return message((w) => {
    w.string(1, a.name);
    if (a.f !== undefined) { w.float(2, a.f); w.int32(20, ATTR_FLOAT); }
    else if (a.i !== undefined) { w.int32(3, a.i); w.int32(20, ATTR_INT); } // (int64 on the wire: int32 sign-extends the same way)
    else { for (const v of a.ints!) w.int32(8, v); w.int32(20, ATTR_INTS); }
  });
}

function nodeProto(n: Node, index: number): Uint8Array {
  return message((w) => {
    for (const i of n.inputs) w.string(1, i);
    for (const o of n.outputs) w.string(2, o);
    w.string(3, `${n.op}_${index}`);
    w.string(4, n.op);
    for (const a of n.attributes ?? []) w.bytes(5, attributeProto(a));
  });
}

function valueInfo(name: string, elemType: number, dims: number[]): Uint8Array {
  const shape = message((w) => { for (const d of dims) w.bytes(1, message((x) => x.uint64(1, d))); });
  const tensorType = message((w) => { w.int32(1, elemType); w.bytes(2, shape); });
  return message((w) => { w.string(1, name); w.bytes(2, message((x) => x.bytes(1, tensorType))); });
}

/** (rows, cols) → (cols, rows) */
function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = m[r * cols + c]!;
  return t;
}

/**
 * Writes `w` as an ONNX model of the forward pass of T tokens (input "tokens": int64 (1, T);
 * output "logits": float (1, vocab), the last position's).
 */
export function writeOnnx(path: string, w: TransformerWeights, T: number): void {
  const c: ModelConfig = w.config;
  const C = c.dim, H = c.hiddenDim, NH = c.nHeads, KVH = c.nKvHeads, hs = headSize(c), KV = kvDim(c), V = c.vocabSize;
  const nodes: Node[] = [];
  const inits: Initializer[] = [];
  const f32 = (name: string, dims: number[], data: Float32Array): string => { inits.push({ name, dims, type: FLOAT, data }); return name; };
  const i64 = (name: string, values: number[]): string => { inits.push({ name, dims: [values.length], type: INT64, data: BigInt64Array.from(values.map(BigInt)) }); return name; };
  let id = 0;
  const op = (type: string, inputs: string[], attributes?: Attribute[]): string => {
    const out = `t${id++}`;
    nodes.push({ op: type, inputs, outputs: [out], ...(attributes ? { attributes } : {}) });
    return out;
  };

  // constants
  const two = f32('two', [], Float32Array.of(2));
  const eps = f32('eps', [], Float32Array.of(normEps(c)));
  const scale = f32('scale', [], Float32Array.of(1 / Math.sqrt(hs)));
  const mask = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) mask[i * T + j] = -Infinity;
  f32('mask', [T, T], mask);
  // RoPE tables, (1, T, 1, hs/2, 1): cos and sin of pos · θ^(−2i/hs), as forward.ts computes them
  const half = hs / 2;
  const cos = new Float32Array(T * half), sin = new Float32Array(T * half);
  for (let p = 0; p < T; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * (1 / Math.pow(ropeTheta(c), (2 * i) / hs));
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  f32('cos', [1, T, 1, half, 1], cos);
  f32('sin', [1, T, 1, half, 1], sin);
  i64('shape_q5', [1, T, NH, half, 2]);
  i64('shape_k5', [1, T, KVH, half, 2]);
  i64('shape_q4', [1, T, NH, hs]);
  i64('shape_k4', [1, T, KVH, hs]);
  i64('shape_qg', [1, KVH, NH / KVH, T, hs]); // query heads grouped by their kv head
  i64('shape_kg', [1, KVH, 1, T, hs]);
  i64('shape_out', [1, T, C]);
  i64('split_pair', [1, 1]);
  i64('last', [T - 1]);

  const rmsnorm = (x: string, weight: string): string => {
    const ms = op('ReduceMean', [op('Pow', [x, two])], [{ name: 'axes', ints: [-1] }, { name: 'keepdims', i: 1 }]);
    return op('Mul', [op('Div', [x, op('Sqrt', [op('Add', [ms, eps])])]), weight]);
  };
  const rope = (x: string, shape5: string, shape4: string): string => {
    const pairs = op('Reshape', [x, shape5]);
    const re = `t${id++}`, im = `t${id++}`;
    nodes.push({ op: 'Split', inputs: [pairs, 'split_pair'], outputs: [re, im], attributes: [{ name: 'axis', i: -1 }] });
    const outRe = op('Sub', [op('Mul', [re, 'cos']), op('Mul', [im, 'sin'])]);
    const outIm = op('Add', [op('Mul', [re, 'sin']), op('Mul', [im, 'cos'])]);
    return op('Reshape', [op('Concat', [outRe, outIm], [{ name: 'axis', i: -1 }]), shape4]);
  };

  let x = op('Gather', [f32('embedding', [V, C], w.tokenEmbedding), 'tokens'], [{ name: 'axis', i: 0 }]);
  for (let l = 0; l < c.nLayers; l++) {
    const layer = (a: Float32Array, size: number): Float32Array => a.subarray(l * size, (l + 1) * size);
    const mat = (name: string, a: Float32Array, out: number, inp: number): string => f32(`${name}.${l}`, [inp, out], transpose(layer(a, out * inp), out, inp));
    const n = rmsnorm(x, f32(`rms_att.${l}`, [C], layer(w.rmsAtt, C)));
    const q = rope(op('MatMul', [n, mat('wq', w.wq, C, C)]), 'shape_q5', 'shape_q4'); // (1, T, NH, hs)
    const k = rope(op('MatMul', [n, mat('wk', w.wk, KV, C)]), 'shape_k5', 'shape_k4');
    const v = op('Reshape', [op('MatMul', [n, mat('wv', w.wv, KV, C)]), 'shape_k4']);
    // (1, NH, T, hs) → (1, KVH, NH/KVH, T, hs); keys and values (1, KVH, 1, T, hs)
    const qg = op('Reshape', [op('Transpose', [q], [{ name: 'perm', ints: [0, 2, 1, 3] }]), 'shape_qg']);
    const kg = op('Reshape', [op('Transpose', [k], [{ name: 'perm', ints: [0, 2, 1, 3] }]), 'shape_kg']);
    const vg = op('Reshape', [op('Transpose', [v], [{ name: 'perm', ints: [0, 2, 1, 3] }]), 'shape_kg']);
    const scores = op('Add', [op('Mul', [op('MatMul', [qg, op('Transpose', [kg], [{ name: 'perm', ints: [0, 1, 2, 4, 3] }])]), scale]), 'mask']);
    const att = op('MatMul', [op('Softmax', [scores], [{ name: 'axis', i: -1 }]), vg]); // (1, KVH, NH/KVH, T, hs)
    const heads = op('Reshape', [op('Transpose', [op('Reshape', [att, 'shape_q4t'])], [{ name: 'perm', ints: [0, 2, 1, 3] }]), 'shape_out']);
    x = op('Add', [x, op('MatMul', [heads, mat('wo', w.wo, C, C)])]);
    const m = rmsnorm(x, f32(`rms_ffn.${l}`, [C], layer(w.rmsFfn, C)));
    const h1 = op('MatMul', [m, mat('w1', w.w1, H, C)]);
    const gate = op('Mul', [op('Mul', [h1, op('Sigmoid', [h1])]), op('MatMul', [m, mat('w3', w.w3, H, C)])]);
    x = op('Add', [x, op('MatMul', [gate, mat('w2', w.w2, C, H)])]);
  }
  i64('shape_q4t', [1, NH, T, hs]);
  const lastRow = op('Gather', [x, 'last'], [{ name: 'axis', i: 1 }]); // (1, 1, C)
  const final = rmsnorm(lastRow, f32('rms_final', [C], w.rmsFinal));
  const logits = op('Reshape', [op('MatMul', [final, f32('wcls', [C, V], transpose(w.wcls, V, C))]), i64('shape_logits', [1, V])]);
  nodes[nodes.length - 1]!.outputs = ['logits'];
  void logits;

  const graph = message((g) => {
    nodes.forEach((n, i) => g.bytes(1, nodeProto(n, i)));
    g.string(2, 'llama2ts');
    for (const t of inits) g.bytes(5, tensorProto(t));
    g.bytes(11, valueInfo('tokens', INT64, [1, T]));
    g.bytes(12, valueInfo('logits', FLOAT, [1, V]));
  });
  const model = message((m) => {
    m.uint64(1, 8); // ir_version
    m.string(2, 'llama2ts bench');
    m.bytes(7, graph);
    m.bytes(8, message((o) => { o.string(1, ''); o.uint64(2, 17); })); // opset_import: ai.onnx 17
  });
  writeFileSync(path, model);
}
