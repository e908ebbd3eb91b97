// SentencePiece's BPE encoder (bpe_model.cc), reproduced exactly and made fast.
//
// The algorithm: split the normalized text into characters (user-defined pieces are matched
// first, whole, and never merge); then, repeatedly, merge the adjacent pair whose concatenation is
// a vocabulary piece with the HIGHEST score — ties go to the LEFTMOST pair — until no adjacent pair
// forms a piece. Each remaining symbol is a piece id; a symbol that is not in the vocabulary is
// unknown: with byte_fallback it becomes the byte tokens <0xNN> of its UTF-8 bytes, without it is
// <unk> (a run of unknown symbols gives one <unk>). SentencePiece keeps the candidates in a
// priority queue ordered by (score desc, left position asc), and drops stale entries on pop.
//
// What makes it fast, without changing the result:
//  - Symbols are small integers, not strings: a vocabulary piece is its id; a character that is
//    not a piece but occurs inside one gets an extra id ≥ vocabSize; any other character can never
//    merge (every merge result is a piece, and a piece containing it would contain the character).
//    Merges are a hash table (left symbol, right symbol) → piece id, built once from every split of
//    every piece into two parts that are themselves symbols.
//  - Independent segments: if two neighbouring characters appear next to each other in no piece,
//    no merge can ever cross between them, so the text is cut there (typically before every ▁)
//    and each segment is merged on its own with a small heap. Merges in different segments do not
//    interact, so the order they happen in does not change the outcome.
//  - All working memory is typed arrays kept between calls; nothing is allocated per symbol.
//
// Long texts (a server's prompts) can be encoded in slices: encodeSteps() stops after every
// SLICE_SEGMENTS segments so that the caller can let other work run, and fork() gives an encoder
// with the same tables and its own working memory, for encodes that interleave. minTokens() is a
// lower bound of the id count, in one pass over the text without encoding it: each id covers at
// most the longest piece's characters, and (with byte fallback) an unknown character costs one.

import type { Vocabulary } from './vocabulary.js';
import { PieceType } from './sentencepiece-model.js';
import { SPACE_SYMBOL, normalize, normalizedCapacity } from './normalizer.js';
import { writeUtf8 } from './utf8.js';
import { LlamaError } from '../errors.js';

const NO_SYMBOL = -1; // a character that occurs in no piece
const DEAD = -2; // a position absorbed into its left neighbour
const PAIR_ABSENT = -1; // pair table: these two symbols are never adjacent inside a piece
const PAIR_ADJACENT = -2; // …adjacent inside some piece, but their concatenation is not a piece
/** encodeSteps() stops after this many segments (a few tens of microseconds of work). */
const SLICE_SEGMENTS = 256;

/** Open-addressing hash table from a pair of non-negative int32 keys to an int32 value. */
class PairTable {
  private keysA: Int32Array;
  private keysB: Int32Array;
  private values: Int32Array;
  private mask: number;
  private count = 0;

  constructor(expected: number) {
    let cap = 16;
    while (cap < expected * 2) cap *= 2;
    this.keysA = new Int32Array(cap).fill(-1);
    this.keysB = new Int32Array(cap);
    this.values = new Int32Array(cap);
    this.mask = cap - 1;
  }

  private slot(a: number, b: number): number {
    let h = (Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca77)) >>> 0;
    h ^= h >>> 15;
    let i = h & this.mask;
    while (this.keysA[i] !== -1 && (this.keysA[i] !== a || this.keysB[i] !== b)) i = (i + 1) & this.mask;
    return i;
  }

  get(a: number, b: number): number {
    const i = this.slot(a, b);
    return this.keysA[i] === -1 ? PAIR_ABSENT : this.values[i]!;
  }

  /** Sets the value unless the pair already has one that `keep` says to keep. */
  set(a: number, b: number, value: number, keep: (old: number) => boolean = () => false): void {
    if ((this.count + 1) * 2 > this.values.length) this.grow();
    const i = this.slot(a, b);
    if (this.keysA[i] === -1) {
      this.keysA[i] = a;
      this.keysB[i] = b;
      this.values[i] = value;
      this.count++;
    } else if (!keep(this.values[i]!)) {
      this.values[i] = value;
    }
  }

  private grow(): void {
    const { keysA, keysB, values } = this;
    this.keysA = new Int32Array(keysA.length * 2).fill(-1);
    this.keysB = new Int32Array(keysA.length * 2);
    this.values = new Int32Array(keysA.length * 2);
    this.mask = keysA.length * 2 - 1;
    for (let i = 0; i < keysA.length; i++) {
      if (keysA[i] === -1) continue;
      const j = this.slot(keysA[i]!, keysB[i]!);
      this.keysA[j] = keysA[i]!;
      this.keysB[j] = keysB[i]!;
      this.values[j] = values[i]!;
    }
  }
}

