// A byte-fallback BPE trainer that reproduces SentencePiece's BPE trainer (bpe_model_trainer.cc +
// trainer_interface.cc) as llama2.c's `tinystories.py train_vocab` configures it:
//
//   model_type=bpe, normalization_rule_name=identity (add_dummy_prefix, remove_extra_whitespaces),
//   split_digits, allow_whitespace_only_pieces, byte_fallback, character_coverage=1.0,
//   split_by_whitespace, split_by_unicode_script, max_sentencepiece_length=16,
//   max_sentence_length=4192, unk/bos/eos = 0/1/2, no pad.
//
// The procedure, step by step:
//
// 1. Sentences. The original writes every story, stripped, followed by "\n" to a text file that
//    SentencePiece reads line by line, so a sentence is one line (one paragraph) of a story. Empty
//    lines, lines over 4192 bytes and lines containing U+2585 (SentencePiece's internal unknown
//    character) are skipped.
// 2. Normalization (identity rules): runs of spaces collapse to one, leading and trailing spaces go,
//    a dummy prefix space is added, every space becomes "▁" (U+2581), and "▁" left at the end
//    (literal ones included) are trimmed:
//    "Once upon  a time" → "▁Once▁upon▁a▁time". Then meta pieces that appear literally in the text
//    ("<s>", "</s>", "<unk>", "<0x41>"…) are replaced by a tab so they are never learned.
// 3. Words. Each sentence splits before every "▁" that does not continue a run of "▁"
//    ("▁a▁▁b" → "▁a", "▁▁b"), and identical words are counted once with their frequency.
// 4. Characters. Every code point that occurs (tab and NUL excepted) is a required character
//    (coverage 1.0) and gets a piece after the merges, ordered by frequency (then code point).
//    Tab and NUL stand for "unknown" during training: nothing merges across them.
// 5. Merges. Repeatedly take the adjacent symbol pair with the highest frequency (ties: fewer
//    characters first, then the smaller string in code point order), append it to the vocabulary
//    with score -(number of merges before it), and replace its occurrences left to right in every
//    word (in "aaa", "aa" is made once). A pair is never formed if its string would be longer than
//    16 characters, have "▁" anywhere but at the start (unless it is only "▁"s), contain a digit
//    next to anything, or mix Unicode scripts (Latin with punctuation, say). Two different pairs
//    can spell the same string ("aa"+"a" and "a"+"aa"); the second one is dropped, as in
//    SentencePiece. Merging stops when 3 + 256 + merges + characters = vocab_size.
//
// Frequencies are kept exact and incremental: every occurrence of a pair is a position in a word;
// merging at a position takes its word's count away from the two neighbouring pairs it destroys and
// adds it to the two it creates, and a lazy max-heap gives the best pair in O(log n). SentencePiece
// scans a "top 5%" active set instead, which picks the same pair (the winner is always among the
// most frequent pairs or newly created ones).
//
// The vocabulary: <unk>, <s>, </s>, the 256 byte pieces <0x00>…<0xFF>, the merged pieces, then the
// required characters; a text the vocabulary cannot spell falls back to byte pieces when encoding.

import { UsageError } from '../errors.js';
import { PieceType, type ModelPiece } from '../tokenizer/index.js';
import { pyStrip } from './stories.js';
import { scriptOf } from './unicode-script.js';

export interface BpeTrainingOptions {
  /** Total vocabulary size, special and byte pieces included. */
  readonly vocabSize: number;
  /** Longest merged piece, in characters (SentencePiece's max_sentencepiece_length). */
  readonly maxPieceLength?: number;
  /** Called after each accepted merge: (merges done, merges wanted). */
  readonly onMerge?: (done: number, total: number) => void;
}

export interface BpeTrainingResult {
  /** The whole vocabulary in id order (NORMAL pieces carry no type, as SentencePiece writes them). */
  readonly pieces: ModelPiece[];
  readonly mergeCount: number;
  readonly charCount: number;
  /** Sentences (lines) used, and distinct words they split into. */
  readonly sentenceCount: number;
  readonly wordCount: number;
}

export const WS = '\u2581'; // "▁", how SentencePiece spells a space
const WS_CP = 0x2581;
const UNK_CP = 0x2585; // SentencePiece's stand-in for characters outside the alphabet
const TAB_CP = 0x09;
const MAX_SENTENCE_BYTES = 4192;
const META_PIECE = /<unk>|<\/s>|<s>|<0x[0-9A-F]{2}>/g;
const BYTE_PIECES = 256;
const SPECIAL_PIECES = 3; // <unk> <s> </s>

