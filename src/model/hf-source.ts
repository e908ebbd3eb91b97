// A Hugging Face model folder (LlamaForCausalLM) as a ModelSource.
//
//   config.json                        the shape (checked field by field; anything this engine
//                                      does not compute — rope_scaling, biases, another
//                                      architecture or activation — is refused, naming the field)
//   model.safetensors                  the weights, or several shards listed by
//   model-0000N-of-0000M.safetensors   model.safetensors.index.json's weight_map
//   tokenizer.model / tokenizer.json   the tokenizer (SentencePiece model preferred)
//   tokenizer_config.json              chat_template, bos_token, eos_token (optional)
//
// Tensor names → engine tensors (L = layer):
//   model.embed_tokens.weight                 tokenEmbedding (vocab, dim)
//   model.layers.L.input_layernorm.weight     rmsAtt          post_attention_layernorm  rmsFfn
//   model.layers.L.self_attn.q_proj.weight    wq (rotate-half rows, nHeads heads)
//                           k_proj            wk (rotate-half rows, nKvHeads heads)
//                           v_proj, o_proj    wv, wo
//   model.layers.L.mlp.gate_proj / down_proj / up_proj    w1 / w2 / w3
//   model.norm.weight                         rmsFinal
//   lm_head.weight                            wcls (absent when tie_word_embeddings)
// Tensors may be F32, F16 or BF16; every one is checked against the config's shape.

import { existsSync } from 'node:fs';
import { FormatError, quote } from '../errors.js';
import { readWholeFile } from '../files.js';
import { type AssembledTensor, AssembledSource, type StoredPiece } from './assembled-source.js';
import { type ModelConfig, headSize, validateConfig } from './config.js';
import { FileReader, firstExisting, joinPath } from './file-reader.js';
import { isFloatDType } from './float-codecs.js';
import { readSafetensorsHeader, type SafetensorsEntry } from './safetensors.js';
import { type ChatTemplateRef, tensorShape } from './source.js';
import type { TensorName } from './weights.js';

/** Reads a JSON file of the folder; a missing or malformed one is a one-line error. */
export function readJsonFile(path: string): Record<string, unknown> {
  const bytes = readWholeFile(path); // (a missing file, a folder, a FIFO: one line)
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new FormatError(path, 'not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new FormatError(path, `not valid JSON (${(err as Error).message.split('\n')[0]})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new FormatError(path, 'not a JSON object');
  return json as Record<string, unknown>;
}

/** The engine's ModelConfig from a LlamaForCausalLM config.json (defaults are LlamaConfig's). */
export function parseHfConfig(json: Record<string, unknown>, file: string): ModelConfig {
  const field = (name: string, what: string): never => {
    throw new FormatError(file, `field "${name}": ${what}`);
  };
  const int = (name: string, fallback?: number): number => {
    const v = json[name];
    if (v === undefined || v === null) return fallback ?? field(name, 'missing (a LlamaForCausalLM config needs it)');
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) field(name, `${quote(v)} is not a positive integer`);
    return v as number;
  };
  const num = (name: string, fallback: number): number => {
    const v = json[name];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) field(name, `${quote(v)} is not a number`);
    return v as number;
  };
  const arch = json['architectures'];
  if (arch !== undefined && arch !== null && !(Array.isArray(arch) && arch.includes('LlamaForCausalLM'))) {
    field('architectures', `${quote(arch)} is not LlamaForCausalLM (only Llama-architecture models run here)`);
  }
  if (json['model_type'] !== undefined && json['model_type'] !== 'llama') field('model_type', `${quote(json['model_type'])} is not "llama"`);
  if (json['rope_scaling'] !== undefined && json['rope_scaling'] !== null) field('rope_scaling', `${quote(json['rope_scaling'])}: RoPE scaling is not supported`);
  for (const name of ['attention_bias', 'mlp_bias']) {
    if (json[name] !== undefined && json[name] !== false) field(name, `${quote(json[name])}: biases are not supported`);
  }
  if (json['hidden_act'] !== undefined && json['hidden_act'] !== 'silu') field('hidden_act', `${quote(json['hidden_act'])} is not "silu" (SwiGLU)`);
  const tie = json['tie_word_embeddings'];
  if (tie !== undefined && typeof tie !== 'boolean') field('tie_word_embeddings', `${quote(tie)} is not true or false`);
  const dim = int('hidden_size');
  const nHeads = int('num_attention_heads');
  const config: ModelConfig = {
    dim,
    hiddenDim: int('intermediate_size'),
    nLayers: int('num_hidden_layers'),
    nHeads,
    nKvHeads: int('num_key_value_heads', nHeads),
    vocabSize: int('vocab_size'),
    seqLen: int('max_position_embeddings', 2048),
    sharedClassifier: tie === true,
    normEps: num('rms_norm_eps', 1e-6),
    ropeTheta: num('rope_theta', 10000),
  };
  if (json['head_dim'] !== undefined && json['head_dim'] !== null && json['head_dim'] !== dim / nHeads) {
    field('head_dim', `${quote(json['head_dim'])} is not hidden_size / num_attention_heads = ${dim / nHeads}`);
  }
  validateConfig(config, file);
  return config;
}

