// Ids back to text.
//
// decode(ids) follows SentencePiece's DecodeIds: control tokens (<s>, </s>) print nothing, <unk>
// prints the unk surface " ⁇ ", ▁ becomes a space, the leading space of the first piece is dropped
// (the dummy prefix), and runs of byte tokens <0xNN> are joined and read as UTF-8 (a malformed
// byte becomes U+FFFD).
//
// StreamingDecoder does the same one token at a time, for generation: byte tokens are collected
// until they form whole UTF-8 characters (an emoji split over four byte tokens comes out as the
// emoji, once), and the leading space of a piece right after BOS is dropped as run.c does. With
// `cCompatible` it prints what llama2.c's run.c prints: pieces as written in tokenizer.bin
// ("\n</s>\n" for EOS, "<unk>"), and single-byte pieces that are ASCII control characters (not
// isprint/isspace) skipped, like safe_printf — but bytes ≥ 0x80 are kept, so UTF-8 assembles.

import { LlamaError } from '../errors.js';
import { PieceType } from './sentencepiece-model.js';
import { decodeUtf8, isIncompleteChar, validCharLength } from './utf8.js';
import { llama2cTexts, pieceToByte, type Vocabulary } from './vocabulary.js';

const SPACE_SYMBOL = '\u2581';

export function checkId(v: Vocabulary, id: number): void {
  if (!Number.isInteger(id) || id < 0 || id >= v.pieces.length) {
    throw new LlamaError(`token id ${id} is out of range: the vocabulary has ids 0..${v.pieces.length - 1}`);
  }
}

/** SentencePiece DecodeIds. */
export function decodeIds(v: Vocabulary, ids: readonly number[]): string {
  const table = pieceTable(v, false);
  const stripFirstSpace = v.normalizer.addDummyPrefix || v.normalizer.removeExtraWhitespaces;
  const parts: string[] = [];
  let nonEmpty = false; // has any text been produced yet?
  let bytes = new Uint8Array(64); // a run of byte tokens, decoded together as UTF-8
  let nBytes = 0;
  let expectBosSpace = true; // still at the start: a leading ▁ is the dummy prefix
  let bosSpaceSeen = false;
  const flushBytes = (): void => {
    if (nBytes === 0) return;
    parts.push(decodeUtf8(bytes, 0, nBytes));
    nonEmpty = true;
    nBytes = 0;
  };
  for (const id of ids) {
    checkId(v, id);
    const b = table.byteOf[id]!;
    if (b >= 0) {
      if (nBytes === bytes.length) {
        const grown = new Uint8Array(bytes.length * 2);
        grown.set(bytes);
        bytes = grown;
      }
      bytes[nBytes++] = b;
      continue;
    }
    flushBytes();
    if (bosSpaceSeen || nonEmpty) expectBosSpace = false;
    bosSpaceSeen = false;
    let text = table.text[id]!;
    const type = v.types[id]!;
    if (expectBosSpace && stripFirstSpace && type !== PieceType.CONTROL && type !== PieceType.UNKNOWN && v.pieces[id]!.startsWith(SPACE_SYMBOL)) {
      text = text.slice(1);
      // with remove_extra_whitespaces every leading space goes, not just the first
      bosSpaceSeen = !v.normalizer.removeExtraWhitespaces;
    }
    if (text.length > 0) {
      parts.push(text);
      nonEmpty = true;
    }
  }
  flushBytes();
  return parts.join('');
}

/** Per-token output of the streaming decoder, precomputed once per vocabulary and mode. */
interface PieceTable {
  /** The text of each token (undefined for byte tokens). */
  readonly text: ReadonlyArray<string | undefined>;
  /** Its UTF-8 bytes. */
  readonly bytes: ReadonlyArray<Uint8Array>;
  /** Byte value of byte tokens, else -1. */
  readonly byteOf: Int16Array;
}

const tableCache = new WeakMap<Vocabulary, { plain?: PieceTable; c?: PieceTable }>();