/** `n` as the byte piece SentencePiece writes: "<0x0A>". */
export function bytePiece(n: number): string {
  return `<0x${n.toString(16).toUpperCase().padStart(2, '0')}>`;
}

/** SentencePiece's identity normalization of one line (step 2 above); '' when nothing is left. */
export function normalizeSentence(line: string): string {
  const parts = line.split(' ').filter((p) => p !== '');
  // trailing "▁" go too, spaces or not: SentencePiece trims its output, where they look the same
  let end = parts.length;
  while (end > 0 && /^\u2581*$/.test(parts[end - 1]!)) end--;
  if (end === 0) return '';
  if (end < parts.length) parts.length = end;
  parts[end - 1] = parts[end - 1]!.replace(/\u2581+$/, '');
  return (WS + parts.join(WS)).replace(META_PIECE, '\t');
}

/** SentencePiece's SplitIntoWords with allow_whitespace_only_pieces (step 3 above). */
export function splitWords(normalized: string): string[] {
  const words: string[] = [];
  let start = 0;
  let inWsRun = false;
  for (let i = 0; i < normalized.length; i++) {
    const isWs = normalized.charCodeAt(i) === WS_CP;
    if (i === 0 || (isWs && !inWsRun)) {
      if (i > 0) words.push(normalized.slice(start, i));
      start = i;
      inWsRun = true;
    }
    if (inWsRun && !isWs) inWsRun = false;
  }
  if (normalized.length > 0) words.push(normalized.slice(start));
  return words;
}

const utf8 = new TextEncoder();

/** Collects the word counts of a corpus, story by story; then `train` builds the vocabulary. */
export class BpeTrainer {
  private readonly words = new Map<string, number>();
  private sentences = 0;

  /** Adds one story: stripped, split into lines, each line a sentence (steps 1-3). */
  addStory(story: string): void {
    for (const line of pyStrip(story).split('\n')) this.addSentence(line);
  }

  /** Adds one raw line of text as a sentence. */
  addSentence(line: string): void {
    if (line === '' || line.includes('\u2585')) return;
    // UTF-8 length without encoding when the line is surely short enough (≤ 3 bytes per unit)
    if (line.length * 3 > MAX_SENTENCE_BYTES && utf8.encode(line).length > MAX_SENTENCE_BYTES) return;
    const normalized = normalizeSentence(line);
    if (normalized === '') return;
    this.sentences++;
    for (const w of splitWords(normalized)) this.words.set(w, (this.words.get(w) ?? 0) + 1);
  }

  get sentenceCount(): number {
    return this.sentences;
  }

  /** Learns the vocabulary (steps 4-5). Throws UsageError when vocabSize does not fit the corpus. */
  train(options: BpeTrainingOptions): BpeTrainingResult {
    const { vocabSize } = options;
    const maxLen = options.maxPieceLength ?? 16;
    if (this.words.size === 0) throw new UsageError('train-vocab: the input has no text to learn from');

    // ---- step 4: the alphabet (required characters) by frequency
    const charFreq = new Map<number, number>();
    for (const [w, n] of this.words) {
      for (const ch of w) {
        const cp = ch.codePointAt(0)!;
        if (cp !== 0) charFreq.set(cp, (charFreq.get(cp) ?? 0) + n);
      }
    }
    charFreq.delete(TAB_CP);
    const alphabet = [...charFreq.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]);
    const fixed = SPECIAL_PIECES + BYTE_PIECES;
    if (fixed + alphabet.length > vocabSize) {
      throw new UsageError(`vocabulary size ${vocabSize} is smaller than the ${fixed} special and byte pieces plus the ${alphabet.length} characters of the input; use --vocab-size ${fixed + alphabet.length} or more`);
    }
    const mergesWanted = vocabSize - fixed - alphabet.length;

    // ---- symbols: characters first, then pairs as they are created
    const sym = new SymbolTable(maxLen);
    const charSymbol = new Map<number, number>();
    for (const [cp] of alphabet) charSymbol.set(cp, sym.addChar(cp));
    const unkSymbol = sym.addUnknown();

    // ---- the words as one array of symbol ids; -1 marks a position merged into its left neighbour
    let total = 0;
    for (const w of this.words.keys()) total += countCodePoints(w);
    const seq = new Int32Array(total);
    const wordOf = new Int32Array(total);
    const wordEnd: number[] = [];
    const wordFreq: number[] = [];
    let at = 0;
    for (const [w, n] of this.words) {
      const id = wordFreq.length;
      for (const ch of w) {
        seq[at] = charSymbol.get(ch.codePointAt(0)!) ?? unkSymbol;
        wordOf[at++] = id;
      }
      wordEnd.push(at);
      wordFreq.push(n);
    }

