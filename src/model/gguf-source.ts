// A GGUF llama model (llama.cpp's file; container in gguf.ts, keys and names in gguf-llama.ts) as a
// ModelSource. Tensors are read a range of rows at a time and decoded to float32 (gguf-blocks.ts):
// F32, F16, BF16 and Q8_0 give the stored values exactly; Q4_0, Q4_K, Q5_K and Q6_K their
// dequantized values.
//
// To run with int8 weights (the loader's Q8_0 path), a file whose matrices are quantized offers
// readQ8 with groups of 32 — the block size of ggml's Q8_0, whose blocks are the engine's Q8_0 groups
// (int8 values and an f16 scale, exact as a float32 scale): Q8_0 and Q4_0 blocks are handed over
// without loss; K-quant (and float) tensors are dequantized and quantized to the engine's Q8_0
// (scale = max|w|/127 per 32 values), which is what `llama2 info` reports.
//
// The tokenizer is in the file's metadata (tokenizer.ggml.*): the TokenizerRef is the file itself,
// which loadTokenizer reads. tokenizer.chat_template, when present, is the chat template.

import { FormatError } from '../errors.js';
import { quantize } from '../kernels/q8-js.js';
import type { ModelConfig } from './config.js';
import { GgufFile, type GgufTensorInfo, ValueType, ggmlType, readGgufHeader } from './gguf.js';
import { DECODABLE_TYPES, decodeValues, QK, splitToQ8, splitsToQ8 } from './gguf-blocks.js';
import { ggufTensorName, llamaConfigFromGguf, llamaTensorList } from './gguf-llama.js';
import { type ChatTemplateRef, type ModelSource, type StorageType, type TokenizerRef, tensorShape } from './source.js';
import type { TensorName } from './weights.js';

const FLOAT_TYPE_NAMES: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16']);
const READABLE = [...DECODABLE_TYPES].map((t) => ggmlType(t).name).join(', ');

export class GgufSource implements ModelSource {
  readonly format: string;
  readonly config: ModelConfig;
  readonly tokenizer?: TokenizerRef;
  readonly chatTemplate?: ChatTemplateRef;
  readonly q8GroupSize?: number;
  private readonly file: GgufFile;
  /** The GGUF tensor of each engine tensor, per layer. */
  private readonly tensors = new Map<TensorName, GgufTensorInfo[]>();
  private bytes = new Uint8Array(0);
  private floats = new Float32Array(0);

  constructor(readonly path: string) {
    const h = readGgufHeader(path);
    const c = llamaConfigFromGguf(h);
    this.config = c;
    for (const [name, layer] of llamaTensorList(c)) {
      const gname = ggufTensorName(name, layer);
      const t = h.tensorByName.get(gname);
      if (t === undefined) throw new FormatError(path, `has no tensor ${gname}`);
      if (!DECODABLE_TYPES.has(t.type.id)) {
        throw new FormatError(path, `tensor ${gname} is ${t.type.name}, which llama2ts does not read (it reads ${READABLE})`);
      }
      const { rows, cols } = tensorShape(c, name);
      const dims = rows === 1 ? [cols] : [cols, rows];
      const got = [...t.dims];
      while (got.length > dims.length && got[got.length - 1] === 1) got.pop(); // [64, 1] is [64]
      if (got.length !== dims.length || got.some((d, i) => d !== dims[i])) {
        throw new FormatError(path, `tensor ${gname} has dimensions [${t.dims.join(', ')}], the model's shape needs [${dims.join(', ')}]`);
      }
      const list = this.tensors.get(name) ?? [];
      list.push(t);
      this.tensors.set(name, list);
    }
    const matrixTypes = new Set<string>();
    const allTypes = new Set<string>();
    for (const [name, list] of this.tensors) {
      for (const t of list) {
        allTypes.add(t.type.name);
        if (tensorShape(c, name).rows > 1) matrixTypes.add(t.type.name);
      }
    }
    const quantized = [...matrixTypes].some((t) => !FLOAT_TYPE_NAMES.has(t));
    if (quantized) this.q8GroupSize = QK;
    // how each matrix type becomes the engine's Q8_0 when the model runs with int8 weights
    const how = (t: string): string => (t === 'Q8_0' || t === 'Q4_0' ? `${t} as stored` : FLOAT_TYPE_NAMES.has(t) ? `${t} quantized` : `${t} dequantized and requantized`);
    this.format = `GGUF v${h.version} (${[...allTypes].join(', ')})` +
      (quantized ? `; as int8, Q8_0 in groups of 32: ${[...matrixTypes].map(how).join(', ')}` : '');
    if (h.metadata.has('tokenizer.ggml.model')) this.tokenizer = { path };
    const template = h.metadata.get('tokenizer.chat_template');
    const tokens = h.metadata.get('tokenizer.ggml.tokens');
    if (template?.type === ValueType.STRING && tokens?.type === ValueType.ARRAY && tokens.itemType === ValueType.STRING) {
      const pieces = tokens.value as readonly string[];
      const piece = (key: string, fallback: string): string => {
        const v = h.metadata.get(key);
        return v !== undefined && typeof v.value === 'number' && pieces[v.value] !== undefined ? pieces[v.value]! : fallback;
      };
      this.chatTemplate = {
        template: template.value,
        bosToken: piece('tokenizer.ggml.bos_token_id', '<s>'),
        eosToken: piece('tokenizer.ggml.eos_token_id', '</s>'),
        file: path,
      };
    }
    this.file = new GgufFile(h);
  }