function pieceTable(v: Vocabulary, cCompatible: boolean): PieceTable {
  let entry = tableCache.get(v);
  if (entry === undefined) tableCache.set(v, (entry = {}));
  const cached = cCompatible ? entry.c : entry.plain;
  if (cached !== undefined) return cached;
  const enc = new TextEncoder();
  const cTexts = cCompatible ? llama2cTexts(v) : undefined;
  const n = v.pieces.length;
  const text: Array<string | undefined> = new Array<string | undefined>(n);
  const bytes: Uint8Array[] = new Array<Uint8Array>(n);
  const byteOf = new Int16Array(n).fill(-1);
  for (let id = 0; id < n; id++) {
    const type = v.types[id]!;
    if (type === PieceType.BYTE) {
      byteOf[id] = pieceToByte(v.pieces[id]!);
      bytes[id] = Uint8Array.of(byteOf[id]!);
      continue;
    }
    const t = cTexts !== undefined ? cTexts[id]!
      : type === PieceType.CONTROL ? ''
      : type === PieceType.UNKNOWN ? v.unkSurface
      : v.pieces[id]!.replaceAll(SPACE_SYMBOL, ' ');
    text[id] = t;
    bytes[id] = enc.encode(t);
  }
  const table = { text, bytes, byteOf };
  if (cCompatible) entry.c = table;
  else entry.plain = table;
  return table;
}

/** run.c's safe_printf filter: a one-byte piece that is neither isprint nor isspace (C locale). */
function isUnprintableByte(b: number): boolean {
  return b < 0x80 && !(b >= 0x20 && b <= 0x7e) && !(b >= 0x09 && b <= 0x0d);
}

export interface StreamingDecoderOptions {
  /** Print what llama2.c's run.c prints (see the file comment). Default false. */
  cCompatible?: boolean;
}

export class StreamingDecoderCore {
  private readonly table: PieceTable;
  private readonly cCompatible: boolean;
  private pending = new Uint8Array(16); // bytes of a character not yet complete
  private pendingLen = 0;

  constructor(private readonly v: Vocabulary, opts: StreamingDecoderOptions = {}) {
    this.cCompatible = opts.cCompatible ?? false;
    this.table = pieceTable(v, this.cCompatible);
  }

  /** Text completed by `token`, which follows `prev` (prev = BOS strips a leading space). */
  push(prev: number, token: number): string {
    checkId(this.v, token);
    const b = this.table.byteOf[token]!;
    if (b >= 0) {
      if (this.cCompatible && isUnprintableByte(b)) return '';
      this.append(this.table.bytes[token]!, 0);
      return this.drain(false);
    }
    const text = this.table.text[token]!;
    const strip = prev === this.v.bosId && text.startsWith(' ') ? 1 : 0;
    if (this.cCompatible) {
      const bytes = this.table.bytes[token]!;
      const len = bytes.length - strip;
      if (len === 0 || (len === 1 && isUnprintableByte(bytes[strip]!))) return '';
    }
    if (this.pendingLen === 0) return strip === 0 ? text : text.slice(1);
    this.append(this.table.bytes[token]!, strip);
    return this.drain(false);
  }

  /** Whatever is still held back (an incomplete character prints as U+FFFD per byte). */
  flush(): string {
    return this.drain(true);
  }

  private append(bytes: Uint8Array, from: number): void {
    const need = this.pendingLen + bytes.length - from;
    if (need > this.pending.length) {
      const grown = new Uint8Array(Math.max(need, this.pending.length * 2));
      grown.set(this.pending.subarray(0, this.pendingLen));
      this.pending = grown;
    }
    this.pending.set(bytes.subarray(from), this.pendingLen);
    this.pendingLen = need;
  }

  /** Decodes the pending bytes up to a trailing incomplete character (all of them if `all`). */
  private drain(all: boolean): string {
    const buf = this.pending;
    const len = this.pendingLen;
    let cut = len;
    if (!all) {
      let i = 0;
      while (i < len) {
        const n = validCharLength(buf, i, len);
        if (n > 0) i += n;
        else if (isIncompleteChar(buf, i, len)) break;
        else i += 1;
      }
      cut = i;
    }
    if (cut === 0) return '';
    const out = decodeUtf8(buf, 0, cut);
    buf.copyWithin(0, cut, len);
    this.pendingLen = len - cut;
    return out;
  }
}