    // every adjacent pair is a position of its pair symbol
    const firstPair = sym.size;
    for (let i = 0; i + 1 < total; i++) {
      if (wordOf[i] !== wordOf[i + 1]) continue;
      const s = sym.pair(seq[i]!, seq[i + 1]!, true);
      if (s < 0) continue;
      sym.positions[s]!.push(i);
      sym.freq[s]! += wordFreq[wordOf[i]!]!;
    }
    if (seq.includes(unkSymbol)) sym.cacheSize++;

    // ---- step 5: the merges
    const merged: string[] = [];
    const seen = new Set<string>();
    const touched: number[] = [];
    const stamp: number[] = [];
    let round = 0;
    let best = -1;
    const touch = (s: number): void => {
      if (stamp[s] !== round) {
        stamp[s] = round;
        touched.push(s);
      }
    };
    // A pair of two different symbols never overlaps itself, so its count follows by deltas. A pair
    // like ("s", "s") is recounted instead, as SentencePiece does: positions sorted, and one that
    // starts where the previously counted one ends ("sss": the second "ss") is dropped for good.
    const isDouble = (s: number): boolean => sym.left[s] === sym.right[s];
    const lose = (s: number, n: number): void => {
      if (s < 0 || s === best) return;
      if (isDouble(s)) sym.dirty[s] = true;
      else sym.freq[s]! -= n;
      touch(s);
    };
    const gain = (s: number, position: number, n: number): void => {
      if (s < 0) return;
      sym.positions[s]!.push(position);
      if (isDouble(s)) sym.dirty[s] = true;
      else sym.freq[s]! += n;
      sym.active[s] = true; // a pair that gains an occurrence joins the active set
      touch(s);
    };
    const recount = (s: number): void => {
      const half = sym.left[s]!;
      const step = sym.len[half]!;
      const kept: number[] = [];
      let freq = 0;
      let prevEnd = -1;
      let last = -1;
      for (const l of Int32Array.from(sym.positions[s]!).sort()) {
        if (l === last) continue;
        last = l;
        const r = l + step;
        const live = seq[l] === half && r < total && wordOf[r] === wordOf[l] && seq[r] === half;
        if (!live || l === prevEnd) {
          prevEnd = -1;
          continue;
        }
        kept.push(l);
        freq += wordFreq[wordOf[l]!]!;
        prevEnd = r;
      }
      sym.positions[s] = kept;
      sym.freq[s] = freq;
      sym.dirty[s] = false;
    };
    const prevIndex = (i: number): number => {
      const w = wordOf[i]!;
      for (let j = i - 1; j >= 0 && wordOf[j] === w; j--) if (seq[j]! >= 0) return j;
      return -1;
    };
    for (let s = firstPair; s < sym.size; s++) if (isDouble(s)) sym.dirty[s] = true;

    // SentencePiece picks the best pair among an "active set": every 100 merges, the most frequent
    // max(1000, 5% of all symbols) pairs, plus any pair that gains an occurrence in between. The
    // winner is nearly always the global best, but which pairs get recounted when (see recount)
    // depends on it, so it is kept exactly (ties at the cut are taken in heap order).
    const heap = new PairHeap(sym);
    const refresh = (): void => {
      const live: number[] = [];
      for (let s = firstPair; s < sym.size; s++) {
        if (sym.retired[s]) continue;
        if (sym.dirty[s]) recount(s);
        sym.active[s] = false;
        live.push(s);
      }
      const top = Math.min(Math.max(1000, Math.trunc(Math.fround(sym.cacheSize * Math.fround(0.05)))), live.length);
      const freqs = Float64Array.from(live, (s) => sym.freq[s]!).sort();
      const cut = top > 0 ? freqs[freqs.length - top]! : Infinity;
      const atCut: number[] = [];
      let chosen = 0;
      for (const s of live) {
        if (sym.freq[s]! > cut) {
          sym.active[s] = true;
          chosen++;
        } else if (sym.freq[s] === cut) atCut.push(s);
      }
      atCut.sort((a, b) => heap.compare(a, b));
      for (let i = 0; i < top - chosen; i++) sym.active[atCut[i]!] = true;
      heap.clear();
      for (const s of live) if (sym.active[s] && sym.freq[s]! > 0) heap.push(s);
    };