/** A special token as tokenizer_config.json writes it: a string or an AddedToken object. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/** The chat template of a tokenizer_config.json, if it has one (a string, or a list with a "default"). */
export function readChatTemplate(path: string): ChatTemplateRef | undefined {
  if (!existsSync(path)) return undefined;
  const json = readJsonFile(path);
  let t = json['chat_template'];
  if (Array.isArray(t)) t = (t.find((e) => (e as { name?: unknown })?.name === 'default') as { template?: unknown } | undefined)?.template;
  if (t === undefined || t === null) return undefined;
  if (typeof t !== 'string') throw new FormatError(path, 'field "chat_template" is not a string');
  return { template: t, bosToken: tokenContent(json['bos_token']) ?? '<s>', eosToken: tokenContent(json['eos_token']) ?? '</s>', file: path };
}

/** Engine tensor and layer of a Hugging Face tensor name; 'ignore' for tensors that carry no weights. */
function engineName(name: string): { name: TensorName; layer: number } | 'ignore' | undefined {
  if (name === 'model.embed_tokens.weight') return { name: 'tokenEmbedding', layer: 0 };
  if (name === 'model.norm.weight') return { name: 'rmsFinal', layer: 0 };
  if (name === 'lm_head.weight') return { name: 'wcls', layer: 0 };
  const m = /^model\.layers\.(\d{1,6})\.(.+)$/.exec(name);
  if (m === null) return undefined;
  const layer = Number(m[1]);
  const map: Record<string, TensorName> = {
    'input_layernorm.weight': 'rmsAtt', 'post_attention_layernorm.weight': 'rmsFfn',
    'self_attn.q_proj.weight': 'wq', 'self_attn.k_proj.weight': 'wk', 'self_attn.v_proj.weight': 'wv', 'self_attn.o_proj.weight': 'wo',
    'mlp.gate_proj.weight': 'w1', 'mlp.down_proj.weight': 'w2', 'mlp.up_proj.weight': 'w3',
  };
  if (m[2] === 'self_attn.rotary_emb.inv_freq') return 'ignore'; // older checkpoints store RoPE's frequencies
  const t = map[m[2]!];
  return t === undefined ? undefined : { name: t, layer };
}

/** Hugging Face's name of engine tensor `name`, layer `layer`. */
export function hfTensorName(name: TensorName, layer: number): string {
  switch (name) {
    case 'tokenEmbedding': return 'model.embed_tokens.weight';
    case 'rmsFinal': return 'model.norm.weight';
    case 'wcls': return 'lm_head.weight';
    case 'rmsAtt': return `model.layers.${layer}.input_layernorm.weight`;
    case 'rmsFfn': return `model.layers.${layer}.post_attention_layernorm.weight`;
    case 'wq': return `model.layers.${layer}.self_attn.q_proj.weight`;
    case 'wk': return `model.layers.${layer}.self_attn.k_proj.weight`;
    case 'wv': return `model.layers.${layer}.self_attn.v_proj.weight`;
    case 'wo': return `model.layers.${layer}.self_attn.o_proj.weight`;
    case 'w1': return `model.layers.${layer}.mlp.gate_proj.weight`;
    case 'w2': return `model.layers.${layer}.mlp.down_proj.weight`;
    case 'w3': return `model.layers.${layer}.mlp.up_proj.weight`;
  }
}

/** A file name a weight_map may name: no folders, nothing hidden. */
const SHARD_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,200}\.safetensors$/;

/** The safetensors files of the folder: model.safetensors, or the shards of the index. */
function weightFiles(dir: string): { files: string[]; index?: { path: string; map: Map<string, string> } } {
  if (existsSync(joinPath(dir, 'model.safetensors'))) return { files: ['model.safetensors'] };
  const indexPath = joinPath(dir, 'model.safetensors.index.json');
  if (!existsSync(indexPath)) {
    const other = ['pytorch_model.bin', 'pytorch_model.bin.index.json', 'model.gguf'].find((f) => existsSync(joinPath(dir, f)));
    throw new FormatError(dir, `no model.safetensors or model.safetensors.index.json${other ? ` (${other} is not read: convert it to safetensors)` : ''}`);
  }
  const json = readJsonFile(indexPath);
  const wm = json['weight_map'];
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) throw new FormatError(indexPath, 'field "weight_map" is not an object');
  const map = new Map<string, string>();
  for (const [name, file] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof file !== 'string' || !SHARD_NAME.test(file)) throw new FormatError(indexPath, `weight_map: ${quote(name)} maps to ${quote(file)}, not a .safetensors file in this folder`);
    map.set(name, file);
  }
  if (map.size === 0) throw new FormatError(indexPath, 'weight_map is empty');
  return { files: [...new Set(map.values())].sort(), index: { path: indexPath, map } };
}

