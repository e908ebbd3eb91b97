// The WebGPU kernels: WGSL compute shaders for one Llama 2 forward pass over a batch of B tokens
// (B = 1 when decoding, up to maxBatch when a prompt is fed), generated for one model's shape so
// that every size is a constant the shader compiler can unroll against.
//
// With x the residual stream (B, dim), for each layer (src/infer/forward.ts has the same math):
//   rmsnorm     xn  = x / sqrt(mean(x²) + ε) ⊙ w                      one workgroup per token
//   qkv         q, k, v = [Wq; Wk; Wv] xn, RoPE on (q, k) pairs, k and v stored in the KV cache
//               at row pos0 + b                                       one "team" per (even, odd) row pair
//   attention   ao_h = Σ_t softmax_t(q_h · k_t / √headSize) v_t, t ≤ pos0 + b, query head h
//               reading kv head h / (nHeads / nKvHeads)               one workgroup per (head, token)
//   wo          x += Wo ao                                            one team per row
//   rmsnorm     xn = …
//   gateUp      hb = silu(W1 xn) ⊙ (W3 xn), silu(a) = a / (1 + e^-a)  one team per row pair (W1 row i, W3 row i)
//   w2          x += W2 hb
// then, for the last token only: xf = rmsnorm(x) ⊙ rmsFinal, logits = Wcls xf (or for every token
// of the batch, when a prompt's every logit is wanted).
//
// Matrix × vector products. A team of lanes (a subgroup where the adapter has subgroups, else a
// fixed number of invocations that add their partial sums through workgroup memory) owns a row (or
// a pair of rows): lane l reads elements l, l+S, l+2S, … of the row — consecutive lanes read
// consecutive addresses — and the team adds the lanes' sums. With B tokens the team runs the row
// against each token in turn: the row is read from memory once per batch (the later passes find
// it in cache), so a prompt is fed as a matrix × matrix product.
//
// Q8_0 (int8 weights with a float32 scale per group of GS values of the flattened matrix, and
// activations quantized per token in groups of GS, see src/kernels/q8-types.ts): the int8 values
// are packed four to a u32; a lane takes one word (four values) at a time, multiplies it with the
// quantized activation word in integers (dot4I8Packed) and adds f32(isum) · wscale · xscale. Rows
// and groups are multiples of 4 long, so a word never straddles two groups. Concatenated matrices
// ([Wq; Wk; Wv], [W1; W3]) keep each matrix's own groups: a row knows the word where its matrix
// starts and where its matrix's scales start ("blocks").
//
// RoPE's rotations (cos, sin of pos · θ^(-i/headSize)) come from a table computed once on the CPU
// in float64, exactly as the TypeScript and WebAssembly kernels compute them: WGSL's sin and cos are
// only accurate near zero.
//
// Every kernel reads the batch's first position and size from the `step` uniform (written before
// each command), so one recorded command buffer serves every decode step.

/** Sizes of the model the kernels are generated for. */
export interface KernelShape {
  readonly dim: number;
  readonly hiddenDim: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headSize: number;
  readonly kvDim: number;
  readonly vocabSize: number;
  readonly seqLen: number;
  readonly normEps: number;
  /** Q8_0 group size, 0 for float32 weights. */
  readonly groupSize: number;
}

/** How the kernels use the adapter: subgroups or workgroup memory, and workgroup sizes. */
export interface KernelTuning {
  /** Teams are subgroups (needs the 'subgroups' feature and the subgroup_id language feature). */
  readonly subgroups: boolean;
  /** Invocations per workgroup of the matrix products. */
  readonly matmulThreads: number;
  /** Without subgroups: lanes per team (a power of two dividing matmulThreads). */
  readonly teamSize: number;
  /** With subgroups: rows (or row pairs) per workgroup; without, matmulThreads / teamSize. */
  readonly itemsPerGroup: number;
  /** Invocations per workgroup of rmsnorm and attention (a power of two). */
  readonly threads: number;
  /** Tokens per command (prompt chunks). */
  readonly maxBatch: number;
}