/** The string of cps[from..to). */
function fromCodePoints(cps: readonly number[], from: number, to: number): string {
  let s = '';
  for (let i = from; i < to; i++) s += String.fromCodePoint(cps[i]!);
  return s;
}

function codePoints(s: string): number[] {
  const out: number[] = [];
  for (const ch of s) out.push(ch.codePointAt(0)!);
  return out;
}

export class BpeEncoder {
  private readonly v: Vocabulary;
  private readonly nPieces: number;
  /** Symbol of each BMP code point (-1: none); astral ones in a Map. */
  private readonly bmpSymbol: Int32Array;
  private readonly astralSymbol: Map<number, number>;
  /** For extra symbols (≥ nPieces): their code point and the id PieceToId gives them. */
  private readonly extraCodePoint: number[];
  private readonly extraId: number[];
  private readonly pairs: PairTable;
  /** User-defined pieces by first code point, longest first (matched whole, never merged). */
  private readonly userDefined: Map<number, Array<{ cps: number[]; id: number }>>;
  private readonly isUnused: Uint8Array;
  private readonly hasUnused: boolean;
  /** Id of a single character that is a reserved piece (control/byte/unknown), by code point. */
  private readonly reservedChar: Map<number, number>;
  /** Code points of the longest piece an id can stand for (≥ 1). */
  private readonly maxPieceLength: number;

  // working memory, grown on demand
  private cps: Int32Array = new Int32Array(1024); // normalized code points
  private sym: Int32Array = new Int32Array(1024); // current symbol at each position (DEAD once absorbed)
  private cp0: Int32Array = new Int32Array(1024); // code point at each position (-1: a user-defined piece)
  private nextPos: Int32Array = new Int32Array(1024); // linked list of live positions
  private prevPos: Int32Array = new Int32Array(1024);
  private pairAt: Int32Array = new Int32Array(1024); // pair table value of (position-1, position)
  // candidate merges: an entry pool and a binary heap of entry indices
  private eLeft: Int32Array = new Int32Array(1024);
  private eRight: Int32Array = new Int32Array(1024);
  private eLeftSym: Int32Array = new Int32Array(1024);
  private eRightSym: Int32Array = new Int32Array(1024);
  private eMerged: Int32Array = new Int32Array(1024);
  private eScore: Float64Array = new Float64Array(1024);
  private heap: Int32Array = new Int32Array(1024);
  private byteBuf = new Uint8Array(4);
  /** Last recorded split of each UNUSED piece in this call (bpe_model.cc's rev_merge). */
  private revMerge = new Map<number, [number, number]>();

