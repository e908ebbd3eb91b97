// The engine's tensors assembled from float matrices stored in files (F32, F16, BF16; row-major):
// what the Hugging Face and Meta readers share. One engine tensor (one layer's Wq, say) is made of
// pieces, each a stored (rows × cols) matrix placed at (row0, col0) of the engine tensor:
//
//   one piece             a Hugging Face tensor, or a Meta tensor from a single-file model
//   pieces down the rows  a Meta tensor split over model-parallel shards along dim 0 (Wq, W1, …)
//   pieces across         a Meta tensor split along dim 1 (the embedding, Wo, W2)
//
// and, for Hugging Face's Wq and Wk, a row order: engine row r is read from assembled row
// hfRotateHalfRow(r, headSize) (source.ts explains the permutation). Reading converts to float32
// through one scratch buffer that grows to the largest request.

import { FormatError } from '../errors.js';
import type { FileReader } from './file-reader.js';
import { decodeFloats, FLOAT_DTYPE_BYTES, type FloatDType } from './float-codecs.js';
import { type ChatTemplateRef, hfRotateHalfRow, type ModelSource, type StorageType, type TokenizerRef, tensorShape } from './source.js';
import type { ModelConfig } from './config.js';
import type { TensorName } from './weights.js';

/** A float matrix stored in a file, placed at (row0, col0) of the tensor it is part of. */
export interface StoredPiece {
  readonly file: FileReader;
  /** Byte offset of its first value. */
  readonly offset: number;
  readonly dtype: FloatDType;
  readonly rows: number;
  readonly cols: number;
  readonly row0: number;
  readonly col0: number;
  /** Its name in the file, for messages. */
  readonly name: string;
}

/** One layer of one engine tensor. */
export interface AssembledTensor {
  readonly pieces: readonly StoredPiece[];
  /** Rows are in rotate-half order with this head size (Hugging Face Wq/Wk); 0 = the engine's order. */
  readonly rotateHalfHeadSize: number;
}

export interface AssembledSourceParts {
  readonly path: string;
  readonly format: string;
  readonly config: ModelConfig;
  /** tensors.get(name)[layer] */
  readonly tensors: ReadonlyMap<TensorName, readonly AssembledTensor[]>;
  readonly files: readonly FileReader[];
  readonly tokenizer?: TokenizerRef;
  readonly chatTemplate?: ChatTemplateRef;
}

/** Checks that `pieces` tile a rows × cols tensor exactly (no gap, no overlap); `what` names it. */
export function checkTiling(path: string, what: string, rows: number, cols: number, pieces: readonly StoredPiece[]): void {
  let area = 0;
  for (const p of pieces) {
    if (p.row0 < 0 || p.col0 < 0 || p.row0 + p.rows > rows || p.col0 + p.cols > cols) {
      throw new FormatError(path, `${what}: ${p.name} (${p.rows} × ${p.cols}) does not fit a ${rows} × ${cols} tensor`);
    }
    area += p.rows * p.cols;
  }
  if (area !== rows * cols) throw new FormatError(path, `${what}: its parts hold ${area} values, the model needs ${rows} × ${cols}`);
}

export class AssembledSource implements ModelSource {
  readonly path: string;
  readonly format: string;
  readonly config: ModelConfig;
  readonly tokenizer?: TokenizerRef;
  readonly chatTemplate?: ChatTemplateRef;
  private readonly tensors: ReadonlyMap<TensorName, readonly AssembledTensor[]>;
  private readonly files: readonly FileReader[];
  private scratch = new Uint8Array(0);
  private headRows = new Float32Array(0);

  constructor(parts: AssembledSourceParts) {
    this.path = parts.path;
    this.format = parts.format;
    this.config = parts.config;
    this.tensors = parts.tensors;
    this.files = parts.files;
    if (parts.tokenizer !== undefined) this.tokenizer = parts.tokenizer;
    if (parts.chatTemplate !== undefined) this.chatTemplate = parts.chatTemplate;
    for (const [name, layers] of this.tensors) {
      const { rows, cols } = tensorShape(this.config, name);
      layers.forEach((t, l) => checkTiling(this.path, `${name} layer ${l}`, rows, cols, t.pieces));
    }
  }

  storage(name: TensorName): StorageType | undefined {
    const dtypes = new Set(this.tensors.get(name)?.flatMap((t) => t.pieces.map((p) => p.dtype)));
    return dtypes.size === 0 ? undefined : [...dtypes].join('+');
  }

  read(name: TensorName, layer: number, row: number, rows: number, dst: Float32Array): void {
    const t = this.tensors.get(name)?.[layer];
    const { cols, rows: total } = tensorShape(this.config, name);
    if (t === undefined || !(row >= 0 && rows >= 0 && row + rows <= total)) {
      throw new RangeError(`${this.path}: no rows ${row}..${row + rows} of ${name} layer ${layer}`);
    }
    const hs = t.rotateHalfHeadSize;
    if (hs === 0) {
      this.readAssembled(t, row, rows, dst, cols);
      return;
    }
    // whole heads of rotate-half rows into headRows, then each engine row from its place there
    if (this.headRows.length < hs * cols) this.headRows = new Float32Array(hs * cols);
    for (let r = row; r < row + rows;) {
      const head = Math.floor(r / hs);
      const end = Math.min(row + rows, (head + 1) * hs);
      this.readAssembled(t, head * hs, hs, this.headRows, cols);
      for (; r < end; r++) {
        const src = (hfRotateHalfRow(r, hs) - head * hs) * cols;
        dst.set(this.headRows.subarray(src, src + cols), (r - row) * cols);
      }
    }
  }

  /** Rows [row, row + rows) of the assembled tensor (in its stored order) into dst (row stride cols). */
  private readAssembled(t: AssembledTensor, row: number, rows: number, dst: Float32Array, cols: number): void {
    for (const p of t.pieces) {
      const r0 = Math.max(row, p.row0), r1 = Math.min(row + rows, p.row0 + p.rows);
      if (r1 <= r0) continue;
      const n = r1 - r0;
      const size = FLOAT_DTYPE_BYTES[p.dtype];
      const pos = p.offset + (r0 - p.row0) * p.cols * size;
      const out = dst.subarray((r0 - row) * cols);
      if (p.cols === cols) {
        // whole rows: contiguous in the file and in dst
        const count = n * cols;
        if (p.dtype === 'F32') {
          p.file.readFloats(out.subarray(0, count), pos);
        } else {
          const raw = this.raw(count * size);
          p.file.readInto(raw, pos);
          decodeFloats(p.dtype, raw, out, count);
        }
        continue;
      }
      // a column block: read its rows together, then place each row
      const count = n * p.cols;
      const raw = this.raw(count * 4 + count * size);
      const floats = new Float32Array(raw.buffer, 0, count);
      const bytes = raw.subarray(count * 4, count * 4 + count * size);
      p.file.readInto(bytes, pos);
      decodeFloats(p.dtype, bytes, floats, count);
      for (let i = 0; i < n; i++) out.set(floats.subarray(i * p.cols, (i + 1) * p.cols), i * cols + p.col0);
    }
  }

  /** The scratch buffer, at least `bytes` long (4-byte aligned, reused). */
  private raw(bytes: number): Uint8Array {
    if (this.scratch.length < bytes) this.scratch = new Uint8Array(Math.max(bytes, 2 * this.scratch.length));
    return this.scratch.subarray(0, bytes);
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}
