// A model read a part at a time (a RandomAccessFile: what the browser's engine worker makes of a
// local or cached file, a Blob read with FileReaderSync) loads exactly as from its path, and the
// loader never asks for more than a chunk at once: the file is never held whole.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { loadTransformer } from '../src/infer/load.js';
import type { RandomAccessFile } from '../src/model/file-reader.js';
import { openModelSource } from '../src/model/open.js';
import { needsRefdata, ref } from './refdata.js';

/** `path` as a RandomAccessFile that records the largest read and the bytes read in all. */
function partsOf(path: string): { file: RandomAccessFile; largest: () => number; total: () => number; close: () => void } {
  const fd = openSync(path, 'r');
  let largest = 0, total = 0;
  return {
    file: {
      name: 'parts.bin', size: statSync(path).size,
      readAt(dst, position) {
        largest = Math.max(largest, dst.byteLength);
        total += dst.byteLength;
        assert.equal(readSync(fd, dst, 0, dst.byteLength, position), dst.byteLength);
      },
    },
    largest: () => largest, total: () => total, close: () => closeSync(fd),
  };
}

for (const name of ['stories260K.bin', 'stories260K.v2.bin']) {
  test(`${name} read in parts: the logits of the path-loaded model, no read larger than a chunk, each byte once`, needsRefdata, () => {
    const path = ref('data', 'models', name);
    const parts = partsOf(path);
    try {
      const chunkFloats = 4096;
      const source = openModelSource(parts.file);
      const a = loadTransformer(source, undefined, { chunkFloats });
      source.close();
      const b = loadTransformer(path);
      for (const [token, pos] of [[1, 0], [300, 1], [17, 2]] as const) assert.deepEqual(a.forward(token, pos), b.forward(token, pos));
      const size = statSync(path).size;
      // a chunk: chunkFloats float32 values (16 KiB), or as many int8 values with their scales
      assert.ok(parts.largest() <= 4 * chunkFloats, `largest read ${parts.largest()} bytes of a ${size}-byte file`);
      assert.ok(parts.total() <= size * 1.01, `read ${parts.total()} bytes of a ${size}-byte file`);
    } finally {
      parts.close();
    }
  });
}
