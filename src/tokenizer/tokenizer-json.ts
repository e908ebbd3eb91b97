// Hugging Face tokenizer.json for Llama-2-style tokenizers: SentencePiece BPE with byte fallback,
// as the tokenizers library stores it (what transformers' LlamaConverter writes):
//
//   model           { type: "BPE", vocab: { piece: id }, merges: ["a b", …] or [["a", "b"], …],
//                     unk_token, byte_fallback, fuse_unk, dropout: null, … }
//   added_tokens    [{ id, content, special, … }]  — <unk>, <s>, </s> (and any user-defined ones)
//   normalizer      Sequence[Prepend("▁"), Replace(" " → "▁")]     (the "legacy" Llama form), or
//   pre_tokenizer   Metaspace(replacement "▁", prepend_scheme "first", split false) with no normalizer
//   decoder, post_processor   how to decode and where BOS goes (the Tokenizer does both itself)
//
// Such a file is the SentencePiece model in another dress, so it loads into the same Vocabulary
// and is encoded by the same exact SentencePiece BPE (bpe.ts): pieces and types from the vocab and
// the added tokens (special → CONTROL, the unk_token → UNKNOWN, non-special → USER_DEFINED, <0xNN>
// → BYTE when byte_fallback is on), and scores from the merges: SentencePiece merges the adjacent
// pair whose piece has the highest score, tokenizers the pair whose merge comes first, and the
// converter lists merges in descending score order — so a piece's score is minus the rank of the
// first merge that makes it.
//
// SentencePiece's remove_extra_whitespaces (which tok512 uses, and LlamaConverter drops) is written
// and recognised as Replace(Regex "^ +" → ""), Replace(Regex " {2,}" → " ") before the prefix and
// Replace(Regex "▁+$" → "") after the escape. Other normalizers, pre-tokenizers (ByteLevel: GPT-2
// and Llama 3 style) and model types are refused with a message. As with the .model, text is never
// searched for special tokens: "<s>" in a prompt is text, not BOS.

import { FormatError, quote } from '../errors.js';
import type { NormalizerOptions } from './normalizer.js';
import { PieceType } from './sentencepiece-model.js';
import { fromPieces, pieceToByte, type Vocabulary } from './vocabulary.js';

const SPACE = '\u2581';

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** One normalizer step, as recognised. */
type Step = 'prefix' | 'escape' | 'stripLeading' | 'collapse' | 'stripTrailing';

function recogniseStep(n: Json): Step | undefined {
  const pattern = n['pattern'] as Json | undefined;
  if (n['type'] === 'Prepend' && n['prepend'] === SPACE) return 'prefix';
  if (n['type'] !== 'Replace' || !isObject(pattern)) return undefined;
  if (pattern['String'] === ' ' && n['content'] === SPACE) return 'escape';
  if (pattern['Regex'] === '^ +' && n['content'] === '') return 'stripLeading';
  if (pattern['Regex'] === ' {2,}' && n['content'] === ' ') return 'collapse';
  if (pattern['Regex'] === `${SPACE}+$` && n['content'] === '') return 'stripTrailing';
  return undefined;
}

/** SentencePiece's normalizer options from tokenizer.json's normalizer and pre_tokenizer. */
function normalizerOptions(json: Json, file: string): NormalizerOptions {
  const normalizer = json['normalizer'];
  const pre = json['pre_tokenizer'];
  const refuse = (what: string): never => {
    throw new FormatError(file, `${what} is not one a SentencePiece (Llama 2 style) tokenizer uses`);
  };
  if (normalizer === null || normalizer === undefined) {
    // the newer Llama form: the Metaspace pre-tokenizer adds the prefix and escapes spaces
    if (!isObject(pre) || pre['type'] !== 'Metaspace' || pre['replacement'] !== SPACE) refuse(`pre_tokenizer ${quote(pre ?? null)}`);
    const p = pre as Json;
    if (p['split'] === true) refuse('a Metaspace pre-tokenizer that splits words');
    const scheme = p['prepend_scheme'] ?? (p['add_prefix_space'] === false ? 'never' : 'always');
    if (scheme !== 'first' && scheme !== 'always' && scheme !== 'never') refuse(`prepend_scheme ${quote(scheme)}`);
    return { addDummyPrefix: scheme !== 'never', removeExtraWhitespaces: false, escapeWhitespaces: true, treatWhitespaceAsSuffix: false };
  }
  if (pre !== null && pre !== undefined) refuse(`pre_tokenizer ${quote(pre)} with a normalizer`);
  if (!isObject(normalizer)) return refuse('the normalizer');
  const list = normalizer['type'] === 'Sequence' ? normalizer['normalizers'] : [normalizer];
  if (!Array.isArray(list)) return refuse('the normalizer');
  const steps = list.map((n) => (isObject(n) ? recogniseStep(n) : undefined) ?? refuse(`normalizer ${quote(n)}`));
  const key = steps.join(',');
  const plain = ['escape', 'prefix,escape'];
  const extra = ['stripLeading,collapse,escape,stripTrailing', 'stripLeading,collapse,prefix,escape,stripTrailing'];
  if (!plain.includes(key) && !extra.includes(key)) refuse(`the normalizer sequence [${key}]`);
  return { addDummyPrefix: steps.includes('prefix'), removeExtraWhitespaces: extra.includes(key), escapeWhitespaces: true, treatWhitespaceAsSuffix: false };
}

