// Writing torch checkpoints (.pth) as torch.save does, and Meta checkpoint folders from any
// ModelSource: params.json + consolidated.00.pth … (one per model-parallel shard, each tensor cut
// along the dimension meta-source.ts concatenates it on).
//
// A .pth is a zip of stored entries (zip.ts has the layout):
//   <name>/data.pkl     the state dict as a protocol-2 pickle: a dict of
//                       name → torch._utils._rebuild_tensor_v2(('storage', torch.<T>Storage, key,
//                       'cpu', numel), 0, size, stride, False, collections.OrderedDict())
//   <name>/byteorder    "little"
//   <name>/data/<key>   each tensor's values, row-major (entries aligned to 64 bytes, as torch does)
//   <name>/version      "3\n"
// Entries carry their CRC-32, patched into the local header once the data is written, and zip64
// fields when the archive passes 4 GiB. The file is written under a temporary name, fsynced and
// renamed into place.

import { TempFile, writeFileAtomic } from '../files.js';
import { type ModelConfig, normEps, ropeTheta } from './config.js';
import { encodeFloats, FLOAT_DTYPE_BYTES, type FloatDType } from './float-codecs.js';
import { metaTensorName } from './meta-source.js';
import { type ModelSource, tensorShape } from './source.js';
import type { TensorName } from './weights.js';

// ----------------------------------------------------------------------------------------------
// CRC-32 (zip's: reflected polynomial 0xEDB88320)

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

