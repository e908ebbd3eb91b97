// A llama2.c checkpoint (v0, v1 or v2; layouts in checkpoint.ts) as a ModelSource. llama2.c stores
// exactly the engine's layout (interleaved RoPE rows, (out, in) matrices), so reading is a matter of
// offsets: a float32 row range is one read straight into the destination; a v2 (Q8_0) matrix is
// offered to the loader as it is (readQ8), or dequantized (value = q · scale of its group, groups
// over the flattened per-layer matrix).

import { FormatError } from '../errors.js';
import { type CheckpointHeader, HEADER_BYTES_V1, q8Order, readHeaderFrom, tensorOffsets } from './checkpoint.js';
import { bytesOf, FileReader, firstExisting, folderOf, joinPath, type ModelFile } from './file-reader.js';
import { type ModelSource, type StorageType, type TokenizerRef, tensorShape } from './source.js';
import type { TensorName } from './weights.js';

export class Llama2cSource implements ModelSource {
  readonly format: string;
  readonly config;
  readonly header: CheckpointHeader;
  readonly tokenizer?: TokenizerRef;
  readonly q8GroupSize?: number;
  private readonly file: FileReader;
  /** v0/v1: byte offset of each tensor; v2: of each matrix's layer 0 int8 values and of each norm. */
  private readonly offsets = new Map<TensorName, number>();
  private qScratch = new Int8Array(0);
  private sScratch = new Float32Array(0);

  readonly path: string;

  constructor(file: ModelFile) {
    this.file = new FileReader(file);
    this.path = this.file.path;
    const path = this.path;
    try {
      this.header = readHeaderFrom(this.file);
    } catch (err) {
      this.file.close();
      throw err;
    }
    const h = this.header;
    const c = h.config;
    this.config = c;
    if (h.format === 'v2') {
      const gs = h.groupSize!;
      this.q8GroupSize = gs;
      this.format = `llama2.c v2 (Q8_0, group size ${gs})`;
      for (const [name, numel] of q8Order(c)) {
        if (numel % gs !== 0) {
          this.file.close();
          throw new FormatError(path, `tensor ${name} (${numel} values) is not a whole number of groups of ${gs}`);
        }
      }
      let pos = HEADER_BYTES_V1;
      this.offsets.set('rmsAtt', pos);
      this.offsets.set('rmsFfn', (pos += 4 * c.nLayers * c.dim));
      this.offsets.set('rmsFinal', (pos += 4 * c.nLayers * c.dim));
      pos += 4 * c.dim;
      for (const [name, numel, count] of q8Order(c)) {
        this.offsets.set(name, pos);
        pos += count * (numel + (4 * numel) / gs);
      }
    } else {
      this.format = h.format === 'v0' ? 'llama2.c v0 (legacy, float32)' : 'llama2.c v1 (float32)';
      for (const [name, off] of tensorOffsets(h)) this.offsets.set(name, off);
    }
    // run.c's convention: tokenizer.bin beside the model, or tok<vocab>.bin (llama2.c's custom
    // vocabularies); bytes in memory have no folder
    if (typeof file === 'string') {
      const dir = folderOf(path);
      const tok = firstExisting([joinPath(dir, 'tokenizer.bin'), joinPath(dir, `tok${c.vocabSize}.bin`)]);
      if (tok !== undefined) this.tokenizer = { path: tok };
    }
  }

  storage(name: TensorName): StorageType | undefined {
    if (name === 'wcls' && this.config.sharedClassifier) return undefined;
    if (this.header.format !== 'v2') return 'F32';
    return name === 'rmsAtt' || name === 'rmsFfn' || name === 'rmsFinal' ? 'F32' : 'Q8_0';
  }

  read(name: TensorName, layer: number, row: number, rows: number, dst: Float32Array): void {
    const { cols } = this.check(name, layer, row, rows);
    const count = rows * cols;
    const isNorm = name === 'rmsAtt' || name === 'rmsFfn' || name === 'rmsFinal';
    if (this.q8GroupSize === undefined || isNorm) {
      const perLayer = tensorShape(this.config, name).rows * cols;
      this.file.readFloats(dst.subarray(0, count), this.offsets.get(name)! + 4 * (layer * perLayer + row * cols));
      return;
    }
    // dequantize the groups that cover the values asked for
    const gs = this.q8GroupSize;
    const first = row * cols;
    const g0 = Math.floor(first / gs);
    const g1 = Math.ceil((first + count) / gs);
    const n = (g1 - g0) * gs;
    if (this.qScratch.length < n) {
      this.qScratch = new Int8Array(n);
      this.sScratch = new Float32Array(n / gs);
    }
    const q = this.qScratch.subarray(0, n);
    const s = this.sScratch.subarray(0, g1 - g0);
    this.readQ8(name, layer, g0 * gs, n, q, s);
    for (let i = 0, o = first - g0 * gs; i < count; i++, o++) dst[i] = q[o]! * s[Math.floor(o / gs)]!;
  }

  readQ8(name: TensorName, layer: number, first: number, count: number, q: Int8Array, s: Float32Array): void {
    const gs = this.q8GroupSize;
    if (gs === undefined) throw new RangeError(`${this.path} stores no Q8_0 tensors`);
    const { rows, cols } = this.check(name, layer, 0, 1);
    const numel = rows * cols;
    if (first % gs !== 0 || count % gs !== 0 || first < 0 || first + count > numel) {
      throw new RangeError(`Q8_0 values ${first}..${first + count} of ${name} are not whole groups of ${gs} within ${numel}`);
    }
    // per layer: numel int8 values, then numel / gs float32 scales
    const base = this.offsets.get(name)! + layer * (numel + (4 * numel) / gs);
    this.file.readInto(bytesOf(q.subarray(0, count)), base + first);
    this.file.readFloats(s.subarray(0, count / gs), base + numel + (4 * first) / gs);
  }

  private check(name: TensorName, layer: number, row: number, rows: number): { rows: number; cols: number } {
    const shape = tensorShape(this.config, name);
    if (!this.offsets.has(name) || (name === 'wcls' && this.config.sharedClassifier)) throw new RangeError(`${this.path} has no tensor ${name}`);
    if (!(layer >= 0 && layer < shape.layers && row >= 0 && rows >= 0 && row + rows <= shape.rows)) {
      throw new RangeError(`rows ${row}..${row + rows} of ${name} layer ${layer} are outside its shape`);
    }
    return shape;
  }

  close(): void {
    this.file.close();
  }
}
