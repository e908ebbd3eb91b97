// A data-only reader for the pickles torch.save writes (data.pkl inside a .pth zip). Python's
// pickle is a little stack machine whose GLOBAL and REDUCE opcodes import and call arbitrary
// functions — loading an untrusted pickle with Python runs whatever it says. This reader runs
// none of it: it knows the opcodes a state dict uses and exactly three callables, and builds plain
// values from them:
//
//   torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, meta])
//                                           → a TensorRef (where the values are; nothing is read)
//   torch._utils._rebuild_parameter(tensor, requires_grad, hooks)   → the tensor
//   collections.OrderedDict()               → a Map
//
// Storages come from persistent ids ('storage', torch.<T>Storage, key, location, numel), T one of
// Float, Half, BFloat16 (those globals are data, never called): the data of storage `key` is the
// zip entry <archive>/data/<key>. Any other
// global, any other opcode, anything called that is not one of the three is refused with a
// one-line error naming it. Sizes are bounded by the pickle's length (no opcode creates more than
// one object), and the machine is a loop over the bytes: no recursion.

import { FormatError, quote } from '../errors.js';
import type { FloatDType } from './float-codecs.js';

export interface StorageRef {
  readonly kind: 'storage';
  readonly key: string;
  readonly dtype: FloatDType;
  /** Values in the storage. */
  readonly numel: number;
}

export interface TensorRef {
  readonly kind: 'tensor';
  readonly storage: StorageRef;
  /** Offset in values into the storage. */
  readonly offset: number;
  readonly shape: readonly number[];
  readonly stride: readonly number[];
}

/** A callable global (one of CALLABLES), waiting for REDUCE. */
class Global {
  constructor(readonly name: string) {}
}
/** A storage type global (torch.BFloat16Storage …): data, used inside a persistent id. */
export class StorageType {
  constructor(readonly dtype: FloatDType) {}
}
class Mark {}
const MARK = new Mark();

/** What unpickling can produce (a dict is a Map; tuples and lists are arrays). */
export type PickleValue = null | boolean | number | string | PickleValue[] | Map<PickleValue, PickleValue> | StorageRef | TensorRef | StorageType;

const STORAGE_TYPES: Readonly<Record<string, FloatDType>> = {
  'torch FloatStorage': 'F32', 'torch HalfStorage': 'F16', 'torch BFloat16Storage': 'BF16',
};
const CALLABLES = new Set(['torch._utils _rebuild_tensor_v2', 'torch._utils _rebuild_parameter', 'collections OrderedDict']);