/** A storage binding of a kernel: its WGSL name, element type and access. */
export interface Binding {
  readonly name: string;
  readonly type: string;
  readonly access: 'read' | 'read_write';
}

/** A generated kernel: its source and its storage bindings (binding 0 is always the step uniform). */
export interface KernelSource {
  readonly label: string;
  readonly code: string;
  readonly bindings: readonly Binding[];
}

/** A float as an exact WGSL f32 literal. */
function f32(x: number): string {
  return `${Math.fround(x).toExponential(9)}f`;
}

const MAX_WORKGROUPS = 65535;

/** Workgroups for `n` items: (x, y) with x ≤ 65535; kernels read the index as wid.x + wid.y · nwg.x. */
export function grid(n: number): [number, number] {
  if (n <= MAX_WORKGROUPS) return [Math.max(1, n), 1];
  const y = Math.ceil(n / MAX_WORKGROUPS);
  return [Math.ceil(n / y), y];
}

function header(t: KernelTuning, bindings: readonly Binding[], extra = ''): string {
  const decls = bindings.map((b, i) => `@group(0) @binding(${i + 1}) var<storage, ${b.access}> ${b.name}: ${b.type};`).join('\n');
  return `${t.subgroups ? 'enable subgroups;\n' : ''}
struct Step { pos0: u32, count: u32 }
@group(0) @binding(0) var<uniform> step: Step;
${decls}
${extra}`;
}

/** The entry point's builtins: local index, workgroup index (2-D grid flattened), subgroup ids. */
function entry(t: KernelTuning, threads: number): string {
  const sg = t.subgroups ? ', @builtin(subgroup_invocation_id) sgi: u32, @builtin(subgroup_size) sgs: u32, @builtin(subgroup_id) sgid: u32, @builtin(num_subgroups) nsg: u32' : '';
  return `@compute @workgroup_size(${threads})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u${sg}) {
  let wg = wid.x + wid.y * nwg.x;`;
}

/**
 * Workgroup-wide sum and max of one value per invocation (every invocation gets the result), for
 * `threads` invocations: subgroup operations and one slot per subgroup, or a tree in workgroup memory.
 */
function workgroupReductions(t: KernelTuning, threads: number): string {
  if (t.subgroups) {
    const one = (name: string, op: string, combine: string) => `
fn ${name}(v: f32, sgi: u32, sgid: u32, nsg: u32) -> f32 {
  let s = ${op}(v);
  if (sgi == 0u) { red[sgid] = s; }
  workgroupBarrier();
  var r = red[0];
  for (var i = 1u; i < nsg; i++) { r = ${combine}; }
  workgroupBarrier();
  return r;
}`;
    return `var<workgroup> red: array<f32, ${threads}>;` + one('wgSum', 'subgroupAdd', 'r + red[i]') + one('wgMax', 'subgroupMax', 'max(r, red[i])');
  }
  const one = (name: string, combine: string) => `
fn ${name}(v: f32, li: u32) -> f32 {
  red[li] = v;
  for (var s = ${threads / 2}u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (li < s) { red[li] = ${combine}; }
  }
  workgroupBarrier();
  let r = red[0];
  workgroupBarrier();
  return r;
}`;
  return `var<workgroup> red: array<f32, ${threads}>;` + one('wgSum', 'red[li] + red[li + s]') + one('wgMax', 'max(red[li], red[li + s])');
}

/** The arguments the reductions take (depends on the variant). */
function reduceArgs(t: KernelTuning): string {
  return t.subgroups ? 'sgi, sgid, nsg' : 'li';
}

