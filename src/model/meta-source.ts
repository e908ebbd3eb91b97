// A Meta checkpoint folder (Llama 2 as Meta releases it) as a ModelSource.
//
//   params.json                 dim, n_layers, n_heads, n_kv_heads, vocab_size (-1 in Meta's
//                               release: the embedding's rows say), multiple_of,
//                               ffn_dim_multiplier, norm_eps, rope_theta, max_seq_len (absent in
//                               Meta's files: 2048, as llama2.c's export.py assumes)
//   consolidated.00.pth …       one torch.save zip per model-parallel shard (pickle.ts reads its
//                               data.pkl without executing it; zip.ts finds the storages)
//   tokenizer.model             in the folder or the one above it (Meta's download layout)
//
// Names → engine tensors: tok_embeddings (tokenEmbedding), layers.L.attention_norm (rmsAtt),
// layers.L.attention.wq/wk/wv/wo, layers.L.ffn_norm (rmsFfn), layers.L.feed_forward.w1/w2/w3,
// norm (rmsFinal), output (wcls). Meta's Wq/Wk rows are already in the interleaved RoPE order.
// With several shards, each 2-D tensor is the concatenation of the shards' parts along the
// dimension it was split on — as export.py's concat_weights: dim 1 for tok_embeddings, wo and w2,
// dim 0 for the rest; 1-D tensors (norms) are replicated, shard 0's is used.

import { existsSync } from 'node:fs';
import { FormatError, quote } from '../errors.js';
import { type AssembledTensor, AssembledSource, type StoredPiece } from './assembled-source.js';
import { type ModelConfig, validateConfig } from './config.js';
import { FileReader, firstExisting, folderOf, joinPath } from './file-reader.js';
import { FLOAT_DTYPE_BYTES } from './float-codecs.js';
import { readJsonFile } from './hf-source.js';
import { type PickleValue, type TensorRef, unpickle } from './pickle.js';
import { tensorShape } from './source.js';
import type { TensorName } from './weights.js';
import { readZipDirectory } from './zip.js';

/** Largest data.pkl accepted (a 70B shard's is well under 1 MB). */
const MAX_PICKLE_BYTES = 64 << 20;

/** Engine tensor and layer of a Meta name; 'ignore' for buffers that hold no weights. */
function engineName(name: string): { name: TensorName; layer: number } | 'ignore' | undefined {
  if (name === 'tok_embeddings.weight') return { name: 'tokenEmbedding', layer: 0 };
  if (name === 'norm.weight') return { name: 'rmsFinal', layer: 0 };
  if (name === 'output.weight') return { name: 'wcls', layer: 0 };
  if (name === 'rope.freqs' || name === 'freqs_cos' || name === 'freqs_sin') return 'ignore';
  const m = /^layers\.(\d{1,6})\.(.+)$/.exec(name);
  if (m === null) return undefined;
  const map: Record<string, TensorName> = {
    'attention_norm.weight': 'rmsAtt', 'ffn_norm.weight': 'rmsFfn',
    'attention.wq.weight': 'wq', 'attention.wk.weight': 'wk', 'attention.wv.weight': 'wv', 'attention.wo.weight': 'wo',
    'feed_forward.w1.weight': 'w1', 'feed_forward.w2.weight': 'w2', 'feed_forward.w3.weight': 'w3',
  };
  if (m[2] === 'attention.mask') return 'ignore'; // llama2.c's model.py keeps its causal mask as a buffer
  const t = map[m[2]!];
  return t === undefined ? undefined : { name: t, layer: Number(m[1]) };
}

/** Meta's name of engine tensor `name`, layer `layer`. */
export function metaTensorName(name: TensorName, layer: number): string {
  switch (name) {
    case 'tokenEmbedding': return 'tok_embeddings.weight';
    case 'rmsFinal': return 'norm.weight';
    case 'wcls': return 'output.weight';
    case 'rmsAtt': return `layers.${layer}.attention_norm.weight`;
    case 'rmsFfn': return `layers.${layer}.ffn_norm.weight`;
    case 'wq': case 'wk': case 'wv': case 'wo': return `layers.${layer}.attention.${name}.weight`;
    case 'w1': case 'w2': case 'w3': return `layers.${layer}.feed_forward.${name}.weight`;
  }
}

/** The dimension a tensor is split on across model-parallel shards (export.py's rule). */
function splitDim(name: TensorName): 0 | 1 {
  return name === 'tokenEmbedding' || name === 'wo' || name === 'w2' ? 1 : 0;
}