/** Unpickles `bytes` (a torch state dict) into plain values. `file` names it in errors. */
export function unpickle(bytes: Uint8Array, file: string): PickleValue {
  const fail = (what: string): never => {
    throw new FormatError(file, `pickle refused: ${what}`);
  };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const latin1 = new TextDecoder('latin1');
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  type Item = PickleValue | Global | Mark;
  const stack: Item[] = [];
  const memo = new Map<number, Item>();
  let p = 0;
  const need = (n: number): void => {
    if (p + n > bytes.length) fail(`truncated at byte ${p}`);
  };
  const u8 = (): number => (need(1), bytes[p++]!);
  const u16 = (): number => (need(2), (p += 2), dv.getUint16(p - 2, true));
  const u32 = (): number => (need(4), (p += 4), dv.getUint32(p - 4, true));
  const i32 = (): number => (need(4), (p += 4), dv.getInt32(p - 4, true));
  const str = (n: number, decoder: { decode(b: Uint8Array): string }): string => {
    need(n);
    p += n;
    try {
      return decoder.decode(bytes.subarray(p - n, p));
    } catch {
      return fail(`a string at byte ${p - n} is not valid UTF-8`);
    }
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, p);
    if (end < 0 || end - p > 256) fail(`unterminated name at byte ${p}`);
    const s = latin1.decode(bytes.subarray(p, end));
    p = end + 1;
    return s;
  };
  const pop = (): Item => (stack.length === 0 ? fail('stack underflow') : stack.pop()!);
  const popValue = (): PickleValue => {
    const v = pop();
    if (v instanceof Mark || v instanceof Global) fail('a marker or a function where a value belongs');
    return v as PickleValue;
  };
  const popMark = (): PickleValue[] => {
    let i = stack.length - 1;
    while (i >= 0 && !(stack[i] instanceof Mark)) i--;
    if (i < 0) fail('no MARK on the stack');
    const items = stack.splice(i + 1);
    stack.pop();
    if (items.some((v) => v instanceof Mark || v instanceof Global)) fail('a marker or a function inside a collection');
    return items as PickleValue[];
  };
  const top = (): Item => (stack.length === 0 ? fail('stack underflow') : stack[stack.length - 1]!);
  const setItems = (d: Item, items: PickleValue[]): void => {
    if (!(d instanceof Map)) fail('SETITEM(S) on something that is not a dict');
    if (items.length % 2 !== 0) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) (d as Map<PickleValue, PickleValue>).set(items[i]!, items[i + 1]!);
  };
  const appendItems = (l: Item, items: PickleValue[]): void => {
    if (!Array.isArray(l)) fail('APPEND(S) on something that is not a list');
    for (const v of items) (l as PickleValue[]).push(v);
  };
  const int = (v: PickleValue, what: string): number => (typeof v === 'number' && Number.isSafeInteger(v) ? v : fail(`${what} is not an integer`));
  const intList = (v: PickleValue, what: string): number[] => (Array.isArray(v) ? v.map((x) => int(x, what)) : fail(`${what} is not a tuple`));

  const global = (name: string): Global | StorageType => {
    if (CALLABLES.has(name)) return new Global(name);
    const dtype = STORAGE_TYPES[name];
    return dtype !== undefined ? new StorageType(dtype) : fail(`global ${name} is not one torch's tensor rebuild uses`);
  };

  const call = (fn: Global, args: PickleValue): PickleValue => {
    if (!Array.isArray(args)) fail(`arguments of ${fn.name} are not a tuple`);
    const a = args as PickleValue[];
    switch (fn.name) {
      case 'collections OrderedDict':
        if (a.length !== 0) fail('OrderedDict called with arguments');
        return new Map();
      case 'torch._utils _rebuild_parameter': {
        const t = a[0];
        if (typeof t !== 'object' || t === null || (t as TensorRef).kind !== 'tensor') fail('_rebuild_parameter of something that is not a tensor');
        return t as TensorRef;
      }
      case 'torch._utils _rebuild_tensor_v2': {
        if (a.length < 6 || a.length > 7) fail(`_rebuild_tensor_v2 with ${a.length} arguments`);
        const storage = a[0] as StorageRef;
        if (typeof storage !== 'object' || storage === null || storage.kind !== 'storage') fail('_rebuild_tensor_v2 of something that is not a storage');
        const shape = intList(a[2]!, 'a tensor size');
        const stride = intList(a[3]!, 'a tensor stride');
        if (shape.length !== stride.length || shape.some((d) => d < 0) || stride.some((s) => s < 0)) fail('a tensor with a bad size or stride');
        return { kind: 'tensor', storage, offset: int(a[1]!, 'a storage offset'), shape, stride };
      }
    }
    return fail(`call of ${fn.name}`);
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail('unknown protocol');
        break;
      case 0x95: // FRAME (protocol 4): a length to skip
        need(8);
        p += 8;
        break;
      case 0x2e: // STOP
        if (stack.length !== 1) fail(`STOP with ${stack.length} items on the stack`);
        return popValue();
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x28: stack.push(MARK); break; // MARK
      case 0x74: stack.push(popMark()); break; // TUPLE
      case 0x6c: stack.push(popMark()); break; // LIST
      case 0x64: { // DICT
        const d = new Map<PickleValue, PickleValue>();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x85: stack.push([popValue()]); break; // TUPLE1
      case 0x86: { const b = popValue(), a = popValue(); stack.push([a, b]); break; } // TUPLE2
      case 0x87: { const c = popValue(), b = popValue(), a = popValue(); stack.push([a, b, c]); break; } // TUPLE3
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x4a: stack.push(i32()); break; // BININT
      case 0x8a: { // LONG1: n-byte two's-complement integer
        const n = u8();
        if (n > 8) fail('an integer too large');
        need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[p + i]!);
        if (n > 0 && bytes[p + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        p += n;
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) fail('an integer too large');
        stack.push(Number(v));
        break;
      }
      case 0x47: { // BINFLOAT: big-endian float64
        need(8);
        stack.push(dv.getFloat64(p, false));
        p += 8;
        break;
      }
      case 0x58: stack.push(str(u32(), utf8)); break; // BINUNICODE
      case 0x8c: stack.push(str(u8(), utf8)); break; // SHORT_BINUNICODE
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) fail(`memo ${k} is empty`);
        stack.push(memo.get(k)!);
        break;
      }
      case 0x63: { // GLOBAL module\nname\n
        stack.push(global(`${line()} ${line()}`));
        break;
      }
      case 0x93: { // STACK_GLOBAL (protocol 4)
        const n = popValue(), m = popValue();
        if (typeof m !== 'string' || typeof n !== 'string') fail('STACK_GLOBAL of something that is not a name');
        stack.push(global(`${m as string} ${n as string}`));
        break;
      }
      case 0x52: { // REDUCE
        const args = popValue();
        const fn = pop();
        if (!(fn instanceof Global) || !CALLABLES.has(fn.name)) fail(`call of ${fn instanceof Global ? fn.name : 'a value'}`);
        stack.push(call(fn as Global, args));
        break;
      }
      case 0x51: { // BINPERSID: ('storage', torch.<T>Storage, key, location, numel)
        const pid = popValue();
        if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage') fail('a persistent id that is not a storage');
        const [, type, key, , numel] = pid as PickleValue[];
        if (!(type instanceof StorageType)) fail('a storage without a storage type');
        if (typeof key !== 'string' || !/^[A-Za-z0-9_]{1,64}$/.test(key)) fail(`storage key ${quote(key)}`);
        stack.push({ kind: 'storage', key: key as string, dtype: (type as StorageType).dtype, numel: int(numel!, 'a storage size') });
        break;
      }
      case 0x73: { const v = popValue(), k = popValue(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x61: { const v = popValue(); appendItems(top(), [v]); break; } // APPEND
      case 0x65: { const items = popMark(); appendItems(top(), items); break; } // APPENDS
      case 0x62: { // BUILD: object state; only an OrderedDict's (torch's _metadata attribute) is accepted and dropped
        const state = popValue();
        if (!(top() instanceof Map) || !(state instanceof Map || (Array.isArray(state) && state.length === 2))) fail('BUILD of something that is not a state dict');
        break;
      }
      default:
        fail(`opcode 0x${op.toString(16).padStart(2, '0')} at byte ${p - 1} is not one a state dict uses`);
    }
  }
}
