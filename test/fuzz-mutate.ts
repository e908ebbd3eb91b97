// Mutations for the fuzz test (test/fuzz.test.ts): deterministic from a seed, so that any input
// that breaks a parser can be made again from its (target, iteration) pair.
//
// Bytes: 1–4 of bit flips, "interesting" bytes, little-endian int32/int64 fields overwritten with
// edge values (0, -1, 2^31-1, 2^31, 2^53, 2^63, the file's size ± 1…), truncation, insertion,
// deletion, duplication and splices from another seed. Most of them land where formats keep their
// structure: the first `head` bytes (headers) and the last 1 KiB (zip directories, trailers).
// JSON: a random value somewhere in the tree replaced by an edge value of another type, a key
// removed or added, an array blown up, nesting made deep — then serialized, sometimes cut.

/** xorshift32: a small deterministic generator. */
export class FuzzRng {
  private s: number;
  constructor(seed: number) {
    this.s = (seed >>> 0) || 0x9e3779b9;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : this.next() % n;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.next() / 4294967296 < p;
  }
}

const BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x20, 0x0a, 0x22, 0x5b, 0x7b, 0x30];

/** A byte position: mostly in the head or the tail, where structure lives. */
function position(rng: FuzzRng, length: number, head: number): number {
  if (length === 0) return 0;
  const r = rng.int(10);
  if (r < 6) return rng.int(Math.min(length, head));
  if (r < 8) return Math.max(0, length - 1 - rng.int(Math.min(length, 1024)));
  return rng.int(length);
}

/** Edge values for a 32-bit field, some relative to the input's size. */
function int32Value(rng: FuzzRng, size: number): number {
  return rng.pick([0, 1, -1, 2, 3, 7, 255, 256, 0x7fff, 0xffff, 0x10000, 0x7fffffff, -0x80000000, size, size - 1, size + 1, size >> 1, size * 4, rng.next() | 0]);
}

function int64Value(rng: FuzzRng, size: number): bigint {
  return rng.pick([0n, 1n, -1n, 0x7fffffffn, 0xffffffffn, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n), BigInt(size), BigInt(size) * 8n]);
}