/** Opens a Hugging Face model folder. */
export function openHfFolder(dir: string): AssembledSource {
  const configPath = joinPath(dir, 'config.json');
  const config = parseHfConfig(readJsonFile(configPath), configPath);
  const { files: names, index } = weightFiles(dir);
  const readers: FileReader[] = [];
  try {
    const found = new Map<string, { entry: SafetensorsEntry; file: FileReader }>();
    for (const n of names) {
      const f = new FileReader(joinPath(dir, n));
      readers.push(f);
      for (const [name, entry] of readSafetensorsHeader(f)) {
        const prev = found.get(name);
        if (prev !== undefined) throw new FormatError(f.path, `tensor ${name} is also in ${prev.file.path}`);
        if (index !== undefined && index.map.get(name) !== n) {
          throw new FormatError(f.path, `tensor ${name} is here, but ${index.path} puts it in ${index.map.get(name) ?? 'no file'}`);
        }
        found.set(name, { entry, file: f });
      }
    }
    if (index !== undefined) {
      for (const [name, file] of index.map) {
        if (!found.has(name)) throw new FormatError(index.path, `weight_map lists ${name} in ${file}, which does not hold it`);
      }
    }
    const tensors = new Map<TensorName, AssembledTensor[]>();
    const dtypes = new Set<string>();
    for (const [name, { entry, file }] of found) {
      const target = engineName(name);
      if (target === 'ignore') continue;
      if (name.endsWith('.bias')) throw new FormatError(file.path, `tensor ${name}: biases are not supported`);
      if (target === undefined) throw new FormatError(file.path, `tensor ${name} is not part of a LlamaForCausalLM model`);
      if (target.name === 'wcls' && config.sharedClassifier) continue; // tied: transformers uses the embedding
      const shape = tensorShape(config, target.name);
      if (target.layer >= shape.layers) throw new FormatError(file.path, `tensor ${name}: the config has ${config.nLayers} layers`);
      const isNorm = shape.rows === 1;
      const want = isNorm ? [shape.cols] : [shape.rows, shape.cols];
      if (entry.shape.length !== want.length || entry.shape.some((d, i) => d !== want[i])) {
        throw new FormatError(file.path, `tensor ${name} has shape [${entry.shape.join(', ')}], config.json implies [${want.join(', ')}]`);
      }
      if (!isFloatDType(entry.dtype)) throw new FormatError(file.path, `tensor ${name}: dtype ${entry.dtype} is not supported (F32, F16, BF16)`);
      dtypes.add(entry.dtype);
      const piece: StoredPiece = { file, offset: entry.offset, dtype: entry.dtype, rows: shape.rows, cols: shape.cols, row0: 0, col0: 0, name };
      const hs = target.name === 'wq' || target.name === 'wk' ? headSize(config) : 0;
      const list = tensors.get(target.name) ?? new Array<AssembledTensor>(shape.layers);
      list[target.layer] = { pieces: [piece], rotateHalfHeadSize: hs };
      tensors.set(target.name, list);
    }
    const wanted: TensorName[] = ['tokenEmbedding', 'rmsAtt', 'wq', 'wk', 'wv', 'wo', 'rmsFfn', 'w1', 'w2', 'w3', 'rmsFinal'];
    if (!config.sharedClassifier) wanted.push('wcls');
    for (const t of wanted) {
      const list = tensors.get(t);
      for (let l = 0; l < tensorShape(config, t).layers; l++) {
        if (list?.[l] === undefined) throw new FormatError(dir, `missing tensor ${hfTensorName(t, l)}${t === 'wcls' ? ' (or set tie_word_embeddings)' : ''}`);
      }
    }
    const tokenizerPath = firstExisting([joinPath(dir, 'tokenizer.model'), joinPath(dir, 'tokenizer.json')]);
    const chatTemplate = readChatTemplate(joinPath(dir, 'tokenizer_config.json'));
    const shards = names.length > 1 ? `, ${names.length} shards` : '';
    return new AssembledSource({
      path: dir, format: `Hugging Face safetensors (${[...dtypes].sort().join('+')}${shards})`, config, tensors, files: readers,
      ...(tokenizerPath !== undefined ? { tokenizer: { path: tokenizerPath } } : {}),
      ...(chatTemplate !== undefined ? { chatTemplate } : {}),
    });
  } catch (err) {
    for (const f of readers) f.close();
    throw err;
  }
}
