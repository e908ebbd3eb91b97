// `llama2 export MODEL --format v0|v1|v2|gguf|hf -o OUT`: convert a model to a llama2.c format, to
// GGUF (llama.cpp's file, with the tokenizer inside) or to a Hugging Face folder.

import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fsyncDir, tempPathFor, writeFileAtomic } from '../files.js';
import { UsageError } from '../errors.js';
import { writeCheckpointFrom } from '../model/checkpoint.js';
import { type GgufValue, ValueType } from '../model/gguf.js';
import { writeLlamaGguf } from '../model/gguf-llama.js';
import { hfConfigJson, hfGenerationConfigJson, writeHfSafetensors } from '../model/hf-writer.js';
import { writeMetaFiles } from '../model/pth-writer.js';
import { withModelSource } from '../model/open.js';
import { ggufTokenizerMetadata } from '../tokenizer/gguf-vocabulary.js';
import { loadTokenizer } from '../tokenizer/index.js';
import { tokenizerConfigJson, tokenizerJson } from '../tokenizer/tokenizer-json.js';
import { intFlag, type ParsedFlags, parseCommand, stringFlag } from './flags.js';
import { modelArg, resolveTokenizerPath } from './model-args.js';

const HELP = `Usage: llama2 export MODEL --format FORMAT -o OUT [--group-size N] [--dtype T] [-z TOKENIZER] [--shards N]

Converts a model (any format llama2ts reads) to:
  v0     legacy format that llama2.c's run.c reads
  v1     float32 with a 256-byte header (llama2ts's default)
  v2     Q8_0: int8 weights with one float32 scale per group of N values (default N = 64, halved
         until it divides dim, as llama2.c's export.py does)
  gguf   GGUF v3 for llama.cpp, ollama, LM Studio…: the llama architecture keys, the tokenizer
         (-z TOKENIZER, else the one found with the model) and its chat template, and the tensors as
         --dtype f32 (default), f16 or q8_0 (ggml's Q8_0; a matrix whose rows are not whole
         32-value blocks is written F16, as llama.cpp's converter does); norms stay F32
  hf     a Hugging Face folder OUT (LlamaForCausalLM, what transformers' from_pretrained loads):
         config.json, generation_config.json, model.safetensors as --dtype f32 (default), bf16
         or f16, and the tokenizer (-z TOKENIZER, else the one found with the model):
         tokenizer.json, tokenizer_config.json (with the model's chat template),
         special_tokens_map.json, and tokenizer.model when it is a SentencePiece model.
         OUT must not exist (or be empty).
  meta   a Meta folder OUT: params.json and consolidated.00.pth … (--shards N model-parallel
         shards, default 1; torch.save's zip) as --dtype f32 (default), bf16 or f16, and
         tokenizer.model (-z, else the one found with the model) when it is a SentencePiece model.
         params.json does not record the context length (Meta's code takes it at run time).
Converting from a quantized model to v0/v1 dequantizes; Q8_0 stored at the group size asked for
passes to v2 as it is. llama2.c formats are read and written a chunk at a time: converting a 7B
model takes a few tens of MiB of memory.

Options:
      --format FORMAT   v0, v1, v2, gguf, hf or meta (required)
  -o, --output OUT      where to write (required)
      --group-size N    v2: values per Q8_0 group (default 64, halved until it divides dim)
      --dtype T         gguf: f32 (default), f16 or q8_0; hf, meta: f32 (default), bf16 or f16
  -z, --tokenizer FILE  gguf, hf, meta: the tokenizer to write (default: the one found with the model)
      --shards N        meta: model-parallel shards (default 1)`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, {
    format: { type: 'string' }, output: { type: 'string', short: 'o' }, 'group-size': { type: 'string' },
    dtype: { type: 'string' }, tokenizer: { type: 'string', short: 'z' }, shards: { type: 'string' },
  }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError('export needs one model: llama2 export MODEL --format v2 -o OUT');
  const format = stringFlag(values, 'format');
  if (format !== 'v0' && format !== 'v1' && format !== 'v2' && format !== 'gguf' && format !== 'hf' && format !== 'meta') {
    throw new UsageError(`--format must be v0, v1, v2, gguf, hf or meta, got '${format ?? ''}'`);
  }
  const out = stringFlag(values, 'output');
  if (out === undefined) throw new UsageError('export needs -o OUT');
  if (format === 'gguf') return exportGguf(modelArg(positionals[0]!), out, values);
  if (format === 'hf' || format === 'meta') return exportFolder(format, modelArg(positionals[0]!), out, values);
  if (values['shards'] !== undefined) throw new UsageError('--shards is for --format meta');
  if (values['dtype'] !== undefined || values['tokenizer'] !== undefined) throw new UsageError('--dtype and -z are for --format gguf and hf');
  const groupSize = intFlag(values, 'group-size', 64, 1, 1 << 16);
  // read and written a chunk of rows at a time (Q8_0 stored at the same group size passes as it is)
  withModelSource(modelArg(positionals[0]!), (source) => writeCheckpointFrom(out, source, format, groupSize));
  process.stderr.write(`wrote ${out} (${format})\n`);
  return 0;
}