/** A mutated copy of `input` (never the same object). `others` are the target's other seeds, for splices. */
export function mutateBytes(input: Uint8Array, rng: FuzzRng, others: readonly Uint8Array[], head = 512): Uint8Array {
  let b: Uint8Array = new Uint8Array(input); // (a copy: a Buffer's slice() would share the seed's memory)
  const ops = rng.chance(0.5) ? 1 : 2 + rng.int(3);
  for (let k = 0; k < ops; k++) {
    const at = position(rng, b.length, head);
    switch (rng.int(10)) {
      case 0:
      case 1:
        if (b.length > 0) b[at] = b[at]! ^ (1 << rng.int(8));
        break;
      case 2:
        if (b.length > 0) b[at] = rng.pick(BYTES);
        break;
      case 3:
      case 4: {
        const p = at & ~3;
        if (p + 4 <= b.length) new DataView(b.buffer, b.byteOffset).setInt32(p, int32Value(rng, b.length), true);
        break;
      }
      case 5: {
        const p = at & ~7;
        if (p + 8 <= b.length) new DataView(b.buffer, b.byteOffset).setBigInt64(p, int64Value(rng, b.length), true);
        break;
      }
      case 6: // truncate
        b = b.slice(0, at);
        break;
      case 7: { // insert random bytes
        const extra = new Uint8Array(1 + rng.int(rng.chance(0.1) ? 4096 : 16));
        for (let i = 0; i < extra.length; i++) extra[i] = rng.next() & 0xff;
        b = concat(b.subarray(0, at), extra, b.subarray(at));
        break;
      }
      case 8: { // delete or duplicate a chunk
        const n = 1 + rng.int(64);
        b = rng.chance(0.5) ? concat(b.subarray(0, at), b.subarray(at + n)) : concat(b.subarray(0, at + n), b.subarray(at));
        break;
      }
      default: { // splice: a chunk of another seed over this position
        const other = others.length > 0 ? rng.pick(others) : b;
        if (other.length === 0) break;
        const from = rng.int(other.length);
        const n = Math.min(1 + rng.int(256), other.length - from);
        const chunk = other.subarray(from, from + n);
        b = concat(b.subarray(0, at), chunk, b.subarray(Math.min(b.length, at + n)));
      }
    }
  }
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Edge values of every JSON type. */
function jsonValue(rng: FuzzRng): Json {
  switch (rng.int(14)) {
    case 0: return null;
    case 1: return rng.chance(0.5);
    case 2: return rng.pick([0, -1, 1, 0.5, -0.5, 2 ** 31, 2 ** 53, -(2 ** 53), 1e308, -1e308, 5e-324, 1e-38, 4096, 65535, 1 << 20]);
    case 3: return '';
    case 4: return rng.pick(['x', '\u0000', '\ud800', '😀', '▁', '<s>', '</s>', '<0x41>', '[INST]', 'user', 'system', 'assistant', 'llama', 'F32', 'BF16', 'text']);
    case 5: return 'x'.repeat(rng.pick([1000, 70_000]));
    case 6: return [];
    case 7: return {};
    case 8: return Array.from({ length: rng.pick([2, 100, 5000]) }, () => rng.int(1000));
    case 9: return [jsonValue(rng)];
    case 10: return { role: rng.pick(['user', 'system', 'assistant', 'robot']), content: jsonValue(rng) };
    case 11: return { type: 'text', text: rng.pick(['hi', '', 'x'.repeat(3000)]) };
    default: return rng.int(100_000) - 10;
  }
}

/** Stands for a deeply nested array until the tree is serialized. */
const DEEP = '\u0000deep\u0000';

/** Every (container, key) in a JSON tree. */
function slots(root: Json): Array<[Json[] | { [key: string]: Json }, string | number]> {
  const out: Array<[Json[] | { [key: string]: Json }, string | number]> = [];
  const visit = (v: Json, depth: number): void => {
    if (depth > 64) return; // (a deep nest made by an earlier mutation: its top is enough)
    if (Array.isArray(v)) {
      // (long arrays: a sample of their slots)
      const step = Math.max(1, Math.floor(v.length / 64));
      for (let i = 0; i < v.length; i += step) {
        out.push([v, i]);
        visit(v[i]!, depth + 1);
      }
    } else if (v !== null && typeof v === 'object') {
      for (const k of Object.keys(v)) {
        out.push([v, k]);
        visit(v[k]!, depth + 1);
      }
    }
  };
  visit(root, 0);
  return out;
}

/** A mutated JSON text (structural mutations of the parsed tree, sometimes byte mutations on top). */
export function mutateJson(text: string, rng: FuzzRng): string {
  let root: Json;
  try {
    root = JSON.parse(text) as Json;
  } catch {
    return new TextDecoder().decode(mutateBytes(new TextEncoder().encode(text), rng, []));
  }
  const ops = 1 + rng.int(3);
  let deep = 0;
  for (let k = 0; k < ops; k++) {
    const all = slots(root);
    if (all.length === 0) {
      root = jsonValue(rng);
      continue;
    }
    const [container, key] = rng.pick(all);
    const set = (v: Json): void => {
      (container as Record<string | number, Json>)[key] = v;
    };
    switch (rng.int(6)) {
      case 0:
        if (Array.isArray(container)) container.splice(key as number, 1);
        else delete (container as Record<string, Json>)[key as string];
        break;
      case 1:
        if (!Array.isArray(container)) container[rng.pick(['extra', '__proto__', 'constructor', 'n', 'stream', 'max_tokens', 'model'])] = jsonValue(rng);
        else container.push(jsonValue(rng));
        break;
      case 2: // deep nesting (made as text, after serializing)
        deep = rng.pick([10, 1000, 20_000]);
        set(DEEP);
        break;
      default:
        set(jsonValue(rng));
    }
  }
  let out = JSON.stringify(root);
  if (deep > 0) out = out.replace(JSON.stringify(DEEP), '['.repeat(deep) + '1' + ']'.repeat(deep));
  if (rng.chance(0.15)) out = new TextDecoder().decode(mutateBytes(new TextEncoder().encode(out), rng, []));
  return out;
}