function crc32(crc: number, b: Uint8Array): number {
  let c = ~crc;
  for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

// ----------------------------------------------------------------------------------------------
// Pickle (protocol 2), just what a state dict of tensors needs

class PickleWriter {
  private readonly parts: number[] = [];
  private memo = 0;
  private readonly globals = new Map<string, number>();

  byte(...b: number[]): void {
    for (const x of b) this.parts.push(x);
  }
  private u32(v: number): void {
    this.byte(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  }
  put(): void {
    const m = this.memo++;
    if (m < 256) this.byte(0x71, m); // BINPUT
    else { this.byte(0x72); this.u32(m); } // LONG_BINPUT
  }
  str(s: string): void {
    const b = new TextEncoder().encode(s);
    this.byte(0x58); // BINUNICODE
    this.u32(b.length);
    for (const x of b) this.parts.push(x);
    this.put();
  }
  int(v: number): void {
    if (v >= 0 && v < 256) this.byte(0x4b, v); // BININT1
    else if (v >= 0 && v < 65536) this.byte(0x4d, v & 0xff, v >> 8); // BININT2
    else if (v >= 0 && v < 2 ** 31) { this.byte(0x4a); this.u32(v); } // BININT
    else { // LONG1, 8 bytes
      this.byte(0x8a, 8);
      let x = BigInt(v);
      for (let i = 0; i < 8; i++, x >>= 8n) this.byte(Number(x & 0xffn));
    }
  }
  global(module: string, name: string): void {
    const key = `${module}\n${name}\n`;
    const m = this.globals.get(key);
    if (m !== undefined) {
      this.byte(0x68, m); // BINGET (fewer than 256 distinct globals)
      return;
    }
    this.byte(0x63); // GLOBAL
    for (const x of new TextEncoder().encode(key)) this.parts.push(x);
    this.globals.set(key, this.memo);
    this.put();
  }
  tuple(items: Array<() => void>): void {
    if (items.length === 0) { this.byte(0x29); return; } // EMPTY_TUPLE
    this.byte(0x28); // MARK
    for (const f of items) f();
    this.byte(0x74); // TUPLE
    this.put();
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

const STORAGE: Readonly<Record<FloatDType, string>> = { F32: 'FloatStorage', F16: 'HalfStorage', BF16: 'BFloat16Storage' };

/** One tensor of a .pth: its name, dtype, shape, and its values written into a callback in order. */
export interface PthTensor {
  readonly name: string;
  readonly dtype: FloatDType;
  readonly shape: readonly number[];
  /** Yields the tensor's values (as float32), in order, in pieces of any size. */
  values(): Iterable<Float32Array>;
}

/** data.pkl for `tensors` (storage key = index). */
function statePickle(tensors: readonly PthTensor[]): Uint8Array {
  const p = new PickleWriter();
  p.byte(0x80, 2); // PROTO 2
  p.byte(0x7d); // EMPTY_DICT
  p.put();
  p.byte(0x28); // MARK
  tensors.forEach((t, key) => {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    const stride = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    p.str(t.name);
    p.global('torch._utils', '_rebuild_tensor_v2');
    p.tuple([
      () => {
        p.tuple([() => p.str('storage'), () => p.global('torch', STORAGE[t.dtype]), () => p.str(String(key)), () => p.str('cpu'), () => p.int(numel)]);
        p.byte(0x51); // BINPERSID
      },
      () => p.int(0),
      () => p.tuple(t.shape.map((d) => () => p.int(d))),
      () => p.tuple(stride.map((s) => () => p.int(s))),
      () => p.byte(0x89), // NEWFALSE
      () => {
        p.global('collections', 'OrderedDict');
        p.byte(0x29, 0x52); // EMPTY_TUPLE, REDUCE
        p.put();
      },
    ]);
    p.byte(0x52); // REDUCE
    p.put();
  });
  p.byte(0x75, 0x2e); // SETITEMS, STOP
  return p.bytes();
}

/** Writes `tensors` as a torch.save zip at `path` (archive folder name: the file name without .pth). */
export function writePth(path: string, tensors: readonly PthTensor[]): void {
  const archive = (path.split('/').pop() ?? 'archive').replace(/\.pth$/, '') || 'archive';
  const file = new TempFile(path);
  const central: Uint8Array[] = [];
  const write = (b: Uint8Array): void => file.write(b);
  /** One stored entry; `data` yields its bytes; `size` must be their total. */
  const entry = (name: string, size: number, data: Iterable<Uint8Array>): void => {
    const nameBytes = new TextEncoder().encode(name);
    const zip64 = size >= 0xffffffff || file.position >= 0xffffffff;
    // extra fields: zip64 sizes (local), then padding so the data starts at a multiple of 64
    const base = file.position + 30 + nameBytes.length + (zip64 ? 20 : 0);
    const pad = (64 - ((base + 4) % 64)) % 64;
    const extra = new Uint8Array((zip64 ? 20 : 0) + 4 + pad);
    const ev = new DataView(extra.buffer);
    let e = 0;
    if (zip64) {
      ev.setUint16(0, 1, true); ev.setUint16(2, 16, true);
      ev.setBigUint64(4, BigInt(size), true); ev.setBigUint64(12, BigInt(size), true);
      e = 20;
    }
    ev.setUint16(e, 0x4246, true); ev.setUint16(e + 2, pad, true); // "FB" padding field, as torch writes
    const local = new Uint8Array(30);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, zip64 ? 45 : 20, true);
    lv.setUint32(18, zip64 ? 0xffffffff : size, true);
    lv.setUint32(22, zip64 ? 0xffffffff : size, true);
    lv.setUint16(26, nameBytes.length, true);
    lv.setUint16(28, extra.length, true);
    const headerAt = file.position;
    write(local);
    write(nameBytes);
    write(extra);
    let crc = 0;
    let written = 0;
    for (const chunk of data) {
      crc = crc32(crc, chunk);
      written += chunk.length;
      write(chunk);
    }
    if (written !== size) throw new Error(`internal: entry ${name} is ${written} bytes, not ${size}`);
    const crcBytes = new Uint8Array(4);
    new DataView(crcBytes.buffer).setUint32(0, crc, true);
    file.writeAt(crcBytes, headerAt + 14);
    // its central directory record (64-bit fields in a zip64 extra when needed)
    const big = zip64 || headerAt >= 0xffffffff;
    const cextra = new Uint8Array(big ? 28 : 0);
    if (big) {
      const cv = new DataView(cextra.buffer);
      cv.setUint16(0, 1, true); cv.setUint16(2, 24, true);
      cv.setBigUint64(4, BigInt(size), true); cv.setBigUint64(12, BigInt(size), true); cv.setBigUint64(20, BigInt(headerAt), true);
    }
    const rec = new Uint8Array(46 + nameBytes.length + cextra.length);
    const rv = new DataView(rec.buffer);
    rv.setUint32(0, 0x02014b50, true);
    rv.setUint16(4, big ? 45 : 20, true);
    rv.setUint16(6, big ? 45 : 20, true);
    rv.setUint32(16, crc, true);
    rv.setUint32(20, big ? 0xffffffff : size, true);
    rv.setUint32(24, big ? 0xffffffff : size, true);
    rv.setUint16(28, nameBytes.length, true);
    rv.setUint16(30, cextra.length, true);
    rv.setUint32(42, big ? 0xffffffff : headerAt, true);
    rec.set(nameBytes, 46);
    rec.set(cextra, 46 + nameBytes.length);
    central.push(rec);
  };
  try {
    const pkl = statePickle(tensors);
    entry(`${archive}/data.pkl`, pkl.length, [pkl]);
    const little = new TextEncoder().encode('little');
    entry(`${archive}/byteorder`, little.length, [little]);
    tensors.forEach((t, key) => {
      const size = FLOAT_DTYPE_BYTES[t.dtype];
      const numel = t.shape.reduce((a, b) => a * b, 1);
      entry(`${archive}/data/${key}`, numel * size, (function* () {
        for (const v of t.values()) {
          const b = new Uint8Array(v.length * size);
          encodeFloats(t.dtype, v, b, v.length);
          yield b;
        }
      })());
    });
    const version = new TextEncoder().encode('3\n');
    entry(`${archive}/version`, version.length, [version]);
    // central directory, zip64 end record + locator, end record
    const dirStart = file.position;
    for (const rec of central) write(rec);
    const dirSize = file.position - dirStart;
    const zip64 = dirStart >= 0xffffffff || central.length >= 0xffff;
    if (zip64) {
      const rec = new Uint8Array(56);
      const v = new DataView(rec.buffer);
      v.setUint32(0, 0x06064b50, true); v.setBigUint64(4, 44n, true); v.setUint16(12, 45, true); v.setUint16(14, 45, true);
      v.setBigUint64(24, BigInt(central.length), true); v.setBigUint64(32, BigInt(central.length), true);
      v.setBigUint64(40, BigInt(dirSize), true); v.setBigUint64(48, BigInt(dirStart), true);
      const recAt = file.position;
      write(rec);
      const loc = new Uint8Array(20);
      const lv = new DataView(loc.buffer);
      lv.setUint32(0, 0x07064b50, true); lv.setBigUint64(8, BigInt(recAt), true); lv.setUint32(16, 1, true);
      write(loc);
    }
    const end = new Uint8Array(22);
    const ev = new DataView(end.buffer);
    ev.setUint32(0, 0x06054b50, true);
    ev.setUint16(8, zip64 ? 0xffff : central.length, true);
    ev.setUint16(10, zip64 ? 0xffff : central.length, true);
    ev.setUint32(12, zip64 ? 0xffffffff : dirSize, true);
    ev.setUint32(16, zip64 ? 0xffffffff : dirStart, true);
    write(end);
    file.commit();
  } catch (err) {
    file.abort();
    throw err;
  }
}

// ----------------------------------------------------------------------------------------------
// Meta folders

/**
 * params.json of a model, in Meta's keys only (Meta's code passes them all to ModelArgs, which
 * refuses others): the hidden size as multiple_of (and ffn_dim_multiplier when no multiple_of
 * gives it) under Meta's rule hidden = multiple_of · ⌈int(m · ⌊8·dim/3⌋) / multiple_of⌉. The
 * context length is not recorded (Meta's code takes it at run time); rope_theta only when not 10000.
 */
export function metaParamsJson(c: ModelConfig): Record<string, unknown> {
  const h0 = Math.floor((8 * c.dim) / 3);
  let multipleOf = 0;
  for (let m = 1; m <= c.hiddenDim && multipleOf === 0; m++) if (m * Math.ceil(h0 / m) === c.hiddenDim) multipleOf = m;
  const ffn = multipleOf === 0 ? { multiple_of: 1, ffn_dim_multiplier: (c.hiddenDim + 0.5) / h0 } : { multiple_of: multipleOf };
  return {
    dim: c.dim, n_layers: c.nLayers, n_heads: c.nHeads, n_kv_heads: c.nKvHeads, vocab_size: c.vocabSize,
    ...ffn, norm_eps: normEps(c), ...(ropeTheta(c) !== 10000 ? { rope_theta: ropeTheta(c) } : {}),
  };
}

/** Writes `source` as a Meta folder's files into `dir` (which exists): params.json and `shards` .pth files. */
export function writeMetaFiles(dir: string, source: ModelSource, dtype: FloatDType, shards = 1): string[] {
  const c = source.config;
  const names: Array<[TensorName, number]> = [['tokenEmbedding', 0]];
  for (let l = 0; l < c.nLayers; l++) for (const t of ['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3', 'rmsAtt', 'rmsFfn'] as const) names.push([t, l]);
  names.push(['rmsFinal', 0], ['wcls', 0]); // Meta always stores output.weight
  for (const [t] of names) {
    const { rows, cols } = tensorShape(c, t === 'wcls' ? 'tokenEmbedding' : t);
    const dim1 = t === 'tokenEmbedding' || t === 'wo' || t === 'w2';
    if (rows > 1 && (dim1 ? cols : rows) % shards !== 0) throw new RangeError(`${metaTensorName(t, 0)} cannot be split in ${shards} equal parts`);
  }
  const files = ['params.json'];
  writeFileAtomic(`${dir}/params.json`, [new TextEncoder().encode(JSON.stringify(metaParamsJson(c)) + '\n')]);
  let buf = new Float32Array(0);
  for (let k = 0; k < shards; k++) {
    const tensors: PthTensor[] = names.map(([t, layer]) => {
      const read: TensorName = t === 'wcls' && c.sharedClassifier ? 'tokenEmbedding' : t;
      const { rows, cols } = tensorShape(c, read);
      const dim1 = t === 'tokenEmbedding' || t === 'wo' || t === 'w2';
      const isNorm = rows === 1;
      const r0 = isNorm || dim1 ? 0 : (k * rows) / shards, nr = isNorm || dim1 ? rows : rows / shards;
      const c0 = dim1 ? (k * cols) / shards : 0, nc = dim1 ? cols / shards : cols;
      return {
        name: metaTensorName(t, layer), dtype, shape: isNorm ? [cols] : [nr, nc],
        *values(): Generator<Float32Array> {
          const step = Math.max(1, Math.floor((1 << 20) / cols));
          if (buf.length < Math.min(step, nr) * cols) buf = new Float32Array(Math.min(step, nr) * cols);
          for (let r = 0; r < nr; r += step) {
            const n = Math.min(step, nr - r);
            const v = buf.subarray(0, n * cols);
            source.read(read, layer, r0 + r, n, v);
            if (nc === cols) yield v.slice();
            else for (let i = 0; i < n; i++) yield v.slice(i * cols + c0, i * cols + c0 + nc);
          }
        },
      };
    });
    const name = `consolidated.${String(k).padStart(2, '0')}.pth`;
    writePth(`${dir}/${name}`, tensors);
    files.push(name);
  }
  return files;
}
