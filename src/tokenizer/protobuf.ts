// A minimal protobuf wire-format reader and writer: just what SentencePiece `.model` files
// (a serialized `ModelProto`, proto2) need. No schema compiler, no dependency.
//
// Wire format: a message is a sequence of fields; each field starts with a varint tag
// `(field_number << 3) | wire_type`, then its payload:
//   wire type 0  varint            int32, int64, uint64, bool, enum (negative int32: 10 bytes)
//   wire type 1  64-bit, little-endian (double, fixed64)
//   wire type 2  varint length + that many bytes (string, bytes, nested message, packed repeated)
//   wire type 5  32-bit, little-endian (float, fixed32)
// Groups (wire types 3 and 4) are obsolete and rejected.
//
// Every read checks the remaining length first, so a truncated or random file fails with a
// ProtobufError instead of reading past the end.

export class ProtobufError extends Error {
  override name = 'ProtobufError';
}

export const WireType = { VARINT: 0, FIXED64: 1, LENGTH_DELIMITED: 2, FIXED32: 5 } as const;
export type WireType = (typeof WireType)[keyof typeof WireType];

/** One field as it appears on the wire (payload not yet interpreted). */
export interface RawField {
  readonly number: number;
  readonly wireType: WireType;
  /** Varint payload (wire type 0), as an unsigned 64-bit value. */
  readonly varint: bigint;
  /** Payload bytes for wire types 1, 2 and 5 (a view into the input). */
  readonly bytes: Uint8Array;
  /** The field's complete encoding, tag included (to re-emit fields we do not interpret). */
  readonly encoded: Uint8Array;
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }); // keep a U+FEFF piece

/** Sequential reader over one message's bytes. */
export class ProtobufReader {
  private pos = 0;
  constructor(private readonly buf: Uint8Array) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  get offset(): number {
    return this.pos;
  }

  /** Reads a varint of up to 10 bytes as an unsigned 64-bit bigint. */
  private varint(): bigint {
    // Fast path: up to 4 bytes (28 bits) fit a small integer exactly.
    let result = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      if (this.pos >= this.buf.length) throw new ProtobufError(`truncated varint at byte ${this.pos}`);
      const b = this.buf[this.pos++]!;
      result |= (b & 0x7f) << shift;
      if (b < 0x80) return BigInt(result >>> 0);
    }
    let big = BigInt(result >>> 0);
    for (let shift = 28n; shift < 70n; shift += 7n) {
      if (this.pos >= this.buf.length) throw new ProtobufError(`truncated varint at byte ${this.pos}`);
      const b = this.buf[this.pos++]!;
      big |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asUintN(64, big);
    }
    throw new ProtobufError(`varint longer than 10 bytes at byte ${this.pos}`);
  }

  /** A varint that must fit a non-negative 31-bit length or tag. */
  private smallVarint(what: string): number {
    const v = this.varint();
    if (v > 0x7fffffffn) throw new ProtobufError(`${what} ${v} is too large at byte ${this.pos}`);
    return Number(v);
  }

  private take(n: number): Uint8Array {
    if (n > this.buf.length - this.pos) {
      throw new ProtobufError(`field of ${n} bytes at byte ${this.pos} runs past the end (${this.buf.length} bytes)`);
    }
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** Reads the next field (tag and payload). */
  next(): RawField {
    const start = this.pos;
    const tag = this.smallVarint('tag');
    const number = tag >>> 3;
    const wireType = tag & 7;
    if (number === 0) throw new ProtobufError(`field number 0 at byte ${start}`);
    let varint = 0n;
    let bytes: Uint8Array = this.buf.subarray(0, 0);
    switch (wireType) {
      case WireType.VARINT: varint = this.varint(); break;
      case WireType.FIXED64: bytes = this.take(8); break;
      case WireType.LENGTH_DELIMITED: bytes = this.take(this.smallVarint('length')); break;
      case WireType.FIXED32: bytes = this.take(4); break;
      default: throw new ProtobufError(`unsupported wire type ${wireType} at byte ${start}`);
    }
    return { number, wireType: wireType as WireType, varint, bytes, encoded: this.buf.subarray(start, this.pos) };
  }
}