/** The vocabulary of a Llama-2-style tokenizer.json (parsed JSON). */
export function vocabularyFromTokenizerJson(json: unknown, file: string): Vocabulary {
  if (!isObject(json)) throw new FormatError(file, 'not a tokenizer.json object');
  const model = json['model'];
  if (!isObject(model)) throw new FormatError(file, 'no "model" object');
  if (model['type'] !== 'BPE') throw new FormatError(file, `model type ${quote(model['type'])} is not supported (only BPE, as Llama 2 uses)`);
  for (const k of ['continuing_subword_prefix', 'end_of_word_suffix']) {
    if (model[k] !== null && model[k] !== undefined && model[k] !== '') throw new FormatError(file, `model.${k} is not supported`);
  }
  if (model['dropout'] !== null && model['dropout'] !== undefined && model['dropout'] !== 0) throw new FormatError(file, 'BPE dropout is not supported');
  const normalizer = normalizerOptions(json, file);
  const vocab = model['vocab'];
  if (!isObject(vocab)) throw new FormatError(file, 'model.vocab is not an object');
  const entries = Object.entries(vocab);
  if (entries.length === 0 || entries.length > 1 << 22) throw new FormatError(file, `model.vocab has ${entries.length} pieces`);
  const added = json['added_tokens'] ?? [];
  if (!Array.isArray(added)) throw new FormatError(file, 'added_tokens is not a list');
  let n = entries.length;
  for (const a of added) if (isObject(a) && Number.isSafeInteger(a['id'])) n = Math.max(n, (a['id'] as number) + 1);
  if (n > entries.length + added.length) throw new FormatError(file, `token ids run to ${n - 1} but there are only ${entries.length + added.length} tokens`);
  const pieces = new Array<string | undefined>(n);
  const types = new Uint8Array(n).fill(PieceType.NORMAL);
  for (const [piece, id] of entries) {
    if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) >= n) throw new FormatError(file, `piece ${quote(piece)} has id ${quote(id)}`);
    if (pieces[id as number] !== undefined) throw new FormatError(file, `id ${id} is given to two pieces`);
    pieces[id as number] = piece;
  }
  const unk = model['unk_token'];
  for (const a of added) {
    if (!isObject(a) || !Number.isSafeInteger(a['id']) || typeof a['content'] !== 'string') throw new FormatError(file, 'an added token without an id and content');
    const id = a['id'] as number;
    if (pieces[id] !== undefined && pieces[id] !== a['content']) throw new FormatError(file, `added token ${id} ${quote(a['content'])} is ${quote(pieces[id])} in the vocab`);
    pieces[id] = a['content'];
    types[id] = a['content'] === unk ? PieceType.UNKNOWN : a['special'] === true ? PieceType.CONTROL : PieceType.USER_DEFINED;
  }
  for (let id = 0; id < n; id++) if (pieces[id] === undefined) throw new FormatError(file, `no piece has id ${id}`);
  const byteFallback = model['byte_fallback'] === true;
  let unkId: number | undefined;
  if (typeof unk === 'string') {
    unkId = pieces.indexOf(unk);
    if (unkId < 0) throw new FormatError(file, `unk_token ${quote(unk)} is not in the vocabulary`);
    types[unkId] = PieceType.UNKNOWN;
  }
  if (byteFallback) for (let id = 0; id < n; id++) if (types[id] === PieceType.NORMAL && pieceToByte(pieces[id]!) >= 0) types[id] = PieceType.BYTE;
  // scores: minus the rank of the first merge that makes each piece; pieces no merge makes rank after all merges
  const merges = model['merges'];
  if (!Array.isArray(merges)) throw new FormatError(file, 'model.merges is not a list');
  const ids = new Map<string, number>();
  pieces.forEach((p, id) => ids.set(p!, id));
  const scores = new Float32Array(n).fill(NaN);
  merges.forEach((m, rank) => {
    let a: unknown, b: unknown;
    if (typeof m === 'string') {
      const parts = m.split(' ');
      if (parts.length !== 2) throw new FormatError(file, `merge ${rank} ${quote(m)} is not "left right"`);
      [a, b] = parts;
    } else if (Array.isArray(m) && m.length === 2) {
      [a, b] = m;
    }
    if (typeof a !== 'string' || typeof b !== 'string') throw new FormatError(file, `merge ${rank} is not a pair of pieces`);
    const id = ids.get(a + b);
    if (!ids.has(a) || !ids.has(b) || id === undefined) throw new FormatError(file, `merge ${rank} (${quote(a)} + ${quote(b)}) is not of vocabulary pieces`);
    if (Number.isNaN(scores[id]!)) scores[id] = -rank;
  });
  for (let id = 0; id < n; id++) {
    if (Number.isNaN(scores[id]!)) scores[id] = types[id] === PieceType.NORMAL ? -(merges.length + id) : 0;
  }
  return fromPieces({
    pieces: pieces as string[], scores, types, byteFallback, normalizer,
    ...(unkId !== undefined ? { unkId } : {}),
  }, file);
}