/** A tensor of one shard: where its values are. */
interface ShardTensor {
  readonly name: string;
  readonly file: FileReader;
  readonly offset: number;
  readonly dtype: StoredPiece['dtype'];
  readonly shape: readonly number[];
}

/** The tensors of one consolidated.NN.pth. */
function readShard(f: FileReader): Map<string, ShardTensor> {
  const entries = readZipDirectory(f);
  const pkl = [...entries.values()].filter((e) => e.name.endsWith('/data.pkl') || e.name === 'data.pkl');
  if (pkl.length !== 1) throw new FormatError(f.path, `not a torch checkpoint (${pkl.length === 0 ? 'no' : 'several'} data.pkl)`);
  const prefix = pkl[0]!.name.slice(0, -'data.pkl'.length);
  const byteorder = entries.get(`${prefix}byteorder`);
  if (byteorder !== undefined) {
    const order = new TextDecoder().decode(f.bytes(byteorder.offset, Math.min(byteorder.size, 16)));
    if (order !== 'little') throw new FormatError(f.path, `byte order ${quote(order)} (only little-endian checkpoints are read)`);
  }
  if (pkl[0]!.size > MAX_PICKLE_BYTES) throw new FormatError(f.path, `data.pkl is ${pkl[0]!.size} bytes, too large for a state dict`);
  const root = unpickle(f.bytes(pkl[0]!.offset, pkl[0]!.size), f.path);
  if (!(root instanceof Map)) throw new FormatError(f.path, 'the checkpoint is not a dict of tensors');
  const out = new Map<string, ShardTensor>();
  for (const [key, value] of root as Map<PickleValue, PickleValue>) {
    if (typeof key !== 'string') throw new FormatError(f.path, 'a state dict key is not a string');
    const t = value as TensorRef;
    if (typeof t !== 'object' || t === null || t.kind !== 'tensor') throw new FormatError(f.path, `${key} is not a tensor`);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    // row-major and contiguous: stride[i] = product of the sizes after i
    let expect = 1;
    for (let i = t.shape.length - 1; i >= 0; i--) {
      if (t.shape[i]! > 1 && t.stride[i] !== expect) throw new FormatError(f.path, `tensor ${key} is not contiguous (stride [${t.stride.join(', ')}])`);
      expect *= t.shape[i]!;
    }
    const data = entries.get(`${prefix}data/${t.storage.key}`);
    const size = FLOAT_DTYPE_BYTES[t.storage.dtype];
    if (data === undefined) throw new FormatError(f.path, `tensor ${key}: storage ${t.storage.key} is missing`);
    if (data.size !== t.storage.numel * size) throw new FormatError(f.path, `tensor ${key}: storage ${t.storage.key} holds ${data.size} bytes, not ${t.storage.numel} values`);
    if (t.offset + numel > t.storage.numel) throw new FormatError(f.path, `tensor ${key} runs past the end of its storage`);
    out.set(key, { name: key, file: f, offset: data.offset + t.offset * size, dtype: t.storage.dtype, shape: t.shape });
  }
  return out;
}

/** The consolidated.NN.pth files of a folder: 00, 01, … until the first missing one. */
function shardPaths(dir: string): string[] {
  const paths: string[] = [];
  for (let i = 0; i < 100; i++) {
    const p = joinPath(dir, `consolidated.${String(i).padStart(2, '0')}.pth`);
    if (!existsSync(p)) break;
    paths.push(p);
  }
  if (paths.length === 0) throw new FormatError(dir, 'no consolidated.00.pth');
  return paths;
}

