// The table of contents of a zip archive (what torch.save writes: a .pth is a zip of stored,
// uncompressed entries), read from its end without reading the entries:
//
//   end of central directory (EOCD)  22 bytes + comment, at the end: signature 0x06054b50, …,
//                                    entry count @10, directory size @12, directory offset @16
//   zip64 locator + record           when those fields are 0xffff / 0xffffffff (archives > 4 GiB,
//                                    which a 7B model's .pth is): signature 0x07064b50 right before
//                                    the EOCD gives the offset of the zip64 EOCD (0x06064b50), whose
//                                    entry count @32, directory size @40 and offset @48 are 64-bit
//   central directory entries        0x02014b50; method @10, sizes @20/@24, name length @28,
//                                    extra length @30, comment length @32, local header offset @42,
//                                    name @46; 64-bit sizes/offset in the zip64 extra field (id 1)
//   local header                     0x04034b50; name length @26, extra length @28; the data follows
//
// Only stored (method 0) entries are accepted; every offset and size is checked against the file.

import { FormatError } from '../errors.js';
import type { FileReader } from './file-reader.js';

export interface ZipEntry {
  readonly name: string;
  /** Absolute offset of the entry's data. */
  readonly offset: number;
  readonly size: number;
}

/** Largest central directory accepted (a 70B shard has a few thousand entries). */
const MAX_DIRECTORY_BYTES = 64 << 20;

export function readZipDirectory(f: FileReader): Map<string, ZipEntry> {
  const fail = (what: string): never => {
    throw new FormatError(f.path, `not a readable zip archive (${what})`);
  };
  if (f.size < 22) fail('too short');
  // the EOCD is within the last 22 + 65535 bytes (its comment is at most 65535 long)
  const tailLen = Math.min(f.size, 22 + 65535);
  const tail = f.bytes(f.size - tailLen, tailLen);
  const tv = new DataView(tail.buffer);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tv.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) fail('no end-of-central-directory record');
  let count = tv.getUint16(eocd + 10, true);
  let dirSize = tv.getUint32(eocd + 12, true);
  let dirOffset = tv.getUint32(eocd + 16, true);
  if (count === 0xffff || dirSize === 0xffffffff || dirOffset === 0xffffffff) {
    if (eocd < 20 || tv.getUint32(eocd - 20, true) !== 0x07064b50) fail('zip64 fields without a zip64 locator');
    const recOffset = u64(tv, eocd - 20 + 8, fail);
    if (recOffset + 56 > f.size) fail('zip64 record outside the file');
    const rec = f.bytes(recOffset, 56);
    const rv = new DataView(rec.buffer);
    if (rv.getUint32(0, true) !== 0x06064b50) fail('bad zip64 record');
    count = u64(rv, 32, fail);
    dirSize = u64(rv, 40, fail);
    dirOffset = u64(rv, 48, fail);
  }
  if (dirSize > MAX_DIRECTORY_BYTES || dirOffset + dirSize > f.size) fail('central directory outside the file');
  const dir = f.bytes(dirOffset, dirSize);
  const dv = new DataView(dir.buffer);
  const decoder = new TextDecoder('utf-8', { fatal: false });
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > dirSize || dv.getUint32(p, true) !== 0x02014b50) fail(`central directory entry ${i} is damaged`);
    const method = dv.getUint16(p + 10, true);
    let compressed = dv.getUint32(p + 20, true);
    let size = dv.getUint32(p + 24, true);
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    let local = dv.getUint32(p + 42, true);
    if (p + 46 + nameLen + extraLen + commentLen > dirSize) fail(`central directory entry ${i} is damaged`);
    const name = decoder.decode(dir.subarray(p + 46, p + 46 + nameLen));
    // zip64 extra field: the 64-bit values of the fields that hold 0xffffffff, in this order
    for (let e = p + 46 + nameLen; e + 4 <= p + 46 + nameLen + extraLen;) {
      const id = dv.getUint16(e, true);
      const len = dv.getUint16(e + 2, true);
      if (e + 4 + len > p + 46 + nameLen + extraLen) fail(`extra field of ${name} is damaged`);
      if (id === 1) {
        let q = e + 4;
        const next = (): number => {
          if (q + 8 > e + 4 + len) fail(`zip64 field of ${name} is short`);
          const v = u64(dv, q, fail);
          q += 8;
          return v;
        };
        if (size === 0xffffffff) size = next();
        if (compressed === 0xffffffff) compressed = next();
        if (local === 0xffffffff) local = next();
      }
      e += 4 + len;
    }
    p += 46 + nameLen + extraLen + commentLen;
    if (method !== 0) fail(`entry ${name} is compressed (method ${method}); only stored entries are read`);
    if (compressed !== size) fail(`entry ${name} has a stored size ${compressed} different from its size ${size}`);
    if (local + 30 > f.size) fail(`entry ${name} starts outside the file`);
    const lh = f.bytes(local, 30);
    const lv = new DataView(lh.buffer);
    if (lv.getUint32(0, true) !== 0x04034b50) fail(`local header of ${name} is damaged`);
    const offset = local + 30 + lv.getUint16(26, true) + lv.getUint16(28, true);
    if (offset + size > f.size) fail(`entry ${name} runs past the end of the file`);
    if (entries.has(name)) fail(`entry ${name} appears twice`);
    entries.set(name, { name, offset, size });
  }
  return entries;
}

function u64(dv: DataView, at: number, fail: (what: string) => never): number {
  const v = dv.getUint32(at, true) + dv.getUint32(at + 4, true) * 2 ** 32;
  if (!Number.isSafeInteger(v)) fail('a 64-bit field is too large');
  return v;
}