    while (merged.length < mergesWanted) {
      if (merged.length % 100 === 0) refresh();
      best = heap.popBest();
      if (best < 0) {
        throw new UsageError(`vocabulary size ${vocabSize} is too high for this input: at most ${fixed + merged.length + alphabet.length} pieces can be learned`);
      }
      const bestStr = sym.str[best]!;
      sym.retire(best);
      if (seen.has(bestStr)) continue; // another pair already spelled this string
      seen.add(bestStr);
      merged.push(bestStr);
      round++;
      touched.length = 0;

      const left = sym.left[best]!;
      const right = sym.right[best]!;
      const leftLen = sym.len[left]!;
      const positions = Int32Array.from(sym.positions[best]!).sort();
      sym.positions[best] = [];
      let last = -1;
      for (const l of positions) {
        if (l === last) continue;
        last = l;
        const r = l + leftLen;
        // stale: an earlier merge (possibly in this very loop, "aaa") changed one side
        if (seq[l] !== left || r >= total || wordOf[r] !== wordOf[l] || seq[r] !== right) continue;
        const w = wordOf[l]!;
        const n = wordFreq[w]!;
        const p = prevIndex(l);
        const next = r + sym.len[right]!;
        const nx = next < wordEnd[w]! ? next : -1;
        // the pairs (prev, left) and (right, next) lose this occurrence
        if (p >= 0) lose(sym.pair(seq[p]!, left, false), n);
        if (nx >= 0) lose(sym.pair(right, seq[nx]!, false), n);
        seq[l] = best;
        seq[r] = -1;
        // and (prev, best), (best, next) gain it
        if (p >= 0) gain(sym.pair(seq[p]!, best, true), p, n);
        if (nx >= 0) gain(sym.pair(best, seq[nx]!, true), l, n);
      }
      // SentencePiece recounts an active pair before the next pick, an inactive one at the next refresh
      for (const s of touched) {
        if (!sym.active[s]) continue;
        if (sym.dirty[s]) recount(s);
        if (sym.freq[s]! > 0) heap.push(s);
      }
      options.onMerge?.(merged.length, mergesWanted);
    }

    // ---- the vocabulary in id order
    const pieces: ModelPiece[] = [
      { piece: '<unk>', score: 0, type: PieceType.UNKNOWN },
      { piece: '<s>', score: 0, type: PieceType.CONTROL },
      { piece: '</s>', score: 0, type: PieceType.CONTROL },
    ];
    for (let b = 0; b < BYTE_PIECES; b++) pieces.push({ piece: bytePiece(b), score: 0, type: PieceType.BYTE });
    let order = 0;
    for (const piece of merged) pieces.push({ piece, score: -order++ });
    for (const [cp] of alphabet) pieces.push({ piece: String.fromCodePoint(cp), score: -order++ });
    return { pieces, mergeCount: merged.length, charCount: alphabet.length, sentenceCount: this.sentences, wordCount: this.words.size };
  }
}

function countCodePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xdc00 || c > 0xdfff) n++; // count everything but the low half of a surrogate pair
  }
  return n;
}

/** Characters and pair symbols: what they spell, how often they occur now, and where. */
class SymbolTable {
  readonly str: string[] = [];
  readonly len: number[] = []; //       characters
  readonly left: number[] = []; //      -1 for a character
  readonly right: number[] = [];
  readonly freq: number[] = []; //      summed counts of the words at its live positions
  readonly positions: number[][] = []; // index in `seq` of its left half (may hold stale entries)
  readonly active: boolean[] = []; //   in SentencePiece's active set
  readonly retired: boolean[] = []; //  chosen, or dropped as a duplicate
  readonly dirty: boolean[] = []; //    a self-pair ("s","s") whose count must be redone
  /** Live symbols (characters in use and pairs not retired): SentencePiece's symbols_cache_ size. */
  cacheSize = 0;
  private readonly unknown: boolean[] = [];
  private readonly pairs = new Map<number, number>(); // left * 2^26 + right → symbol, or -1 if invalid

  constructor(private readonly maxLen: number) {}

  get size(): number {
    return this.str.length;
  }

  private add(str: string, len: number, left: number, right: number, unknown: boolean): number {
    this.str.push(str);
    this.len.push(len);
    this.left.push(left);
    this.right.push(right);
    this.freq.push(0);
    this.positions.push([]);
    this.active.push(false);
    this.retired.push(false);
    this.dirty.push(false);
    this.unknown.push(unknown);
    if (!unknown) this.cacheSize++;
    return this.str.length - 1;
  }

  addChar(cp: number): number {
    return this.add(String.fromCodePoint(cp), 1, -1, -1, false);
  }

  addUnknown(): number {
    return this.add(String.fromCodePoint(UNK_CP), 1, -1, -1, true);
  }