  storage(name: TensorName): StorageType | undefined {
    const list = this.tensors.get(name);
    return list === undefined ? undefined : [...new Set(list.map((t) => t.type.name))].join('/');
  }

  private tensor(name: TensorName, layer: number): GgufTensorInfo {
    const t = this.tensors.get(name)?.[layer];
    if (t === undefined) throw new RangeError(`${this.path} has no tensor ${name} layer ${layer}`);
    return t;
  }

  /** The raw bytes of values [first, first + count) of `t` (whole blocks) in the byte scratch. */
  private readBytes(t: GgufTensorInfo, first: number, count: number): Uint8Array {
    const n = (count / t.type.blockSize) * t.type.typeSize;
    if (this.bytes.length < n) this.bytes = new Uint8Array(n);
    const bytes = this.bytes.subarray(0, n);
    this.file.read(t, (first / t.type.blockSize) * t.type.typeSize, bytes);
    return bytes;
  }

  read(name: TensorName, layer: number, row: number, rows: number, dst: Float32Array): void {
    const t = this.tensor(name, layer);
    const { rows: total, cols } = tensorShape(this.config, name);
    if (!(row >= 0 && rows >= 0 && row + rows <= total)) throw new RangeError(`rows ${row}..${row + rows} of ${name} are outside its ${total}`);
    // rows are whole blocks (the parser checked ne[0] against the block size)
    decodeValues(t.type.id, this.readBytes(t, row * cols, rows * cols), dst, rows * cols);
  }

  readQ8(name: TensorName, layer: number, first: number, count: number, q: Int8Array, s: Float32Array): void {
    const t = this.tensor(name, layer);
    const { rows, cols } = tensorShape(this.config, name);
    if (first % QK !== 0 || count % QK !== 0 || first < 0 || first + count > rows * cols) {
      throw new RangeError(`Q8_0 values ${first}..${first + count} of ${name} are not whole groups of ${QK} within ${rows * cols}`);
    }
    if (splitsToQ8(t.type.id)) {
      // blocks of 32 are the groups (rows hold whole blocks, so the flattened order is the file's)
      splitToQ8(t.type.id, this.readBytes(t, first, count), count, q, s);
      return;
    }
    // dequantize the blocks covering the range, then quantize it in groups of 32
    const bs = t.type.blockSize;
    const start = Math.floor(first / bs) * bs;
    const end = Math.ceil((first + count) / bs) * bs;
    if (this.floats.length < end - start) this.floats = new Float32Array(end - start);
    const values = this.floats.subarray(0, end - start);
    decodeValues(t.type.id, this.readBytes(t, start, end - start), values, end - start);
    quantize(q, s, values.subarray(first - start, first - start + count), count, QK);
  }

  close(): void {
    this.file.close();
  }
}
