// Where the library's models and tokenizers come from: a path, a file: or http(s): URL, or the
// bytes of the file. Paths and file: URLs are read as files (any format openModelSource knows);
// http(s): URLs are downloaded; bytes are read in place. A model finds its tokenizer where the
// format says (a llama2.c checkpoint: tokenizer.bin or tok<vocab>.bin beside it, as `llama2 run`
// does; a URL: tokenizer.bin beside it) unless one is named.

import { fileURLToPath } from 'node:url';
import { LlamaError, UsageError } from '../errors.js';
import { openModelSource } from '../model/open.js';
import type { ChatTemplateRef, ModelSource } from '../model/source.js';
import { loadTokenizer, parseTokenizer, type Tokenizer } from '../tokenizer/index.js';
import type { InferenceEngine } from './engine.js';

/** A model or tokenizer: a path, a URL (file:, http:, https:), or the file's bytes. */
export type ModelInput = string | URL | Uint8Array | ArrayBuffer;

type Resolved = { readonly path: string } | { readonly bytes: Uint8Array; readonly name: string; readonly url?: URL };

/** A path, or bytes (downloaded when the input is an http(s): URL). */
async function resolveInput(input: ModelInput, what: string): Promise<Resolved> {
  if (input instanceof Uint8Array) return { bytes: input, name: `${what} bytes` };
  if (input instanceof ArrayBuffer) return { bytes: new Uint8Array(input), name: `${what} bytes` };
  if (typeof input === 'string' && !/^[a-z][a-z0-9+.-]*:\/\//i.test(input)) return { path: input };
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new UsageError(`${String(input)}: not a path or URL`);
  }
  if (url.protocol === 'file:') return { path: fileURLToPath(url) };
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`${url.href}: only file:, http: and https: URLs are read`);
  return { bytes: await download(url, what), name: url.href, url };
}

async function download(url: URL, what: string): Promise<Uint8Array> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (err) {
    throw new LlamaError(`cannot fetch the ${what} ${url.href}: ${(err as Error).message}`);
  }
  if (!response.ok) throw new LlamaError(`cannot fetch the ${what} ${url.href}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

export interface LoadedModel {
  readonly engine: InferenceEngine;
  /** The tokenizer found with the model, if any. */
  readonly tokenizer: ModelInput | undefined;
  /** The model's name, for messages. */
  readonly name: string;
  /** The chat template found with the model, if any. */
  readonly chatTemplate: ChatTemplateRef | undefined;
}

/** Loads a model with `open` (the backend's loader: loadTransformer into CPU kernels, or onto the GPU). */
export async function loadModelInput(input: ModelInput, open: (source: ModelSource) => InferenceEngine): Promise<LoadedModel> {
  const r = await resolveInput(input, 'model');
  const source = openModelSource('path' in r ? r.path : { name: r.name, bytes: r.bytes });
  try {
    const engine = open(source);
    const tokenizer = source.tokenizer?.path ?? ('url' in r && r.url !== undefined ? new URL('tokenizer.bin', r.url) : undefined);
    return { engine, tokenizer, name: source.path, chatTemplate: source.chatTemplate };
  } finally {
    source.close();
  }
}

/** Loads a tokenizer and checks it against the model's vocabulary. */
export async function loadTokenizerInput(input: ModelInput | undefined, vocabSize: number, modelName: string): Promise<Tokenizer> {
  if (input === undefined) throw new UsageError(`no tokenizer found with ${modelName}; pass { tokenizer }`);
  const r = await resolveInput(input, 'tokenizer');
  if ('path' in r) return loadTokenizer(r.path, vocabSize);
  return parseTokenizer(r.bytes, r.name, vocabSize);
}