// --- interpreting payloads -------------------------------------------------------------------

function expectWire(f: RawField, wt: WireType, what: string): void {
  if (f.wireType !== wt) throw new ProtobufError(`${what} (field ${f.number}) has wire type ${f.wireType}, expected ${wt}`);
}

export function fieldString(f: RawField, what: string): string {
  expectWire(f, WireType.LENGTH_DELIMITED, what);
  try {
    return utf8Decoder.decode(f.bytes);
  } catch {
    throw new ProtobufError(`${what} is not valid UTF-8`);
  }
}

export function fieldBytes(f: RawField, what: string): Uint8Array {
  expectWire(f, WireType.LENGTH_DELIMITED, what);
  return f.bytes;
}

export function fieldFloat(f: RawField, what: string): number {
  expectWire(f, WireType.FIXED32, what);
  return new DataView(f.bytes.buffer, f.bytes.byteOffset, 4).getFloat32(0, true);
}

/** int32 and enum: the low 32 bits of the varint, signed. */
export function fieldInt32(f: RawField, what: string): number {
  expectWire(f, WireType.VARINT, what);
  return Number(BigInt.asIntN(32, f.varint));
}

export function fieldUint64(f: RawField, what: string): number {
  expectWire(f, WireType.VARINT, what);
  if (f.varint > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtobufError(`${what} ${f.varint} is too large`);
  return Number(f.varint);
}

export function fieldBool(f: RawField, what: string): boolean {
  expectWire(f, WireType.VARINT, what);
  return f.varint !== 0n;
}

// --- writing ---------------------------------------------------------------------------------

const utf8Encoder = new TextEncoder();

/** Accumulates a message; `finish()` returns its bytes. */
export class ProtobufWriter {
  private chunks: Uint8Array[] = [];
  private cur = new Uint8Array(256);
  private len = 0;

  private ensure(n: number): void {
    if (this.len + n <= this.cur.length) return;
    this.chunks.push(this.cur.subarray(0, this.len));
    this.cur = new Uint8Array(Math.max(256, n, this.cur.length * 2));
    this.len = 0;
  }

  private byte(b: number): void {
    this.ensure(1);
    this.cur[this.len++] = b;
  }

  /** Unsigned varint of a 64-bit value. */
  private varint(v: bigint): void {
    let x = BigInt.asUintN(64, v);
    while (x >= 0x80n) {
      this.byte(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.byte(Number(x));
  }

  private smallVarint(v: number): void {
    while (v >= 0x80) {
      this.byte((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    this.byte(v);
  }

  private tag(number: number, wt: WireType): void {
    this.smallVarint((number << 3) | wt);
  }

  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.cur.set(bytes, this.len);
    this.len += bytes.length;
  }

  bytes(number: number, payload: Uint8Array): void {
    this.tag(number, WireType.LENGTH_DELIMITED);
    this.smallVarint(payload.length);
    this.raw(payload);
  }

  string(number: number, s: string): void {
    this.bytes(number, utf8Encoder.encode(s));
  }

  float(number: number, v: number): void {
    this.tag(number, WireType.FIXED32);
    this.ensure(4);
    new DataView(this.cur.buffer, this.cur.byteOffset + this.len, 4).setFloat32(0, v, true);
    this.len += 4;
  }

  /** int32 and enum (a negative value takes 10 bytes, sign-extended to 64 bits). */
  int32(number: number, v: number): void {
    this.tag(number, WireType.VARINT);
    if (v >= 0) this.smallVarint(v);
    else this.varint(BigInt(v));
  }

  uint64(number: number, v: number): void {
    this.tag(number, WireType.VARINT);
    this.varint(BigInt(v));
  }

  bool(number: number, v: boolean): void {
    this.tag(number, WireType.VARINT);
    this.byte(v ? 1 : 0);
  }

  finish(): Uint8Array {
    const parts = [...this.chunks, this.cur.subarray(0, this.len)];
    const total = parts.reduce((n, p) => n + p.length, 0);
    const out = new Uint8Array(total);
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }
}