/**
 * tokenizer.json for a vocabulary, as transformers' LlamaConverter writes it (SentencePieceExtractor's
 * merges: every split of every piece into two pieces, by the score of the piece, then the ids of the
 * halves), with the remove_extra_whitespaces steps when the vocabulary uses them.
 */
export function tokenizerJson(v: Vocabulary): Json {
  const ids = new Map<string, number>();
  v.pieces.forEach((p, id) => ids.set(p, id));
  const candidates: Array<{ a: string; b: string; score: number; order: number }> = [];
  v.pieces.forEach((piece, id) => {
    if (v.types[id] !== PieceType.NORMAL && v.types[id] !== PieceType.USER_DEFINED) return;
    const chars = Array.from(piece);
    const local: Array<{ a: string; b: string }> = [];
    for (let i = 1; i < chars.length; i++) {
      const a = chars.slice(0, i).join(''), b = chars.slice(i).join('');
      if (ids.has(a) && ids.has(b)) local.push({ a, b });
    }
    local.sort((x, y) => ids.get(x.a)! - ids.get(y.a)! || ids.get(x.b)! - ids.get(y.b)!);
    for (const m of local) candidates.push({ ...m, score: v.scores[id]!, order: candidates.length });
  });
  // descending score, stable (Python's sorted with reverse=True keeps equal items in order)
  candidates.sort((x, y) => y.score - x.score || x.order - y.order);
  const special = (id: number): boolean => v.types[id] === PieceType.CONTROL || v.types[id] === PieceType.UNKNOWN;
  const added = v.pieces.flatMap((p, id) => (special(id) || v.types[id] === PieceType.USER_DEFINED ? [{
    id, content: p, single_word: false, lstrip: false, rstrip: false, normalized: !special(id), special: special(id),
  }] : []));
  const n = v.normalizer;
  const normalizers: Json[] = [];
  if (n.removeExtraWhitespaces) {
    normalizers.push({ type: 'Replace', pattern: { Regex: '^ +' }, content: '' }, { type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' });
  }
  if (n.addDummyPrefix) normalizers.push({ type: 'Prepend', prepend: SPACE });
  normalizers.push({ type: 'Replace', pattern: { String: ' ' }, content: SPACE });
  if (n.removeExtraWhitespaces) normalizers.push({ type: 'Replace', pattern: { Regex: `${SPACE}+$` }, content: '' });
  const bos = v.bosId >= 0 ? v.pieces[v.bosId]! : undefined;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: 'Sequence', normalizers },
    pre_tokenizer: null,
    post_processor: bos === undefined ? null : {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { [bos]: { id: bos, ids: [v.bosId], tokens: [bos] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE }, content: ' ' },
        ...(v.byteFallback ? [{ type: 'ByteFallback' }] : []),
        { type: 'Fuse' },
        ...(n.addDummyPrefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: v.unkId >= 0 ? v.pieces[v.unkId] : null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: v.byteFallback,
      ignore_merges: false,
      vocab: Object.fromEntries(v.pieces.map((p, id) => [p, id])),
      merges: candidates.map((m) => [m.a, m.b]),
    },
  };
}

/**
 * tokenizer_config.json and special_tokens_map.json for a Llama tokenizer (what transformers'
 * AutoTokenizer reads beside tokenizer.json / tokenizer.model), with the chat template if any.
 */
export function tokenizerConfigJson(v: Vocabulary, modelMaxLength: number, chatTemplate?: string): { config: Json; specialTokens: Json } {
  const name = (id: number): string | null => (id >= 0 ? v.pieces[id]! : null);
  const token = (id: number): Json | null => (id >= 0 ? { content: v.pieces[id]!, lstrip: false, normalized: false, rstrip: false, single_word: false } : null);
  const config: Json = {
    add_bos_token: v.bosId >= 0,
    add_eos_token: false,
    bos_token: name(v.bosId),
    eos_token: name(v.eosId),
    unk_token: name(v.unkId),
    pad_token: null,
    clean_up_tokenization_spaces: false,
    legacy: true,
    model_max_length: modelMaxLength,
    sp_model_kwargs: {},
    tokenizer_class: 'LlamaTokenizer',
    ...(chatTemplate !== undefined ? { chat_template: chatTemplate } : {}),
  };
  return { config, specialTokens: { bos_token: token(v.bosId), eos_token: token(v.eosId), unk_token: token(v.unkId) } };
}