/** x (B, dim) = the embedding rows of the batch's tokens (Q8_0: dequantized as forward.ts does). */
export function embedKernel(s: KernelShape, t: KernelTuning): KernelSource {
  const q8 = s.groupSize > 0;
  const bindings: Binding[] = [
    { name: 'tokens', type: 'array<u32>', access: 'read' },
    ...(q8
      ? [{ name: 'embq', type: 'array<u32>', access: 'read' as const }, { name: 'embs', type: 'array<f32>', access: 'read' as const }]
      : [{ name: 'emb', type: 'array<f32>', access: 'read' as const }]),
    { name: 'x', type: 'array<f32>', access: 'read_write' },
  ];
  const value = q8
    ? `let f = tokens[b] * ${s.dim}u + i;
    let byte = extractBits(bitcast<i32>(embq[f / 4u]), (f % 4u) * 8u, 8u);
    x[b * ${s.dim}u + i] = f32(byte) * embs[f / ${s.groupSize}u];`
    : `x[b * ${s.dim}u + i] = emb[tokens[b] * ${s.dim}u + i];`;
  return {
    label: 'embed', bindings, code: `${header(t, bindings)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.x;
  let b = g.y;
  if (i < ${s.dim}u && b < step.count) {
    ${value}
  }
}`,
  };
}

/**
 * out = rmsnorm(x) ⊙ w for each token of the batch, or (final) for the last token only, into row 0:
 * scale = 1 / sqrt(Σx² / dim + ε), out_i = w_i · (scale · x_i), as the TypeScript kernel does.
 */
export function rmsnormKernel(s: KernelShape, t: KernelTuning, final: boolean): KernelSource {
  const bindings: Binding[] = [
    { name: 'x', type: 'array<f32>', access: 'read' },
    { name: 'w', type: 'array<f32>', access: 'read' },
    { name: 'o', type: 'array<f32>', access: 'read_write' },
  ];
  const T = t.threads;
  return {
    label: final ? 'rmsnorm-final' : 'rmsnorm', bindings, code: `${header(t, bindings, workgroupReductions(t, T))}
${entry(t, T)}
  let b = ${final ? 'step.count - 1u' : 'wg'};
  let ob = ${final ? '0u' : 'wg'};
  if (b >= step.count) { return; }
  var ss = 0.0;
  for (var i = li; i < ${s.dim}u; i += ${T}u) {
    let v = x[b * ${s.dim}u + i];
    ss += v * v;
  }
  ss = wgSum(ss, ${reduceArgs(t)});
  let scale = 1.0 / sqrt(ss / ${f32(s.dim)} + ${f32(s.normEps)});
  for (var i = li; i < ${s.dim}u; i += ${T}u) {
    o[ob * ${s.dim}u + i] = w[i] * (scale * x[b * ${s.dim}u + i]);
  }
}`,
  };
}

/**
 * Q8_0 activations: x (rows, n) quantized in groups of GS per row — scale = max|x| / 127,
 * q = round-half-even(x / scale) (0 when the scale is 0) — packed four to a word. One invocation
 * per (group, token). `final`: one row (the final norm's output).
 */
export function quantizeKernel(s: KernelShape, t: KernelTuning, n: number, final: boolean): KernelSource {
  const gs = s.groupSize;
  const groups = Math.ceil(n / gs);
  const bindings: Binding[] = [
    { name: 'x', type: 'array<f32>', access: 'read' },
    { name: 'xq', type: 'array<u32>', access: 'read_write' },
    { name: 'xs', type: 'array<f32>', access: 'read_write' },
  ];
  return {
    label: `quantize-${n}${final ? '-final' : ''}`, bindings, code: `${header(t, bindings)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let g = gid.x;
  let b = gid.y;
  if (g >= ${groups}u || b >= ${final ? '1u' : 'step.count'}) { return; }
  let start = g * ${gs}u;
  let end = min(start + ${gs}u, ${n}u);
  var m = 0.0;
  for (var i = start; i < end; i++) { m = max(m, abs(x[b * ${n}u + i])); }
  let scale = m / 127.0;
  xs[b * ${groups}u + g] = scale;
  for (var i = start; i < end; i += 4u) {
    var v = vec4f(0.0);
    if (scale != 0.0) {
      let o = b * ${n}u + i;
      v = round(vec4f(x[o], x[o + 1u], x[o + 2u], x[o + 3u]) / scale);
    }
    xq[(b * ${n}u + i) / 4u] = pack4xI8(vec4i(v));
  }
}`,
  };
}

