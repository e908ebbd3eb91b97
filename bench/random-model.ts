// Random-weight models of any shape, made as fast as memory copies, for speed measurements only.
//
// `llama2 init` draws every weight from N(0, 0.02²) with model.py's initialisation — about 40–80 ns
// a value in JavaScript, a minute or more for 1.1B parameters, which a device session cannot spend.
// A benchmark needs the shape, not the values: this ModelSource copies each row from a table of
// 64 Ki normal values (N(0, 0.02²), drawn once) at an offset hashed from (tensor, layer, row), and
// offers Q8_0 matrices natively (int8 values from a table of the same values quantized at a fixed
// scale), so the loader takes them as they are. Norms are 1. Nothing is written to disk.

import type { ModelConfig } from '../src/model/config.js';
import { type ModelSource, tensorShape } from '../src/model/source.js';
import type { TensorName } from '../src/model/weights.js';
import { Rng } from '../src/train/rng.js';

const TABLE = 1 << 16;
const STD = 0.02;
/** Q8_0: int8 value v stands for v · Q8_SCALE; ±4σ spans the int8 range. */
const Q8_SCALE = (4 * STD) / 127;

const NAMES: readonly TensorName[] = ['tokenEmbedding', 'rmsAtt', 'wq', 'wk', 'wv', 'wo', 'rmsFfn', 'w1', 'w2', 'w3', 'rmsFinal', 'wcls'];

/** Options: Q8_0 matrices in groups of `q8GroupSize` (else float32). */
export interface RandomModelOptions {
  readonly q8GroupSize?: number;
  readonly seed?: number;
}

export function randomModelSource(config: ModelConfig, options: RandomModelOptions = {}): ModelSource {
  const rng = new Rng(options.seed ?? 1);
  const values = new Float32Array(TABLE);
  for (let i = 0; i < TABLE; i++) values[i] = rng.nextNormal() * STD;
  const q8 = new Int8Array(TABLE);
  for (let i = 0; i < TABLE; i++) q8[i] = Math.max(-127, Math.min(127, Math.round(values[i]! / Q8_SCALE)));
  /** A table offset for (tensor, layer, index) leaving room for `n` values. */
  const offset = (name: TensorName, layer: number, index: number, n: number): number => {
    let h = Math.imul(NAMES.indexOf(name) + 1, 0x9e3779b1) ^ Math.imul(layer + 1, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35);
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
    return ((h ^ (h >>> 13)) >>> 0) % (TABLE - n + 1);
  };
  const gs = options.q8GroupSize;
  const shape = `dim ${config.dim}, ${config.nLayers} layers`;
  return {
    path: `random:${shape}`,
    format: `random weights (${gs === undefined ? 'float32' : `Q8_0, groups of ${gs}`})`,
    config,
    storage: (name) => (name === 'wcls' && config.sharedClassifier ? undefined : gs !== undefined && !name.startsWith('rms') ? 'Q8_0' : 'F32'),
    read(name, layer, row, rows, dst) {
      const { cols } = tensorShape(config, name);
      if (name === 'rmsAtt' || name === 'rmsFfn' || name === 'rmsFinal') {
        dst.fill(1, 0, rows * cols);
        return;
      }
      if (cols > TABLE) throw new Error(`random model: rows of ${cols} values are longer than the table`);
      for (let r = 0; r < rows; r++) {
        const o = offset(name, layer, row + r, cols);
        dst.set(values.subarray(o, o + cols), r * cols);
      }
    },
    ...(gs === undefined ? {} : {
      q8GroupSize: gs,
      readQ8(name: TensorName, layer: number, first: number, count: number, q: Int8Array, s: Float32Array) {
        for (let done = 0; done < count;) {
          const n = Math.min(count - done, TABLE / 2);
          const o = offset(name, layer, (first + done) / gs, n);
          q.set(q8.subarray(o, o + n), done);
          done += n;
        }
        s.fill(Q8_SCALE, 0, count / gs);
      },
    }),
    close() {},
  };
}
