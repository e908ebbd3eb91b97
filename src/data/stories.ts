// Story sources: the three layouts the data pipeline reads, all yielding plain story strings.
//
//   *.json   a TinyStories shard: a JSON array of objects, each with a string field `story`
//            (the other fields — instruction, summary, source — are ignored)
//   *.jsonl  one JSON object per line, each with a string field `story`; blank lines are skipped
//   other    UTF-8 text where stories are separated by lines that read exactly `<|endoftext|>`
//            (TinyStories-train.txt / -valid.txt); text after the last separator is a story too
//
// Bytes must be valid UTF-8 and strings well-formed Unicode (no lone surrogates from JSON `\ud800`
// escapes): the tokenizers work on code points, and the original pipeline (Python) would fail on
// such input too, so it is a FormatError here rather than a silent replacement character.

import { extname } from 'node:path';
import { FormatError } from '../errors.js';
import { readWholeFile } from '../files.js';

/** The separator line between stories in the TinyStories text files. */
export const END_OF_TEXT = '<|endoftext|>';

export type StoryFormat = 'json' | 'jsonl' | 'text';

/** The layout of a story file, from its name. */
export function storyFormatOf(path: string): StoryFormat {
  const ext = extname(path).toLowerCase();
  return ext === '.json' ? 'json' : ext === '.jsonl' ? 'jsonl' : 'text';
}

/** Reads a whole file as strict UTF-8 (FormatError on invalid bytes, naming the byte offset). */
export function readUtf8File(path: string): string {
  return decodeUtf8(path, readWholeFile(path));
}

const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Decodes UTF-8 strictly; on failure, finds the first bad byte so the message can point at it. */
export function decodeUtf8(path: string, bytes: Uint8Array): string {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    throw new FormatError(path, `invalid UTF-8 at byte ${firstInvalidUtf8(bytes)}`);
  }
}

/** Offset of the first byte that does not start or continue a valid UTF-8 sequence. */
function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    const n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (n === 0 || i + n > b.length) return i;
    for (let k = 1; k < n; k++) if ((b[i + k]! & 0xc0) !== 0x80) return i;
    const cp = n === 2 ? 0 : n === 3 ? ((c & 0x0f) << 12) | ((b[i + 1]! & 0x3f) << 6) : ((c & 0x07) << 18) | ((b[i + 1]! & 0x3f) << 12);
    if ((n === 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n === 4 && (cp < 0x10000 || cp > 0x10ffff))) return i;
    i += n;
  }
  return b.length;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * The stories of one file, in file order, unstripped (callers strip with `pyStrip`, as the original
 * pipeline strips each story). Throws FormatError for malformed JSON, records without a string
 * `story`, lone surrogates, or a file that holds no story at all.
 */
export function readStories(path: string, format: StoryFormat = storyFormatOf(path)): string[] {
  return parseStories(path, readUtf8File(path), format);
}

/** `readStories` on text already in memory (`path` is only used in messages). */
export function parseStories(path: string, text: string, format: StoryFormat): string[] {
  let stories: string[];
  if (format === 'json') stories = parseJsonShard(path, text);
  else if (format === 'jsonl') stories = parseJsonLines(path, text);
  else stories = splitTextStories(text);
  if (stories.length === 0) throw new FormatError(path, 'no stories found (empty file?)');
  for (let i = 0; i < stories.length; i++) {
    if (LONE_SURROGATE.test(stories[i]!)) throw new FormatError(path, `story ${i}: contains a lone UTF-16 surrogate (not valid Unicode)`);
  }
  return stories;
}

function storyOf(path: string, record: unknown, where: string): string {
  if (record === null || typeof record !== 'object' || Array.isArray(record)) throw new FormatError(path, `${where}: expected an object with a "story" field`);
  const story = (record as Record<string, unknown>)['story'];
  if (story === undefined) throw new FormatError(path, `${where}: missing "story" field`);
  if (typeof story !== 'string') throw new FormatError(path, `${where}: "story" is not a string`);
  return story;
}

function parseJsonShard(path: string, text: string): string[] {
  if (text.trim() === '') return [];
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new FormatError(path, `not valid JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(data)) throw new FormatError(path, 'expected a JSON array of stories (a TinyStories shard)');
  return data.map((record, i) => storyOf(path, record, `record ${i}`));
}

function parseJsonLines(path: string, text: string): string[] {
  const stories: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch (err) {
      throw new FormatError(path, `line ${i + 1}: not valid JSON (${(err as Error).message})`);
    }
    stories.push(storyOf(path, record, `line ${i + 1}`));
  }
  return stories;
}

/** Splits on separator lines; stories that are empty after stripping are dropped. */
export function splitTextStories(text: string): string[] {
  const stories: string[] = [];
  let current: string[] = [];
  const flush = (): void => {
    const story = current.join('\n');
    if (pyStrip(story) !== '') stories.push(story);
    current = [];
  };
  for (const line of text.split('\n')) {
    if (line.trim() === END_OF_TEXT) flush();
    else current.push(line);
  }
  flush();
  return stories;
}

// Python's str.strip() (what the original pipeline applies to each story) removes the characters
// for which str.isspace() is true. JavaScript's trim() differs: it also strips U+FEFF and keeps
// U+001C..U+001F and U+0085, so the exact set is spelled out here.
const PY_SPACE = '\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000';

/** Python's `str.strip()`. */
export function pyStrip(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && PY_SPACE.includes(s[a]!)) a++;
  while (b > a && PY_SPACE.includes(s[b - 1]!)) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}