  /** Builds the tables of `vocab`; with `tables`, shares that encoder's tables instead (fork()). */
  constructor(vocab: Vocabulary, tables?: BpeEncoder) {
    this.v = vocab;
    const n = vocab.pieces.length;
    this.nPieces = n;
    if (tables !== undefined) {
      this.bmpSymbol = tables.bmpSymbol;
      this.astralSymbol = tables.astralSymbol;
      this.extraCodePoint = tables.extraCodePoint;
      this.extraId = tables.extraId;
      this.pairs = tables.pairs;
      this.userDefined = tables.userDefined;
      this.isUnused = tables.isUnused;
      this.hasUnused = tables.hasUnused;
      this.reservedChar = tables.reservedChar;
      this.maxPieceLength = tables.maxPieceLength;
      return;
    }
    this.bmpSymbol = new Int32Array(0x10000).fill(NO_SYMBOL);
    this.astralSymbol = new Map();
    this.extraCodePoint = [];
    this.extraId = [];
    this.userDefined = new Map();
    this.reservedChar = new Map();
    this.isUnused = new Uint8Array(n);
    const index = new Map<string, number>(); // SentencePiece's pieces_: normal, user-defined, unused
    for (let id = 0; id < n; id++) {
      const t = vocab.types[id]!;
      const p = vocab.pieces[id]!;
      if (t === PieceType.NORMAL || t === PieceType.USER_DEFINED || t === PieceType.UNUSED) {
        if (!index.has(p)) index.set(p, id);
        if (t === PieceType.UNUSED) this.isUnused[id] = 1;
        if (t === PieceType.USER_DEFINED) {
          const cps = codePoints(p);
          const list = this.userDefined.get(cps[0]!) ?? [];
          list.push({ cps, id });
          list.sort((a, b) => b.cps.length - a.cps.length);
          this.userDefined.set(cps[0]!, list);
        }
      } else {
        const cps = codePoints(p);
        if (cps.length === 1 && !this.reservedChar.has(cps[0]!)) this.reservedChar.set(cps[0]!, id);
      }
    }
    this.hasUnused = this.isUnused.includes(1);

    // Symbols for every character of every piece.
    const pieceCps: number[][] = [];
    let longest = 1;
    for (const [p, id] of index) {
      const cps = codePoints(p);
      pieceCps.push(cps);
      longest = Math.max(longest, cps.length);
      if (cps.length === 1) this.setSymbol(cps[0]!, id);
    }
    this.maxPieceLength = longest;
    for (const cps of pieceCps) for (const c of cps) if (this.symbolOf(c) === NO_SYMBOL) this.addExtraSymbol(c);

    // Merge table and adjacency.
    this.pairs = new PairTable(index.size * 4);
    const symbolOfPart = (cps: number[], from: number, to: number): number =>
      to - from === 1 ? this.symbolOf(cps[from]!) : index.get(fromCodePoints(cps, from, to)) ?? NO_SYMBOL;
    const keepMerge = (old: number): boolean => old >= 0;
    let k = 0;
    for (const [, id] of index) {
      const cps = pieceCps[k++]!;
      for (let j = 0; j + 1 < cps.length; j++) {
        this.pairs.set(this.symbolOf(cps[j]!), this.symbolOf(cps[j + 1]!), PAIR_ADJACENT, keepMerge);
        const left = symbolOfPart(cps, 0, j + 1);
        const right = symbolOfPart(cps, j + 1, cps.length);
        if (left !== NO_SYMBOL && right !== NO_SYMBOL) this.pairs.set(left, right, id);
      }
    }
  }

  private symbolOf(cp: number): number {
    return cp < 0x10000 ? this.bmpSymbol[cp]! : this.astralSymbol.get(cp) ?? NO_SYMBOL;
  }

  private setSymbol(cp: number, sym: number): void {
    if (cp < 0x10000) this.bmpSymbol[cp] = sym;
    else this.astralSymbol.set(cp, sym);
  }

  private addExtraSymbol(cp: number): void {
    this.setSymbol(cp, this.nPieces + this.extraCodePoint.length);
    this.extraCodePoint.push(cp);
    this.extraId.push(this.reservedChar.get(cp) ?? this.v.unkId);
  }

  private ensureCapacity(n: number): void {
    if (this.cps.length >= n) return;
    let cap = this.cps.length;
    while (cap < n) cap *= 2;
    this.cps = new Int32Array(cap);
    this.sym = new Int32Array(cap);
    this.cp0 = new Int32Array(cap);
    this.nextPos = new Int32Array(cap);
    this.prevPos = new Int32Array(cap);
    this.pairAt = new Int32Array(cap);
  }

  private ensureEntries(n: number): void {
    if (this.eLeft.length >= n) return;
    const cap = Math.max(n, this.eLeft.length * 2);
    const grow = (a: Int32Array): Int32Array => {
      const b = new Int32Array(cap);
      b.set(a);
      return b;
    };
    this.eLeft = grow(this.eLeft);
    this.eRight = grow(this.eRight);
    this.eLeftSym = grow(this.eLeftSym);
    this.eRightSym = grow(this.eRightSym);
    this.eMerged = grow(this.eMerged);
    this.heap = grow(this.heap);
    const scores = new Float64Array(cap);
    scores.set(this.eScore);
    this.eScore = scores;
  }

  /** An encoder with the same tables and its own working memory. */
  fork(): BpeEncoder {
    return new BpeEncoder(this.v, this);
  }

  /** Positions of working memory this encoder holds (it keeps what its longest text needed). */
  get capacity(): number {
    return this.cps.length;
  }