  /** The pair symbol of (a, b); with `create`, made on first use. -1 when it may not exist. */
  pair(a: number, b: number, create: boolean): number {
    if (this.unknown[a] || this.unknown[b]) return -1;
    const key = a * 67108864 + b;
    const s = this.pairs.get(key);
    if (s !== undefined) return s;
    if (!create) return -1;
    const len = this.len[a]! + this.len[b]!;
    const str = this.str[a]! + this.str[b]!;
    const id = len <= this.maxLen && isValidPiece(str, this.maxLen) ? this.add(str, len, a, b, false) : -1;
    this.pairs.set(key, id);
    return id;
  }

  /** Takes a chosen (or duplicate) pair out of play for good. */
  retire(s: number): void {
    this.active[s] = false;
    this.retired[s] = true;
    this.cacheSize--;
    this.pairs.set(this.left[s]! * 67108864 + this.right[s]!, -1);
  }
}

/**
 * SentencePiece's IsValidSentencePiece for this configuration: 1…16 characters, no unknown/NUL/tab/space, "▁" only
 * as a prefix unless the piece is all "▁", digits only alone, one Unicode script per piece
 * (Hiragana and Katakana count as Han; combining marks take their base's script).
 */
export function isValidPiece(piece: string, maxLength = 16): boolean {
  const cps = Array.from(piece, (c) => c.codePointAt(0)!);
  if (cps.length === 0 || cps.length > maxLength) return false;
  const allWs = cps.every((c) => c === WS_CP);
  let prevScript: string | null = null;
  for (let pos = 0; pos < cps.length; pos++) {
    const c = cps[pos]!;
    if (c === UNK_CP || c === 0 || c === TAB_CP || c === 0x20) return false;
    if (c === WS_CP) {
      if (!allWs && pos > 0) return false;
      continue;
    }
    let s: string | null = scriptOf(c);
    if (s === 'Hira' || s === 'Kana' || c === 0x30fc) s = 'Hani';
    else if (s === 'Zinh') s = prevScript;
    const digit = (c >= 0x30 && c <= 0x39) || (c >= 0xff10 && c <= 0xff19);
    if (digit && cps.length > 1) return false;
    if (s !== null && prevScript !== null && s !== prevScript) return false;
    prevScript = s;
  }
  return true;
}

/** Compares strings by code point (= UTF-8 byte order, what std::string's < does). */
function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

/** The pick order: higher frequency, then fewer characters, then smaller string, then older. */
function rank(fa: number, a: number, fb: number, b: number, t: SymbolTable): number {
  if (fa !== fb) return fb - fa;
  if (t.len[a] !== t.len[b]) return t.len[a]! - t.len[b]!;
  return compareCodePoints(t.str[a]!, t.str[b]!) || a - b;
}

/**
 * A lazy max-heap of (frequency, symbol) entries: an entry whose frequency no longer matches its
 * symbol, or whose symbol was retired, is dropped when it reaches the top. Order: higher frequency,
 * then fewer characters, then smaller string, then older symbol.
 */
class PairHeap {
  private readonly freqs: number[] = [];
  private readonly syms: number[] = [];

  constructor(private readonly table: SymbolTable) {}

  /** Negative when symbol a ranks before symbol b at their current frequencies. */
  compare(a: number, b: number): number {
    const t = this.table;
    return rank(t.freq[a]!, a, t.freq[b]!, b, t);
  }

  private better(i: number, j: number): boolean {
    return rank(this.freqs[i]!, this.syms[i]!, this.freqs[j]!, this.syms[j]!, this.table) < 0;
  }

  clear(): void {
    this.freqs.length = 0;
    this.syms.length = 0;
  }

  private swap(i: number, j: number): void {
    const f = this.freqs[i]!;
    this.freqs[i] = this.freqs[j]!;
    this.freqs[j] = f;
    const s = this.syms[i]!;
    this.syms[i] = this.syms[j]!;
    this.syms[j] = s;
  }

  push(symbol: number): void {
    this.freqs.push(this.table.freq[symbol]!);
    this.syms.push(symbol);
    let i = this.syms.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.better(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  private pop(): void {
    const last = this.syms.length - 1;
    this.swap(0, last);
    this.freqs.pop();
    this.syms.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < last && this.better(l, m)) m = l;
      if (r < last && this.better(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
  }

  /** The best live symbol with a positive frequency (removed from the heap), or -1. */
  popBest(): number {
    while (this.syms.length > 0) {
      const s = this.syms[0]!;
      const f = this.freqs[0]!;
      this.pop();
      if (this.table.active[s] && this.table.freq[s] === f && f > 0) return s;
    }
    return -1;
  }
}