/** One matrix of a concatenation ([Wq; Wk; Wv]): its rows, and (Q8_0) where its words and scales start. */
export interface MatrixBlock {
  readonly rows: number;
  readonly firstWord: number;
  readonly firstScale: number;
}

/** A matrix × vector product kernel: its input, the rows a team owns, and what it does with the sums. */
interface ProductSpec {
  readonly label: string;
  /** Row length. */
  readonly n: number;
  /** Teams' work items (rows, or row pairs). */
  readonly items: number;
  /** Rows per item: 1, or 2 (read together, so the epilogue sees both sums). */
  readonly rowsPerItem: 1 | 2;
  /** WGSL expressions of the rows of item `item`. */
  readonly rowA: string;
  readonly rowB?: string;
  /** Tokens: 'step.count' or '1u'. */
  readonly batch: string;
  /** Q8_0: the concatenated matrices (in row order). */
  readonly blocks: readonly MatrixBlock[];
  /** Output bindings (after the weight and input bindings). */
  readonly outputs: readonly Binding[];
  /** WGSL run by lane 0 with item, b (token), s0 (and s1). */
  readonly epilogue: string;
}

function productKernel(s: KernelShape, t: KernelTuning, p: ProductSpec): KernelSource {
  const q8 = s.groupSize > 0;
  const n4 = p.n / 4;
  const gs = s.groupSize;
  const groups = q8 ? Math.ceil(p.n / gs) : 0;
  const inputs: Binding[] = q8
    ? [
      { name: 'wq', type: 'array<u32>', access: 'read' }, { name: 'ws', type: 'array<f32>', access: 'read' },
      { name: 'xq', type: 'array<u32>', access: 'read' }, { name: 'xs', type: 'array<f32>', access: 'read' },
    ]
    : [{ name: 'w', type: 'array<vec4f>', access: 'read' }, { name: 'xv', type: 'array<vec4f>', access: 'read' }];
  const bindings = [...inputs, ...p.outputs];
  const two = p.rowsPerItem === 2;

  // where row r's words and its matrix's scales start, and its first element within its matrix
  let rowInfo = '';
  if (q8) {
    let start = 0;
    const cases = p.blocks.map((blk, i) => {
      const local = start === 0 ? 'r' : `(r - ${start}u)`;
      const body = `return vec3u(${blk.firstWord}u + ${local} * ${n4}u, ${blk.firstScale}u, ${local} * ${p.n}u);`;
      start += blk.rows;
      return i === p.blocks.length - 1 ? `  ${body}` : `  if (r < ${start}u) { ${body} }`;
    });
    rowInfo = `fn rowInfo(r: u32) -> vec3u {\n${cases.join('\n')}\n}`;
  }

  // the lanes' partial dot products of rows ra (and rb) with token b's input
  const accumulate = q8
    ? `let ia = rowInfo(ra);${two ? '\n      let ib = rowInfo(rb);' : ''}
      for (var k = lane; k < ${n4}u; k += S) {
        let xw = xq[b * ${n4}u + k];
        let xsc = xs[b * ${groups}u + (4u * k) / ${gs}u];
        a0 += (f32(dot4I8Packed(wq[ia.x + k], xw)) * ws[ia.y + (ia.z + 4u * k) / ${gs}u]) * xsc;${two ? `
        a1 += (f32(dot4I8Packed(wq[ib.x + k], xw)) * ws[ib.y + (ib.z + 4u * k) / ${gs}u]) * xsc;` : ''}
      }`
    : `for (var k = lane; k < ${n4}u; k += S) {
        let xk = xv[b * ${n4}u + k];
        a0 += dot(w[ra * ${n4}u + k], xk);${two ? `
        a1 += dot(w[rb * ${n4}u + k], xk);` : ''}
      }`;

  const T = t.matmulThreads;
  const item = (itemExpr: string) => `
    let item = ${itemExpr};
    let valid = item < ${p.items}u;
    let ra = ${p.rowA};${two ? `\n    let rb = ${p.rowB};` : ''}
    for (var b = 0u; b < ${p.batch}; b++) {
      var a0 = 0.0;${two ? '\n      var a1 = 0.0;' : ''}
      if (valid) {
      ${accumulate}
      }
      let s0 = teamSum(a0${t.subgroups ? '' : ', li, lane'});${two ? `\n      let s1 = teamSum(a1${t.subgroups ? '' : ', li, lane'});` : ''}
      if (valid && lane == 0u) {
        ${p.epilogue}
      }
    }`;

  let teams: string;
  let body: string;
  if (t.subgroups) {
    // a team is a subgroup; the workgroup's subgroups share its items
    teams = 'fn teamSum(v: f32) -> f32 { return subgroupAdd(v); }';
    body = `  let lane = sgi;
  let S = sgs;
  for (var it = sgid; it < ${t.itemsPerGroup}u; it += nsg) {${item(`wg * ${t.itemsPerGroup}u + it`)}
  }`;
  } else {
    // a team is teamSize consecutive invocations adding through workgroup memory
    const S = t.teamSize;
    teams = S === 1 ? 'fn teamSum(v: f32, li: u32, lane: u32) -> f32 { return v; }' : `var<workgroup> tred: array<f32, ${T}>;
fn teamSum(v: f32, li: u32, lane: u32) -> f32 {
  tred[li] = v;
  for (var s = ${S / 2}u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lane < s) { tred[li] += tred[li + s]; }
  }
  workgroupBarrier();
  let r = tred[li - lane];
  workgroupBarrier();
  return r;
}`;
    body = `  let lane = li % ${S}u;
  let S = ${S}u;
  {${item(`wg * ${T / S}u + li / ${S}u`)}
  }`;
  }
  return {
    label: p.label, bindings, code: `${header(t, bindings, `${teams}\n${rowInfo}`)}
${entry(t, T)}
${body}
}`,
  };
}