  /**
   * A lower bound of the number of ids encode(text) appends, from one pass over the text: the
   * characters normalization keeps (every one but spaces it removes), where a character some piece
   * contains costs at least 1/maxPieceLength of an id, and any other one a whole id with byte
   * fallback (its byte tokens) or nothing without (a run of them is one <unk>).
   */
  minTokens(text: string): number {
    const removeSpaces = this.v.normalizer.removeExtraWhitespaces;
    const space = this.v.normalizer.escapeWhitespaces ? SPACE_SYMBOL : 0x20;
    const bmp = this.bmpSymbol;
    const userDefined = this.userDefined.size > 0;
    let known = 0;
    let unknown = 0;
    for (let i = 0; i < text.length; i++) {
      let cp = text.charCodeAt(i);
      if (cp === 0x20) {
        if (removeSpaces) continue; // at most one of a run is kept: counting none is a lower bound
        cp = space;
      } else if (cp < 0xd800 && !userDefined) {
        if (bmp[cp] !== NO_SYMBOL) known++;
        else unknown++;
        continue;
      } else if (cp >= 0xd800 && cp <= 0xdfff) {
        // a surrogate pair is one code point; a lone surrogate becomes U+FFFD (as normalize())
        const lo = i + 1 < text.length ? text.charCodeAt(i + 1) : 0;
        if (cp <= 0xdbff && lo >= 0xdc00 && lo <= 0xdfff) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          i++;
        } else {
          cp = 0xfffd;
        }
      }
      if (this.symbolOf(cp) !== NO_SYMBOL || (userDefined && this.userDefined.has(cp))) known++;
      else unknown++;
    }
    return Math.ceil(known / this.maxPieceLength) + (this.v.byteFallback ? unknown : 0);
  }

  /** Appends the ids of `text` (no BOS/EOS) to `out`. */
  encode(text: string, out: number[]): void {
    const steps = this.encodeSteps(text, out);
    while (!steps.next().done);
  }

  /**
   * encode() in slices: the generator stops after every SLICE_SEGMENTS merged segments; the ids
   * are complete when it is done. Nothing else may use this encoder until then (see fork()).
   */
  *encodeSteps(text: string, out: number[]): Generator<void, void, void> {
    this.ensureCapacity(normalizedCapacity(text));
    const n = normalize(text, this.v.normalizer, this.cps);
    if (n === 0) return;
    const { cps, sym, cp0, pairAt } = this;
    this.revMerge.clear();
    const outStart = out.length;
    this.prevWasUnk = false;

    // Split into symbols (one per character, or one per user-defined piece) and cut segments.
    let count = 0; // symbols so far; positions are symbol indices
    let segStart = 0;
    let segments = 0;
    let i = 0;
    while (i < n) {
      const c = cps[i]!;
      let s = this.symbolOf(c);
      let width = 1;
      let frozen = false;
      if (this.userDefined.size > 0) {
        const match = this.matchUserDefined(i, n);
        if (match !== undefined) {
          s = match.id;
          width = match.cps.length;
          frozen = true;
        }
      }
      sym[count] = s;
      cp0[count] = frozen ? -1 : c;
      const prevSym = count > 0 ? sym[count - 1]! : NO_SYMBOL;
      const prevFrozen = count > 0 && cp0[count - 1] === -1;
      const pair = prevSym >= 0 && s >= 0 && !frozen && !prevFrozen ? this.pairs.get(prevSym, s) : PAIR_ABSENT;
      if (pair === PAIR_ABSENT && count > segStart) {
        this.mergeSegment(segStart, count, out);
        segStart = count;
        if (++segments === SLICE_SEGMENTS) {
          segments = 0;
          yield;
        }
      }
      pairAt[count] = pair;
      count++;
      i += width;
    }
    this.mergeSegment(segStart, count, out);
    if (this.hasUnused && this.revMerge.size > 0) this.resegmentUnused(out, outStart);
  }

  private matchUserDefined(i: number, n: number): { cps: number[]; id: number } | undefined {
    const list = this.userDefined.get(this.cps[i]!);
    if (list === undefined) return undefined;
    outer: for (const u of list) {
      if (i + u.cps.length > n) continue;
      for (let j = 1; j < u.cps.length; j++) if (this.cps[i + j] !== u.cps[j]) continue outer;
      return u;
    }
    return undefined;
  }

  // --- merging one segment [a, b) of symbol positions ------------------------------------

  private heapSize = 0;
  private entryCount = 0;

  /** Heap order: higher score first, then the leftmost pair. */
  private before(x: number, y: number): boolean {
    const sx = this.eScore[x]!;
    const sy = this.eScore[y]!;
    return sx > sy || (sx === sy && this.eLeft[x]! < this.eLeft[y]!);
  }

  private push(left: number, right: number, merged: number): void {
    this.ensureEntries(this.entryCount + 1);
    const e = this.entryCount++;
    this.eLeft[e] = left;
    this.eRight[e] = right;
    this.eLeftSym[e] = this.sym[left]!;
    this.eRightSym[e] = this.sym[right]!;
    this.eMerged[e] = merged;
    this.eScore[e] = this.v.scores[merged]!;
    if (this.isUnused[merged] === 1) this.revMerge.set(merged, [this.sym[left]!, this.sym[right]!]);
    const heap = this.heap;
    let k = this.heapSize++;
    while (k > 0) {
      const parent = (k - 1) >> 1;
      if (!this.before(e, heap[parent]!)) break;
      heap[k] = heap[parent]!;
      k = parent;
    }
    heap[k] = e;
  }

  private pop(): number {
    const heap = this.heap;
    const top = heap[0]!;
    const last = heap[--this.heapSize]!;
    let k = 0;
    const size = this.heapSize;
    for (;;) {
      let child = 2 * k + 1;
      if (child >= size) break;
      if (child + 1 < size && this.before(heap[child + 1]!, heap[child]!)) child++;
      if (!this.before(heap[child]!, last)) break;
      heap[k] = heap[child]!;
      k = child;
    }
    heap[k] = last;
    return top;
  }

  /** Looks up the pair (left, right) and queues it if it forms a piece. */
  private maybeAdd(left: number, right: number): void {
    if (left < 0 || right < 0) return;
    const a = this.sym[left]!;
    const b = this.sym[right]!;
    if (a < 0 || b < 0 || this.cp0[left] === -1 || this.cp0[right] === -1) return;
    const merged = this.pairs.get(a, b);
    if (merged >= 0) this.push(left, right, merged);
  }

  private mergeSegment(a: number, b: number, out: number[]): void {
    const { sym, nextPos, prevPos, pairAt } = this;
    if (b - a > 1) {
      for (let p = a; p < b; p++) {
        prevPos[p] = p - 1 >= a ? p - 1 : -1;
        nextPos[p] = p + 1 < b ? p + 1 : -1;
      }
      this.heapSize = 0;
      this.entryCount = 0;
      for (let p = a + 1; p < b; p++) {
        const merged = pairAt[p]!;
        if (merged >= 0) this.push(p - 1, p, merged);
      }
      while (this.heapSize > 0) {
        const e = this.pop();
        const left = this.eLeft[e]!;
        const right = this.eRight[e]!;
        // Stale: one side has changed (grown or been absorbed) since the entry was queued.
        if (sym[left] !== this.eLeftSym[e] || sym[right] !== this.eRightSym[e]) continue;
        sym[left] = this.eMerged[e]!;
        const after = nextPos[right]!;
        nextPos[left] = after;
        if (after >= 0) prevPos[after] = left;
        sym[right] = DEAD;
        this.maybeAdd(prevPos[left]!, left);
        this.maybeAdd(left, after);
      }
    }
    if (b - a === 1) {
      this.emit(sym[a]!, this.cp0[a]!, out);
      return;
    }
    // the first position is never absorbed (merges absorb the right neighbour)
    for (let p = a; p !== -1; p = nextPos[p]!) this.emit(sym[p]!, this.cp0[p]!, out);
  }

  // --- output --------------------------------------------------------------------------------

  private prevWasUnk = false;

  /** Emits one final symbol; `cp` is its character if it is a single unmerged one. */
  private emit(s: number, cp: number, out: number[]): void {
    // SentencePiece's PieceToId: a piece; else a reserved piece of that text; else <unk>
    const id = s >= 0 && s < this.nPieces ? s
      : s >= this.nPieces ? this.extraId[s - this.nPieces]!
      : this.reservedChar.get(cp) ?? this.v.unkId;
    const isUnk = id === this.v.unkId;
    if (isUnk && this.v.byteFallback) {
      const len = writeUtf8(cp, this.byteBuf, 0);
      for (let j = 0; j < len; j++) out.push(this.v.byteIds[this.byteBuf[j]!]!);
    } else if (isUnk && this.prevWasUnk) {
      // a run of unknown characters is one <unk>
    } else {
      if (id < 0) throw new LlamaError(`cannot encode U+${cp.toString(16).toUpperCase().padStart(4, '0')}: not in the vocabulary, which has no <unk> and no byte fallback`);
      out.push(id);
    }
    this.prevWasUnk = isUnk;
  }

  /** bpe_model.cc's resegment(): an UNUSED piece is replaced by the two parts it was merged from. */
  private resegmentUnused(out: number[], from: number): void {
    const tail = out.splice(from);
    this.prevWasUnk = false;
    const expand = (s: number): void => {
      const split = s >= 0 && s < this.nPieces && this.isUnused[s] === 1 ? this.revMerge.get(s) : undefined;
      if (split === undefined) {
        this.emit(s, s >= this.nPieces ? this.extraCodePoint[s - this.nPieces]! : -1, out);
        return;
      }
      expand(split[0]);
      expand(split[1]);
    };
    for (const id of tail) expand(id);
  }
}
