// Tokenizer: SentencePiece-exact encoding (golden ids from the SentencePiece library), decoding,
// streaming decoding, both file formats, the .model writer, and bad input.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FormatError, LlamaError } from '../src/errors.js';
import {
  ModelType, PieceType, StreamingDecoder, Tokenizer, checkVocabMatch, loadTokenizer, parseSentencePieceModel,
  readSentencePieceModel, serializeSentencePieceModel, writeSentencePieceModel, type ModelPiece, type SentencePieceModel,
} from '../src/tokenizer/index.js';
import { needsRefdata, ref } from './refdata.js';

interface GoldenCase { text: string; ids: number[]; decoded: string }
interface Golden { tokenizer: string; cases: GoldenCase[] }

const golden = (name: string): Golden => JSON.parse(readFileSync(ref('golden', name), 'utf8')) as Golden;

const TOKENIZERS = [
  { golden: 'tok512_sentencepiece.json', files: [['data', 'models', 'tok512.model'], ['data', 'models', 'tok512.bin']], vocab: 512 },
  { golden: 'tok32000_sentencepiece.json', files: [['data', 'tokenizers', 'tokenizer.model'], ['data', 'tokenizers', 'tokenizer.bin']], vocab: 32000 },
] as const;

const tmp = mkdtempSync(join(tmpdir(), 'llama2ts-tok-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Streams `ids` through a StreamingDecoder (each push with its predecessor), as generation does. */
function stream(tok: Tokenizer, ids: readonly number[], cCompatible = false): string[] {
  const dec = new StreamingDecoder(tok, { cCompatible });
  const out: string[] = [];
  for (let i = 1; i < ids.length; i++) out.push(dec.push(ids[i - 1]!, ids[i]!));
  out.push(dec.flush());
  return out;
}

describe('golden SentencePiece cases', () => {
  for (const t of TOKENIZERS) {
    for (const parts of t.files) {
      const file = parts.at(-1)!;
      test(`${file}: encode equals SentencePiece on every case of ${t.golden}`, needsRefdata, () => {
        const tok = loadTokenizer(ref(...parts), t.vocab);
        const g = golden(t.golden);
        assert.equal(g.cases.length, 17);
        for (const c of g.cases) assert.deepEqual(tok.encode(c.text), c.ids, `text ${JSON.stringify(c.text)}`);
      });
      test(`${file}: decode gives SentencePiece's decoded text`, needsRefdata, () => {
        const tok = loadTokenizer(ref(...parts), t.vocab);
        for (const c of golden(t.golden).cases) assert.equal(tok.decode(c.ids), c.decoded, `ids of ${JSON.stringify(c.text)}`);
      });
      test(`${file}: streaming decode of every case concatenates to the decoded text`, needsRefdata, () => {
        const tok = loadTokenizer(ref(...parts), t.vocab);
        for (const c of golden(t.golden).cases) assert.equal(stream(tok, c.ids).join(''), c.decoded, `ids of ${JSON.stringify(c.text)}`);
      });
    }
  }

  test('BOS / EOS options', needsRefdata, () => {
    const tok = loadTokenizer(ref('data', 'models', 'tok512.model'));
    const c = golden('tok512_sentencepiece.json').cases[5]!;
    assert.deepEqual(tok.encode(c.text, { bos: false }), c.ids.slice(1));
    assert.deepEqual(tok.encode(c.text, { eos: true }), [...c.ids, 2]);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
  });
});

describe('TinyStories token counts (shared/README.md)', () => {
  const countTokens = (tok: Tokenizer, file: string): number => {
    const stories = readFileSync(ref('data', 'tinystories', file), 'utf8').split(/^<\|endoftext\|>$/m).map((s) => s.trim()).filter((s) => s !== '');
    return stories.reduce((n, s) => n + tok.encode(s).length, 0);
  };
  test('train_first2316.txt with tok512, BOS per story: 1,031,666 tokens', needsRefdata, () => {
    assert.equal(countTokens(loadTokenizer(ref('data', 'models', 'tok512.bin'), 512), 'train_first2316.txt'), 1_031_666);
  });
  test('both validation files: 387,046 tokens', needsRefdata, () => {
    const tok = loadTokenizer(ref('data', 'models', 'tok512.model'));
    assert.equal(countTokens(tok, 'valid_first201.txt') + countTokens(tok, 'valid_next781_heuristic_boundaries.txt'), 387_046);
  });
  test('.bin and .model forms of the 32k tokenizer agree on 200 KB of stories', needsRefdata, () => {
    const text = readFileSync(ref('data', 'tinystories', 'valid_first201.txt'), 'utf8').slice(0, 200_000);
    const a = loadTokenizer(ref('data', 'tokenizers', 'tokenizer.bin')).encode(text);
    const b = loadTokenizer(ref('data', 'tokenizers', 'tokenizer.model')).encode(text);
    assert.deepEqual(a, b);
    // without remove_extra_whitespaces and with byte fallback, decoding gives the text back exactly
    assert.equal(loadTokenizer(ref('data', 'tokenizers', 'tokenizer.bin')).decode(a), text);
  });
});

describe('file formats', () => {
  for (const [model, bin] of [[['data', 'models', 'tok512.model'], ['data', 'models', 'tok512.bin']], [['data', 'tokenizers', 'tokenizer.model'], ['data', 'tokenizers', 'tokenizer.bin']]] as const) {
    test(`export ${model.at(-1)} → byte-identical ${bin.at(-1)}`, needsRefdata, () => {
      const out = loadTokenizer(ref(...model)).toLlama2cBytes();
      assert.ok(Buffer.from(out).equals(readFileSync(ref(...bin))));
    });
    test(`${model.at(-1)}: read → write is byte-identical`, needsRefdata, () => {
      const bytes = readFileSync(ref(...model));
      assert.ok(Buffer.from(serializeSentencePieceModel(readSentencePieceModel(ref(...model)))).equals(bytes));
    });
    test(`${bin.at(-1)}: read → write is byte-identical`, needsRefdata, () => {
      assert.ok(Buffer.from(loadTokenizer(ref(...bin)).toLlama2cBytes()).equals(readFileSync(ref(...bin))));
    });
  }

  test('the third-party aidreams tokenizer loads and round-trips', needsRefdata, () => {
    const path = ref('data', 'models', 'other', 'aidreams260K_tok512.bin');
    const tok = loadTokenizer(path, 512);
    assert.ok(Buffer.from(tok.toLlama2cBytes()).equals(readFileSync(path)));
    const text = 'Echoes of vectors unfold, a gentle hum of precision.';
    assert.equal(tok.decode(tok.encode(text)), text);
  });

  test('.model and .bin carry the same pieces, scores and settings', needsRefdata, () => {
    for (const t of TOKENIZERS) {
      const [m, b] = t.files.map((p) => loadTokenizer(ref(...p)).vocabulary);
      assert.deepEqual(b!.pieces, m!.pieces);
      assert.deepEqual(b!.types, m!.types);
      assert.deepEqual(b!.scores, m!.scores);
      // remove_extra_whitespaces is inferred for .bin files: tok512 on, Llama 2 off — as in the .model files
      assert.deepEqual(b!.normalizer, m!.normalizer);
    }
  });
});

// A hand-made model: checks the writer, and the merge rules on cases small enough to follow.
function tinyModel(normal: Array<[string, number]>, opts: { byteFallback?: boolean; extra?: ModelPiece[] } = {}): SentencePieceModel {
  const pieces: ModelPiece[] = [
    { piece: '<unk>', score: 0, type: PieceType.UNKNOWN },
    { piece: '<s>', score: 0, type: PieceType.CONTROL },
    { piece: '</s>', score: 0, type: PieceType.CONTROL },
  ];
  if (opts.byteFallback) {
    for (let b = 0; b < 256; b++) pieces.push({ piece: `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, score: 0, type: PieceType.BYTE });
  }
  for (const [piece, score] of normal) pieces.push({ piece, score });
  pieces.push(...(opts.extra ?? []));
  return {
    pieces,
    trainerSpec: { modelType: ModelType.BPE, vocabSize: pieces.length, byteFallback: opts.byteFallback ?? false },
    normalizerSpec: { name: 'identity', addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true },
  };
}

describe('BPE rules on a hand-made model', () => {
  const pieceIds = (tok: Tokenizer, text: string): string[] => tok.encode(text, { bos: false }).map((id) => tok.piece(id));

  test('writeSentencePieceModel → loadTokenizer round trip', () => {
    const model = tinyModel([['▁', 0], ['a', -1], ['b', -2], ['ab', -3]], { byteFallback: true });
    const path = join(tmp, 'tiny.model');
    writeSentencePieceModel(path, model);
    const back = parseSentencePieceModel(readFileSync(path), path);
    assert.deepEqual(back.pieces, model.pieces);
    assert.equal(back.trainerSpec.modelType, ModelType.BPE);
    assert.equal(back.trainerSpec.byteFallback, true);
    const tok = loadTokenizer(path);
    assert.equal(tok.vocabSize, 3 + 256 + 4);
    assert.deepEqual(pieceIds(tok, 'ab'), ['▁', 'ab']);
  });

  test('the higher score merges first; equal scores merge leftmost first', () => {
    // "aba": candidates ab (left) and ba (right)
    const tie = Tokenizer.fromSentencePiece(tinyModel([['▁', 0], ['a', -1], ['b', -2], ['ab', -5], ['ba', -5]]));
    assert.deepEqual(pieceIds(tie, 'aba'), ['▁', 'ab', 'a']);
    const baFirst = Tokenizer.fromSentencePiece(tinyModel([['▁', 0], ['a', -1], ['b', -2], ['ab', -6], ['ba', -5]]));
    assert.deepEqual(pieceIds(baFirst, 'aba'), ['▁', 'a', 'ba']);
  });

  test('a merge can build on a piece whose parts are not adjacent characters of another piece', () => {
    // abc is reachable only as ab + c
    const tok = Tokenizer.fromSentencePiece(tinyModel([['▁', 0], ['a', -1], ['b', -2], ['c', -3], ['ab', -4], ['abc', -5]]));
    assert.deepEqual(pieceIds(tok, 'abcabc'), ['▁', 'abc', 'abc']);
  });

  test('unknown characters: byte fallback, or one <unk> per run without it', () => {
    const bytes = Tokenizer.fromSentencePiece(tinyModel([['▁', 0], ['a', -1]], { byteFallback: true }));
    assert.deepEqual(pieceIds(bytes, 'aé'), ['▁', 'a', '<0xC3>', '<0xA9>']);
    const unk = Tokenizer.fromSentencePiece(tinyModel([['▁', 0], ['a', -1]]));
    assert.deepEqual(pieceIds(unk, 'axyza'), ['▁', 'a', '<unk>', 'a']);
    assert.equal(unk.decode(unk.encode('axyza')), 'a ⁇ a');
  });

  test('user-defined pieces match whole and never merge', () => {
    const tok = Tokenizer.fromSentencePiece(tinyModel([['▁', 0], ['a', -1], ['b', -2], ['ab', -3]], {
      extra: [{ piece: 'ba', score: 0, type: PieceType.USER_DEFINED }],
    }));
    assert.deepEqual(pieceIds(tok, 'aba'), ['▁', 'a', 'ba']);
  });

  test('an UNUSED piece may be a merge step but is split back into its parts', () => {
    const tok = Tokenizer.fromSentencePiece(tinyModel([['▁', 0], ['a', -1], ['b', -2], ['c', -3], ['abc', -5]], {
      extra: [{ piece: 'ab', score: -4, type: PieceType.UNUSED }],
    }));
    assert.deepEqual(pieceIds(tok, 'ab'), ['▁', 'a', 'b']);
    assert.deepEqual(pieceIds(tok, 'abc ab'), ['▁', 'abc', '▁', 'a', 'b']);
  });

  test('whitespace: dummy prefix, collapsed runs, stripped ends (remove_extra_whitespaces)', () => {
    const tok = Tokenizer.fromSentencePiece(tinyModel([['▁', 0], ['a', -1], ['▁a', -2]]));
    assert.deepEqual(pieceIds(tok, '  a   a  '), ['▁a', '▁a']);
    assert.deepEqual(tok.encode('   '), [1]);
    assert.deepEqual(tok.encode(''), [1]);
  });

  test('unsupported models are refused clearly', () => {
    const unigram = tinyModel([['a', -1]]);
    unigram.trainerSpec.modelType = ModelType.UNIGRAM;
    assert.throws(() => Tokenizer.fromSentencePiece(unigram, 'u.model'), /model type UNIGRAM is not supported/);
    const nfkc = tinyModel([['a', -1]]);
    nfkc.normalizerSpec = { name: 'nmt_nfkc', precompiledCharsmap: new Uint8Array([1, 2, 3, 4, 5]) };
    assert.throws(() => Tokenizer.fromSentencePiece(nfkc, 'n.model'), /normalization rule 'nmt_nfkc' is not supported/);
  });
});

describe('streaming decoder', () => {
  test('an emoji over four byte tokens comes out once, whole', needsRefdata, () => {
    const tok = loadTokenizer(ref('data', 'models', 'tok512.bin'));
    const ids = tok.encode('Hi 🙂!');
    const pieces = ids.map((id) => tok.piece(id));
    const first = pieces.indexOf('<0xF0>');
    assert.deepEqual(pieces.slice(first, first + 4), ['<0xF0>', '<0x9F>', '<0x99>', '<0x82>']);
    const out = stream(tok, ids);
    assert.deepEqual(out.slice(first - 1, first + 3), ['', '', '', '🙂']);
    assert.equal(out.join(''), 'Hi 🙂!');
  });

  test('the leading space of the piece after BOS is dropped, elsewhere kept', needsRefdata, () => {
    const tok = loadTokenizer(ref('data', 'models', 'tok512.bin'));
    const once = tok.encode('Once', { bos: false })[0]!;
    assert.equal(tok.piece(once), '▁Once');
    const dec = new StreamingDecoder(tok);
    assert.equal(dec.push(tok.bosId, once), 'Once');
    assert.equal(dec.push(once, once), ' Once');
  });

  test('bytes that never complete a character become U+FFFD, nothing is dropped', needsRefdata, () => {
    const tok = loadTokenizer(ref('data', 'models', 'tok512.bin'));
    const byte = (b: number): number => tok.vocabulary.byteIds[b]!;
    const a = tok.vocabulary.pieces.indexOf('a');
    const dec = new StreamingDecoder(tok);
    assert.equal(dec.push(a, byte(0xe2)), ''); // start of a 3-byte character
    assert.equal(dec.push(byte(0xe2), byte(0x82)), '');
    assert.equal(dec.push(byte(0x82), a), '\ufffd\ufffda'); // …cut short: one U+FFFD per byte
    assert.equal(dec.push(a, byte(0x80)), '\ufffd'); // a lone continuation byte is never valid
    assert.equal(dec.push(byte(0x80), byte(0xf0)), '');
    assert.equal(dec.flush(), '\ufffd');
    assert.equal(dec.push(a, byte(0x00)), '\u0000');
  });

  test('C-compatible mode prints what run.c prints', needsRefdata, () => {
    const tok = loadTokenizer(ref('data', 'models', 'tok512.bin'));
    const byte = (b: number): number => tok.vocabulary.byteIds[b]!;
    const a = tok.vocabulary.pieces.indexOf('a');
    const c = new StreamingDecoder(tok, { cCompatible: true });
    assert.equal(c.push(a, byte(0x01)), ''); // control byte: safe_printf skips it
    assert.equal(c.push(a, byte(0x00)), '');
    assert.equal(c.push(a, byte(0x0a)), '\n'); // isspace
    assert.equal(c.push(a, tok.eosId), '\n</s>\n'); // the tokenizer.bin text of EOS
    assert.equal(c.push(a, tok.unkId), '<unk>');
    assert.equal(c.push(a, byte(0xc3)), ''); // ≥ 0x80 is kept and assembled
    assert.equal(c.push(byte(0xc3), byte(0xa9)), 'é');
    const plain = new StreamingDecoder(tok);
    assert.equal(plain.push(a, byte(0x01)), '\u0001');
    assert.equal(plain.push(a, tok.eosId), '');
    assert.equal(plain.push(a, tok.unkId), ' ⁇ ');
  });

  test('C-compatible output of plain ASCII equals the llama2.c pieces', needsRefdata, () => {
    const tok = loadTokenizer(ref('data', 'models', 'tok512.bin'));
    const c = golden('tok512_sentencepiece.json').cases[5]!;
    assert.equal(stream(tok, c.ids, true).join(''), c.text);
  });
});

describe('bad input', () => {
  test('missing file', () => {
    assert.throws(() => loadTokenizer(join(tmp, 'nope.bin')), (e: Error) => e instanceof LlamaError && /nope\.bin: no such file/.test(e.message));
  });

  test('truncated tokenizer.bin', needsRefdata, () => {
    const bytes = readFileSync(ref('data', 'models', 'tok512.bin'));
    for (const cut of [2, 3000, bytes.length - 1]) {
      const path = join(tmp, `trunc${cut}.bin`);
      writeFileSync(path, bytes.subarray(0, cut));
      assert.throws(() => loadTokenizer(path), (e: Error) => e instanceof FormatError && /truncated|too short/.test(e.message), `cut at ${cut}`);
    }
  });

  test('truncated .model', needsRefdata, () => {
    const bytes = readFileSync(ref('data', 'models', 'tok512.model'));
    for (const cut of [10, 3000, bytes.length - 1]) {
      const path = join(tmp, `trunc${cut}.model`);
      writeFileSync(path, bytes.subarray(0, cut));
      assert.throws(() => loadTokenizer(path), (e: Error) => e instanceof FormatError && /not a SentencePiece model/.test(e.message), `cut at ${cut}`);
    }
  });

  test('random bytes as a .model (and as a .bin)', () => {
    let seed = 12345;
    const rand = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16) & 0xff;
    for (let trial = 0; trial < 50; trial++) {
      const bytes = Uint8Array.from({ length: 64 + trial * 37 }, rand);
      if (trial % 2 === 0) {
        bytes[0] = 0x0a; // looks like a protobuf ModelProto: goes down the .model path
        bytes[1] = 0x05;
        bytes[2] = 0x0a;
      }
      const path = join(tmp, `random${trial}.model`);
      writeFileSync(path, bytes);
      assert.throws(() => loadTokenizer(path), (e: Error) => e instanceof FormatError, `trial ${trial}`);
    }
  });

  test('model / tokenizer vocabulary mismatch', needsRefdata, () => {
    assert.throws(() => loadTokenizer(ref('data', 'models', 'tok512.bin'), 32000), /has 512 tokens, but the model's vocabulary needs 32000/);
    assert.throws(() => loadTokenizer(ref('data', 'tokenizers', 'tokenizer.bin'), 512), /has 32000 tokens, but the model's vocabulary is 512/);
    assert.throws(() => loadTokenizer(ref('data', 'tokenizers', 'tokenizer.model'), 512), /has 32000 tokens, but the model has vocab_size 512/);
    const tok = loadTokenizer(ref('data', 'models', 'tok512.model'));
    assert.throws(() => checkVocabMatch(tok, 32000, { model: 'm.bin', tokenizer: 't.model' }), /t\.model: has 512 tokens, but m\.bin has vocab_size 32000/);
    checkVocabMatch(tok, 512);
  });

  test('token id out of range', needsRefdata, () => {
    const tok = loadTokenizer(ref('data', 'models', 'tok512.model'));
    assert.throws(() => tok.decode([1, 512]), /token id 512 is out of range/);
    assert.throws(() => tok.decode([-1]), /token id -1 is out of range/);
    assert.throws(() => new StreamingDecoder(tok).push(1, 600), /token id 600 is out of range/);
    assert.throws(() => tok.piece(1.5), /out of range/);
  });

  test('serialize → parse keeps every trainer and normalizer field', () => {
    const model = tinyModel([['a', -1]]);
    model.trainerSpec = { ...model.trainerSpec, input: ['x.txt', 'y.txt'], padId: -1, characterCoverage: 0.9995, inputSentenceSize: 2 ** 40, unkSurface: ' ⁇ ' };
    const back = parseSentencePieceModel(serializeSentencePieceModel(model), 'mem');
    assert.deepEqual(back.trainerSpec, { ...model.trainerSpec, characterCoverage: Math.fround(0.9995) });
    assert.deepEqual(back.normalizerSpec, model.normalizerSpec);
  });
});