/** Workgroups a product kernel needs. */
export function productGroups(t: KernelTuning, items: number): [number, number] {
  const perGroup = t.subgroups ? t.itemsPerGroup : t.matmulThreads / t.teamSize;
  return grid(Math.ceil(items / perGroup));
}

/** Q8_0 blocks of matrices of `rows` rows each, `n` long, concatenated. */
export function blocksOf(rows: readonly number[], n: number, groupSize: number): MatrixBlock[] {
  let word = 0;
  let scale = 0;
  return rows.map((r) => {
    const blk = { rows: r, firstWord: word, firstScale: scale };
    word += (r * n) / 4;
    scale += groupSize > 0 ? Math.ceil((r * n) / groupSize) : 0;
    return blk;
  });
}

/** [Wq; Wk; Wv] · xn, RoPE on q and k, k and v into the cache rows of positions pos0 + b. */
export function qkvKernel(s: KernelShape, t: KernelTuning): KernelSource {
  const { dim, kvDim: kv, headSize: hs } = s;
  const rot = (dst: string, at: string) => `let cs = rope[pos * ${hs / 2}u + (${at} % ${hs}u) / 2u];
          ${dst}[${at === 'r' ? `b * ${dim}u + r` : `pos * ${kv}u + ${at}`}] = s0 * cs.x - s1 * cs.y;
          ${dst}[${at === 'r' ? `b * ${dim}u + r` : `pos * ${kv}u + ${at}`} + 1u] = s0 * cs.y + s1 * cs.x;`;
  return productKernel(s, t, {
    label: 'qkv', n: dim, items: (dim + 2 * kv) / 2, rowsPerItem: 2, rowA: '2u * item', rowB: '2u * item + 1u', batch: 'step.count',
    blocks: blocksOf([dim, kv, kv], dim, s.groupSize),
    outputs: [
      { name: 'rope', type: 'array<vec2f>', access: 'read' },
      { name: 'q', type: 'array<f32>', access: 'read_write' },
      { name: 'kc', type: 'array<f32>', access: 'read_write' },
      { name: 'vc', type: 'array<f32>', access: 'read_write' },
    ],
    epilogue: `let r = 2u * item;
        let pos = step.pos0 + b;
        if (r < ${dim}u) {
          ${rot('q', 'r')}
        } else if (r < ${dim + kv}u) {
          let rk = r - ${dim}u;
          ${rot('kc', 'rk')}
        } else {
          let rv = r - ${dim + kv}u;
          vc[pos * ${kv}u + rv] = s0;
          vc[pos * ${kv}u + rv + 1u] = s1;
        }`,
  });
}

