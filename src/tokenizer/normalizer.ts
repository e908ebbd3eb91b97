// SentencePiece's text normalizer for the "identity" rule (the only rule llama2.c-style BPE
// vocabularies use: Llama 2's tokenizer.model and the vocabularies trained by train_vocab.sh).
// It works on Unicode code points and reproduces normalizer.cc exactly:
//
//   1. remove_extra_whitespaces: drop leading spaces (U+0020 only; tabs and newlines are text);
//   2. add_dummy_prefix: put one space symbol in front, so "world" and " world" tokenize alike;
//   3. every space becomes the space symbol ▁ (U+2581) when escape_whitespaces is on;
//   4. remove_extra_whitespaces: a space right after a space is dropped (runs collapse to one),
//      and trailing space symbols are removed at the end (a literal ▁ in the input counts too);
//   5. treat_whitespace_as_suffix puts the dummy space at the end instead of the front.
//
// An input that is empty (or only spaces, when they are removed) normalizes to nothing, so it
// encodes to no pieces at all — not to a lone "▁".

export const SPACE_SYMBOL = 0x2581; // ▁ LOWER ONE EIGHTH BLOCK

export interface NormalizerOptions {
  readonly addDummyPrefix: boolean;
  readonly removeExtraWhitespaces: boolean;
  readonly escapeWhitespaces: boolean;
  readonly treatWhitespaceAsSuffix: boolean;
}

/** Upper bound of normalize()'s output length for `text`. */
export function normalizedCapacity(text: string): number {
  return text.length + 1;
}

/**
 * Writes the normalized code points of `text` into `out` (capacity ≥ normalizedCapacity(text))
 * and returns how many there are. Lone UTF-16 surrogates become U+FFFD.
 */
export function normalize(text: string, opts: NormalizerOptions, out: Int32Array): number {
  const len = text.length;
  const space = opts.escapeWhitespaces ? SPACE_SYMBOL : 0x20;
  const removeExtra = opts.removeExtraWhitespaces;
  let i = 0;
  if (removeExtra) while (i < len && text.charCodeAt(i) === 0x20) i++;
  if (i === len) return 0;

  let n = 0;
  if (opts.addDummyPrefix && !opts.treatWhitespaceAsSuffix) out[n++] = space;
  let prevSpace = removeExtra;
  while (i < len) {
    let cp = text.charCodeAt(i++);
    if (cp >= 0xd800 && cp <= 0xdfff) {
      // UTF-16 surrogate pair → one code point; a lone surrogate is not text.
      const lo = i < len ? text.charCodeAt(i) : 0;
      if (cp <= 0xdbff && lo >= 0xdc00 && lo <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        i++;
      } else {
        cp = 0xfffd;
      }
    }
    if (cp === 0x20) {
      if (prevSpace) continue;
      out[n++] = space;
      prevSpace = removeExtra;
    } else {
      out[n++] = cp;
      prevSpace = false;
    }
  }
  if (removeExtra) while (n > 0 && out[n - 1] === space) n--;
  if (opts.addDummyPrefix && opts.treatWhitespaceAsSuffix) out[n++] = space;
  return n;
}
