// UTF-8 the way SentencePiece sees it. Its rule for malformed input (string_util::DecodeUTF8):
// a byte that does not start a valid, shortest-form sequence of a Unicode scalar value is ONE
// replacement character U+FFFD, and decoding resumes at the next byte. (The WHATWG decoder behind
// TextDecoder may fold several bad bytes into one U+FFFD, so it is not used where ids depend on it.)

export const REPLACEMENT_CHARACTER = 0xfffd;

/** Writes the UTF-8 bytes of `cp` at `out[at]`; returns the number written. */
export function writeUtf8(cp: number, out: Uint8Array, at: number): number {
  if (cp < 0x80) {
    out[at] = cp;
    return 1;
  }
  if (cp < 0x800) {
    out[at] = 0xc0 | (cp >> 6);
    out[at + 1] = 0x80 | (cp & 0x3f);
    return 2;
  }
  if (cp < 0x10000) {
    out[at] = 0xe0 | (cp >> 12);
    out[at + 1] = 0x80 | ((cp >> 6) & 0x3f);
    out[at + 2] = 0x80 | (cp & 0x3f);
    return 3;
  }
  out[at] = 0xf0 | (cp >> 18);
  out[at + 1] = 0x80 | ((cp >> 12) & 0x3f);
  out[at + 2] = 0x80 | ((cp >> 6) & 0x3f);
  out[at + 3] = 0x80 | (cp & 0x3f);
  return 4;
}

const isTrail = (b: number): boolean => (b & 0xc0) === 0x80;
const isScalar = (cp: number): boolean => cp < 0xd800 || (cp >= 0xe000 && cp <= 0x10ffff);

/**
 * Length of the valid UTF-8 character at `bytes[at]` (1–4), or 0 if the bytes there are not one
 * (malformed, or cut off by `end`).
 */
export function validCharLength(bytes: Uint8Array, at: number, end: number): number {
  const b0 = bytes[at]!;
  if (b0 < 0x80) return 1;
  const avail = end - at;
  if ((b0 & 0xe0) === 0xc0) {
    if (avail < 2 || !isTrail(bytes[at + 1]!)) return 0;
    const cp = ((b0 & 0x1f) << 6) | (bytes[at + 1]! & 0x3f);
    return cp >= 0x80 ? 2 : 0;
  }
  if ((b0 & 0xf0) === 0xe0) {
    if (avail < 3 || !isTrail(bytes[at + 1]!) || !isTrail(bytes[at + 2]!)) return 0;
    const cp = ((b0 & 0x0f) << 12) | ((bytes[at + 1]! & 0x3f) << 6) | (bytes[at + 2]! & 0x3f);
    return cp >= 0x800 && isScalar(cp) ? 3 : 0;
  }
  if ((b0 & 0xf8) === 0xf0) {
    if (avail < 4 || !isTrail(bytes[at + 1]!) || !isTrail(bytes[at + 2]!) || !isTrail(bytes[at + 3]!)) return 0;
    const cp = ((b0 & 0x07) << 18) | ((bytes[at + 1]! & 0x3f) << 12) | ((bytes[at + 2]! & 0x3f) << 6) | (bytes[at + 3]! & 0x3f);
    return cp >= 0x10000 && isScalar(cp) ? 4 : 0;
  }
  return 0;
}

/**
 * Could `bytes[at..end)` still become a valid character if more bytes arrived? True for a proper
 * prefix of a valid sequence (e.g. the first 2 bytes of a 4-byte emoji) — a streaming decoder
 * holds such bytes back instead of printing U+FFFD.
 */
export function isIncompleteChar(bytes: Uint8Array, at: number, end: number): boolean {
  const n = end - at;
  const b0 = bytes[at]!;
  const need = (b0 & 0xe0) === 0xc0 ? 2 : (b0 & 0xf0) === 0xe0 ? 3 : (b0 & 0xf8) === 0xf0 ? 4 : 0;
  if (need === 0 || n >= need) return false;
  for (let i = 1; i < n; i++) if (!isTrail(bytes[at + i]!)) return false;
  // Reject prefixes that can only end as an overlong form, a surrogate or > U+10FFFF.
  if (n >= 2) {
    const b1 = bytes[at + 1]!;
    if (need === 2) return b0 >= 0xc2;
    if (need === 3) {
      if (b0 === 0xe0 && b1 < 0xa0) return false;
      if (b0 === 0xed && b1 >= 0xa0) return false;
    } else {
      if (b0 === 0xf0 && b1 < 0x90) return false;
      if (b0 === 0xf4 && b1 >= 0x90) return false;
      if (b0 > 0xf4) return false;
    }
  } else if (need === 2 && b0 < 0xc2) {
    return false;
  } else if (need === 4 && b0 > 0xf4) {
    return false;
  }
  return true;
}

// For runs already checked valid (ignoreBOM: a leading U+FEFF is text, not a byte-order mark).
const validRunDecoder = new TextDecoder('utf-8', { ignoreBOM: true });

/** Decodes bytes[start..end) with SentencePiece's rule (one U+FFFD per malformed byte). */
export function decodeUtf8(bytes: Uint8Array, start = 0, end = bytes.length): string {
  let out = '';
  let runStart = start; // start of the current run of valid bytes
  let i = start;
  while (i < end) {
    const n = validCharLength(bytes, i, end);
    if (n > 0) {
      i += n;
      continue;
    }
    if (i > runStart) out += validRunDecoder.decode(bytes.subarray(runStart, i));
    out += '\ufffd';
    i += 1;
    runStart = i;
  }
  if (end > runStart) out += validRunDecoder.decode(bytes.subarray(runStart, end));
  return out;
}