/** x += W · input: the attention output projection (n = dim) and the feed-forward's W2 (n = hidden). */
export function residualKernel(s: KernelShape, t: KernelTuning, n: number, label: string): KernelSource {
  return productKernel(s, t, {
    label, n, items: s.dim, rowsPerItem: 1, rowA: 'item', batch: 'step.count',
    blocks: blocksOf([s.dim], n, s.groupSize),
    outputs: [{ name: 'x', type: 'array<f32>', access: 'read_write' }],
    epilogue: `x[b * ${s.dim}u + item] = x[b * ${s.dim}u + item] + s0;`,
  });
}

/** hb = silu(W1 xn) ⊙ (W3 xn) with [W1; W3] concatenated: item i reads rows i and hidden + i. */
export function gateUpKernel(s: KernelShape, t: KernelTuning): KernelSource {
  const h = s.hiddenDim;
  return productKernel(s, t, {
    label: 'gate-up', n: s.dim, items: h, rowsPerItem: 2, rowA: 'item', rowB: `${h}u + item`, batch: 'step.count',
    blocks: blocksOf([h, h], s.dim, s.groupSize),
    outputs: [{ name: 'hb', type: 'array<f32>', access: 'read_write' }],
    epilogue: `hb[b * ${h}u + item] = (s0 / (1.0 + exp(-s0))) * s1;`,
  });
}

/**
 * logits = Wcls xf: for one token (the last of the batch, normalised by the final rmsnorm into row
 * 0), or with `all` for every token of the batch (rows b of xf into rows b of logits: a prompt
 * whose every logit is wanted, as evaluation wants them).
 */
export function classifierKernel(s: KernelShape, t: KernelTuning, all = false): KernelSource {
  return productKernel(s, t, {
    label: all ? 'classifier-all' : 'classifier', n: s.dim, items: s.vocabSize, rowsPerItem: 1, rowA: 'item', batch: all ? 'step.count' : '1u',
    blocks: blocksOf([s.vocabSize], s.dim, s.groupSize),
    outputs: [{ name: 'logits', type: 'array<f32>', access: 'read_write' }],
    epilogue: all ? `logits[b * ${s.vocabSize}u + item] = s0;` : 'logits[item] = s0;',
  });
}

/**
 * Causal attention of token b (position pos0 + b) for query head h, one workgroup per (h, b):
 * scores t ≤ pos into att, their max, exp and sum, then each invocation owns one dimension i of
 * the head for a share of the positions, and the shares are added through workgroup memory.
 */