/** Opens a Meta checkpoint folder. */
export function openMetaFolder(dir: string): AssembledSource {
  const paramsPath = joinPath(dir, 'params.json');
  const params = readJsonFile(paramsPath);
  const field = (name: string, what: string): never => {
    throw new FormatError(paramsPath, `field "${name}": ${what}`);
  };
  const int = (name: string, fallback?: number): number => {
    const v = params[name];
    if (v === undefined || v === null) return fallback ?? field(name, 'missing');
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) field(name, `${quote(v)} is not a positive integer`);
    return v as number;
  };
  const num = (name: string, fallback: number): number => {
    const v = params[name];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) field(name, `${quote(v)} is not a number`);
    return v as number;
  };
  const dim = int('dim'), nLayers = int('n_layers'), nHeads = int('n_heads');
  const nKvHeads = int('n_kv_heads', nHeads);
  const readers: FileReader[] = [];
  try {
    const shards = shardPaths(dir).map((p) => {
      const f = new FileReader(p);
      readers.push(f);
      return readShard(f);
    });
    const first = shards[0]!;
    const emb = first.get('tok_embeddings.weight');
    const w1 = first.get('layers.0.feed_forward.w1.weight');
    if (emb === undefined || emb.shape.length !== 2) throw new FormatError(readers[0]!.path, 'missing tensor tok_embeddings.weight');
    if (w1 === undefined || w1.shape.length !== 2) throw new FormatError(readers[0]!.path, 'missing tensor layers.0.feed_forward.w1.weight');
    // the vocabulary and the hidden size from the tensors (Meta's params.json has vocab_size -1)
    const vocabSize = emb.shape[0]!;
    const hiddenDim = w1.shape[0]! * shards.length;
    const pv = params['vocab_size'];
    if (typeof pv === 'number' && pv > 0 && pv !== vocabSize) field('vocab_size', `${pv}, but tok_embeddings has ${vocabSize} rows`);
    if (pv !== undefined && typeof pv !== 'number') field('vocab_size', `${quote(pv)} is not a number`);
    const config: ModelConfig = {
      dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize,
      seqLen: int('max_seq_len', 2048),
      sharedClassifier: false,
      normEps: num('norm_eps', 1e-5),
      ropeTheta: num('rope_theta', 10000),
    };
    validateConfig(config, paramsPath);
    const tensors = new Map<TensorName, AssembledTensor[]>();
    const dtypes = new Set<string>();
    for (const [name, t] of first) {
      const target = engineName(name);
      if (target === 'ignore') continue;
      if (target === undefined) throw new FormatError(t.file.path, `tensor ${name} is not part of a Llama model`);
      const shape = tensorShape(config, target.name);
      if (target.layer >= shape.layers) throw new FormatError(t.file.path, `tensor ${name}: params.json has ${nLayers} layers`);
      const parts = shape.rows === 1 ? [t] : shards.map((s, i) => {
        const part = s.get(name);
        if (part === undefined) throw new FormatError(readers[i]!.path, `missing tensor ${name}`);
        return part;
      });
      const pieces: StoredPiece[] = [];
      let at = 0;
      for (const part of parts) {
        const want = shape.rows === 1 ? 1 : 2;
        if (part.shape.length !== want) throw new FormatError(part.file.path, `tensor ${name} has shape [${part.shape.join(', ')}]`);
        const rows = want === 1 ? 1 : part.shape[0]!, cols = want === 1 ? part.shape[0]! : part.shape[1]!;
        const axis = splitDim(target.name);
        pieces.push({ file: part.file, offset: part.offset, dtype: part.dtype, rows, cols, row0: axis === 0 ? at : 0, col0: axis === 1 ? at : 0, name: `${name} of ${part.file.path}` });
        at += axis === 0 ? rows : cols;
        dtypes.add(part.dtype);
      }
      const list = tensors.get(target.name) ?? new Array<AssembledTensor>(shape.layers);
      list[target.layer] = { pieces, rotateHalfHeadSize: 0 };
      tensors.set(target.name, list);
    }
    const wanted: TensorName[] = ['tokenEmbedding', 'rmsAtt', 'wq', 'wk', 'wv', 'wo', 'rmsFfn', 'w1', 'w2', 'w3', 'rmsFinal', 'wcls'];
    for (const t of wanted) {
      for (let l = 0; l < tensorShape(config, t).layers; l++) {
        if (tensors.get(t)?.[l] === undefined) throw new FormatError(readers[0]!.path, `missing tensor ${metaTensorName(t, l)}`);
      }
    }
    const tokenizerPath = firstExisting([joinPath(dir, 'tokenizer.model'), joinPath(folderOf(dir.replace(/\/+$/, '')), 'tokenizer.model')]);
    return new AssembledSource({
      path: dir, format: `Meta consolidated.pth (${[...dtypes].sort().join('+')}${shards.length > 1 ? `, ${shards.length} shards` : ''})`,
      config, tensors, files: readers,
      ...(tokenizerPath !== undefined ? { tokenizer: { path: tokenizerPath } } : {}),
    });
  } catch (err) {
    for (const f of readers) f.close();
    throw err;
  }
}