/** `--format gguf`: the model, its tokenizer and chat template as one GGUF file, tensor by tensor. */
function exportGguf(model: string, out: string, values: ParsedFlags['values']): number {
  if (values['group-size'] !== undefined) throw new UsageError('--group-size is for --format v2 (GGUF\'s Q8_0 has groups of 32)');
  const dtype = stringFlag(values, 'dtype', 'f32');
  if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'q8_0') throw new UsageError(`--dtype must be f32, f16 or q8_0, got '${dtype}'`);
  withModelSource(model, (source) => {
    const tokenizerPath = resolveTokenizerPath(model, stringFlag(values, 'tokenizer'), source.tokenizer?.path);
    const tokenizer = loadTokenizer(tokenizerPath, source.config.vocabSize);
    const extra: Array<[string, GgufValue]> = ggufTokenizerMetadata(tokenizer.vocabulary);
    if (source.chatTemplate !== undefined) extra.push(['tokenizer.chat_template', { type: ValueType.STRING, value: source.chatTemplate.template }]);
    const name = basename(model).replace(/\.(bin|gguf)$/, '');
    writeLlamaGguf(out, source, extra, dtype, name);
  });
  process.stderr.write(`wrote ${out} (gguf, ${dtype})\n`);
  return 0;
}

/** `--format hf|meta`: a folder, written in a temporary folder renamed into place at the end. */
function exportFolder(format: 'hf' | 'meta', model: string, out: string, values: ParsedFlags['values']): number {
  if (values['group-size'] !== undefined) throw new UsageError('--group-size is for --format v2');
  if (format === 'hf' && values['shards'] !== undefined) throw new UsageError('--shards is for --format meta');
  const shards = intFlag(values, 'shards', 1, 1, 64);
  const flag = stringFlag(values, 'dtype', 'f32');
  const dtype = ({ f32: 'F32', bf16: 'BF16', f16: 'F16' } as const)[flag as 'f32' | 'bf16' | 'f16'];
  if (dtype === undefined) throw new UsageError(`--dtype must be f32, bf16 or f16 for --format ${format}, got '${flag}'`);
  if (existsSync(out) && (!statSync(out).isDirectory() || readdirSync(out).length > 0)) {
    throw new UsageError(`${out} already exists${statSync(out).isDirectory() ? ' and is not empty' : ''}: export --format ${format} writes a new folder`);
  }
  const tmp = tempPathFor(out.replace(/\/+$/, ''));
  mkdirSync(tmp);
  const written: string[] = [];
  try {
    withModelSource(model, (source) => {
      const c = source.config;
      const tokenizerPath = stringFlag(values, 'tokenizer') ?? source.tokenizer?.path;
      const tokenizer = tokenizerPath === undefined ? undefined : loadTokenizer(tokenizerPath, c.vocabSize);
      const json = (name: string, value: unknown): void => {
        writeFileAtomic(join(tmp, name), [new TextEncoder().encode(JSON.stringify(value, null, 2) + '\n')]);
        written.push(name);
      };
      if (format === 'meta') {
        if (shards > 1 && source.config.nKvHeads % shards !== 0) throw new UsageError(`--shards ${shards}: the ${source.config.nKvHeads} kv heads do not split in ${shards}`);
        for (const f of writeMetaFiles(tmp, source, dtype, shards)) written.push(f);
      } else {
        const bos = tokenizer?.bosId ?? 1, eos = tokenizer?.eosId ?? 2;
        json('config.json', hfConfigJson(c, dtype, bos, eos));
        json('generation_config.json', hfGenerationConfigJson(bos, eos));
        writeHfSafetensors(join(tmp, 'model.safetensors'), source, dtype);
        written.push('model.safetensors');
        if (tokenizer !== undefined) {
          json('tokenizer.json', tokenizerJson(tokenizer.vocabulary));
          const { config, specialTokens } = tokenizerConfigJson(tokenizer.vocabulary, c.seqLen, source.chatTemplate?.template);
          json('tokenizer_config.json', config);
          json('special_tokens_map.json', specialTokens);
        }
      }
      if (tokenizer?.format === 'sentencepiece') {
        writeFileAtomic(join(tmp, 'tokenizer.model'), [readFileSync(tokenizerPath!)]);
        written.push('tokenizer.model');
      }
    });
    renameSync(tmp, out);
    fsyncDir(dirname(resolve(out)));
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  process.stderr.write(`wrote ${out}/ (${format}, ${flag}): ${written.join(', ')}\n`);
  return 0;
}