export function attentionKernel(s: KernelShape, t: KernelTuning): KernelSource {
  const { headSize: hs, kvDim: kv, dim, seqLen, nHeads } = s;
  const T = t.threads;
  const kvMul = s.nHeads / s.nKvHeads;
  // invocations per head dimension, and how many dimensions one invocation covers
  const shares = Math.max(1, Math.floor(T / hs));
  const bindings: Binding[] = [
    { name: 'q', type: 'array<f32>', access: 'read' },
    { name: 'kc', type: 'array<f32>', access: 'read' },
    { name: 'vc', type: 'array<f32>', access: 'read' },
    { name: 'att', type: 'array<f32>', access: 'read_write' },
    { name: 'ao', type: 'array<f32>', access: 'read_write' },
  ];
  return {
    label: 'attention', bindings, code: `${header(t, bindings, `${workgroupReductions(t, T)}\nvar<workgroup> part: array<f32, ${T}>;`)}
@compute @workgroup_size(${T})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3u${t.subgroups ? ', @builtin(subgroup_invocation_id) sgi: u32, @builtin(subgroup_id) sgid: u32, @builtin(num_subgroups) nsg: u32' : ''}) {
  let h = wid.x;
  let b = wid.y;
  let pos = step.pos0 + b;
  let qo = b * ${dim}u + h * ${hs}u;
  let kvo = (h / ${kvMul}u) * ${hs}u;
  let ao0 = (b * ${nHeads}u + h) * ${seqLen}u;
  // scores
  var mx = bitcast<f32>(0xff7fffffu); // the lowest float32
  for (var tt = li; tt <= pos; tt += ${T}u) {
    var sc = 0.0;
    for (var i = 0u; i < ${hs}u; i++) { sc += q[qo + i] * kc[tt * ${kv}u + kvo + i]; }
    sc = sc * ${f32(1 / Math.sqrt(hs))};
    att[ao0 + tt] = sc;
    mx = max(mx, sc);
  }
  mx = wgMax(mx, ${reduceArgs(t)});
  var sum = 0.0;
  for (var tt = li; tt <= pos; tt += ${T}u) {
    let e = exp(att[ao0 + tt] - mx);
    att[ao0 + tt] = e;
    sum += e;
  }
  sum = wgSum(sum, ${reduceArgs(t)});
  storageBarrier();
  // weighted sum of values: invocation li owns dimensions li % hs (+ hs, …) for positions ≡ li / hs
  let share = li / ${hs}u;
  for (var i0 = 0u; i0 < ${hs}u; i0 += ${Math.min(T, hs)}u) {
    let i = i0 + li % ${Math.min(T, hs)}u;
    var acc = 0.0;
    if (share < ${shares}u && i < ${hs}u) {
      for (var tt = share; tt <= pos; tt += ${shares}u) { acc += att[ao0 + tt] * vc[tt * ${kv}u + kvo + i]; }
    }
    part[li] = acc;
    workgroupBarrier();
    if (li < ${Math.min(T, hs)}u && i < ${hs}u) {
      var total = 0.0;
      for (var sh = 0u; sh < ${shares}u; sh++) { total += part[sh * ${hs}u + li]; }
      ao[qo + i] = total / sum;
    }
    workgroupBarrier();
  }
}`,
  };
}

/**
 * The context shift's key rotation (InferenceEngine.shift): rows 0..count-1 of `src` (keys copied
 * out of the cache) rotated by −drop positions — (cos, sin) per pair offset in `rot` — written to
 * cache rows pos0 … pos0 + count - 1. One invocation per (row, pair).
 */
export function shiftKeysKernel(s: KernelShape, t: KernelTuning): KernelSource {
  const { kvDim: kv, headSize: hs } = s;
  const bindings: Binding[] = [
    { name: 'rot', type: 'array<f32>', access: 'read' },
    { name: 'src', type: 'array<f32>', access: 'read' },
    { name: 'kc', type: 'array<f32>', access: 'read_write' },
  ];
  return {
    label: 'shift-keys', bindings, code: `${header(t, bindings)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let p = g.x + g.y * nwg.x * 64u;
  if (p >= step.count * ${kv / 2}u) { return; }
  let row = p / ${kv / 2}u;
  let j = 2u * (p % ${kv / 2}u);
  let i = j % ${hs}u;
  let k0 = src[row * ${kv}u + j];
  let k1 = src[row * ${kv}u + j + 1u];
  let o = (step.pos0 + row) * ${kv}u + j;
  kc[o] = k0 * rot[i] - k1 * rot[i + 1u];
  kc[o + 1u] = k0 * rot[i + 1u] + k1 * rot[i];
}`,
  };
}
