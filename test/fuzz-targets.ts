// What the fuzz test (test/fuzz.test.ts) runs: every parser of outside input, each with valid seeds
// to mutate. To fuzz a new format, add one entry to FUZZ_TARGETS:
//
//   {
//     name: 'my format',
//     seeds: (dir) => [{ file: 'model.xyz', bytes: makeATinyValidFile() }],   // small valid inputs
//     parse: (input) => { readMyFormat(input.path); },                        // must return or throw a LlamaError
//   }
//
// A seed is the bytes of one file (`file`), optionally with companion files written beside it once
// (`companions`: a model folder's other files); each iteration writes one mutated copy of the file
// and calls parse. A parse passes when it returns or throws a LlamaError with a one-line message
// (what the CLI prints as "llama2: …" and the server answers with a 4xx); anything else (a
// TypeError, a RangeError, a stack overflow) is a crash, and a parse that takes more than the
// test's hang limit is a hang. Keep seeds small (a few KB to ~1 MB): each target runs ≥ 1,000
// times in CI. `json: true` mutates the seed as a JSON tree (plus some byte mutations).

import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { LlamaError } from '../src/errors.js';
import { extractShards } from '../src/data/download.js';
import { jsKernels } from '../src/kernels/js.js';
import { readCheckpoint, writeCheckpoint } from '../src/model/checkpoint.js';
import type { ModelConfig } from '../src/model/config.js';
import { readGgufHeader } from '../src/model/gguf.js';
import { writeLlamaGguf } from '../src/model/gguf-llama.js';
import { hfTensorName } from '../src/model/hf-source.js';
import { openModelSource, withModelSource } from '../src/model/open.js';
import { safetensorsHeader } from '../src/model/safetensors.js';
import { tensorShape } from '../src/model/source.js';
import type { TensorName } from '../src/model/weights.js';
import { type ApiServer, startServer } from '../src/server/http.js';
import { parseBody, parseChatRequest, parseCompletionRequest } from '../src/server/openai.js';
import { loadServedModel } from '../src/server/served-model.js';
import { ggufTokenizerMetadata } from '../src/tokenizer/gguf-vocabulary.js';
import { loadTokenizer } from '../src/tokenizer/index.js';
import { tokenizerJson } from '../src/tokenizer/tokenizer-json.js';
import { readTrainCheckpoint, writeTrainCheckpoint } from '../src/train/checkpoint.js';
import { initWeights } from '../src/train/init.js';
import { makeArchive } from './data-fixtures.js';
import { ref } from './refdata.js';

export interface FuzzSeed {
  /** The file to mutate (its name in the target's folder). */
  readonly file: string;
  readonly bytes: Uint8Array;
  /** Other files of the folder, written once (a model folder's config.json, tokenizer…). */
  readonly companions?: Readonly<Record<string, Uint8Array>>;
}

export interface FuzzInput {
  /** The mutated file, written at `path` in the folder `dir`. */
  readonly bytes: Uint8Array;
  readonly path: string;
  readonly dir: string;
}

export interface FuzzTarget {
  readonly name: string;
  /** Valid inputs to mutate; `dir` is a scratch folder for making them. */
  seeds(dir: string): FuzzSeed[] | Promise<FuzzSeed[]>;
  /** Parses one input: returns, or throws a LlamaError. */
  parse(input: FuzzInput): void | Promise<void>;
  /** Mutate as JSON text (default: as bytes). */
  readonly json?: boolean;
  /** Bytes at the start where most byte mutations go (default 512). */
  readonly head?: number;
  /** Releases what seeds() started (a server). */
  teardown?(): void | Promise<void>;
}

// ------------------------------------------------------------------------------------------------
// Seeds: tiny models made here, in every format the project writes

/** A tiny model: every tensor present, Q8_0-able (dim 32), GGUF q8_0-able (rows of 32). */
const TINY: ModelConfig = { dim: 32, hiddenDim: 64, nLayers: 1, nHeads: 4, nKvHeads: 2, vocabSize: 512, seqLen: 16, sharedClassifier: false };

function tinyCheckpoint(dir: string, format: 'v0' | 'v1' | 'v2', config = TINY): string {
  const path = join(dir, `tiny.${format}.bin`);
  writeCheckpoint(path, initWeights(config, 7), format, 32);
  return path;
}

/** Opens any model, reads the first rows and the last row of every tensor, and its tokenizer if it names one. */
function readModel(path: string): void {
  withModelSource(path, (source) => {
    const c = source.config;
    for (const name of ['tokenEmbedding', 'rmsAtt', 'wq', 'wk', 'wv', 'wo', 'rmsFfn', 'w1', 'w2', 'w3', 'rmsFinal', 'wcls'] as TensorName[]) {
      if (source.storage(name) === undefined) continue;
      const { layers, rows, cols } = tensorShape(c, name);
      const dst = new Float32Array(cols * Math.min(rows, 4));
      for (const layer of [0, layers - 1]) {
        source.read(name, layer, 0, Math.min(rows, 4), dst);
        source.read(name, layer, rows - 1, 1, dst.subarray(0, cols));
      }
      if (source.readQ8 !== undefined && source.q8GroupSize !== undefined && name !== 'rmsAtt' && name !== 'rmsFfn' && name !== 'rmsFinal') {
        const gs = source.q8GroupSize;
        source.readQ8(name, 0, 0, gs, new Int8Array(gs), new Float32Array(1));
      }
    }
    if (source.tokenizer !== undefined) tokenize(source.tokenizer.path, c.vocabSize);
  });
}

/** Loads a tokenizer and encodes and decodes a text that touches every path of the encoder. */
function tokenize(path: string, vocabSize?: number): void {
  const tok = loadTokenizer(path, vocabSize);
  const ids = tok.encode('Once upon a time,  there was 😀 \u2047 <s> ▁x\n\t', { bos: true, eos: true });
  tok.minTokens('Once upon a time 😀');
  tok.decode(ids);
}

/** A tiny Hugging Face folder: config.json and one model.safetensors of float32 tensors. */
function tinyHfFolder(config: ModelConfig): Record<string, Uint8Array> {
  const weights = initWeights(config, 3);
  const tensors: Array<{ name: string; dtype: string; shape: number[]; bytes: () => Iterable<Uint8Array> }> = [];
  for (const name of ['tokenEmbedding', 'rmsAtt', 'wq', 'wk', 'wv', 'wo', 'rmsFfn', 'w1', 'w2', 'w3', 'rmsFinal', 'wcls'] as TensorName[]) {
    if (name === 'wcls' && config.sharedClassifier) continue;
    const { layers, rows, cols } = tensorShape(config, name);
    const all = weights[name];
    for (let l = 0; l < layers; l++) {
      const part = all.subarray(l * rows * cols, (l + 1) * rows * cols);
      tensors.push({ name: hfTensorName(name, l), dtype: 'F32', shape: rows === 1 ? [cols] : [rows, cols], bytes: () => [new Uint8Array(part.buffer, part.byteOffset, part.byteLength)] });
    }
  }
  const header = safetensorsHeader(tensors);
  const chunks: Uint8Array[] = [header];
  for (const t of tensors) for (const b of t.bytes()) chunks.push(b.slice());
  const hfConfig = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: config.dim, intermediate_size: config.hiddenDim,
    num_hidden_layers: config.nLayers, num_attention_heads: config.nHeads, num_key_value_heads: config.nKvHeads,
    vocab_size: config.vocabSize, max_position_embeddings: config.seqLen, rms_norm_eps: 1e-5, rope_theta: 10000,
    tie_word_embeddings: config.sharedClassifier, hidden_act: 'silu',
  };
  return {
    'model.safetensors': concat(chunks),
    'config.json': new TextEncoder().encode(JSON.stringify(hfConfig, null, 2)),
    'tokenizer.model': readFileSync(ref('data', 'models', 'tok512.model')),
  };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function without(files: Record<string, Uint8Array>, name: string): Record<string, Uint8Array> {
  const rest = { ...files };
  delete rest[name];
  return rest;
}

/** The files of a reference folder. */
function folder(dir: string): Record<string, Uint8Array> {
  const files: Record<string, Uint8Array> = {};
  for (const name of readdirSync(dir)) if (!name.startsWith('golden')) files[name] = readFileSync(join(dir, name));
  return files;
}

// ------------------------------------------------------------------------------------------------
// The server: a tiny model behind a real HTTP server, for raw requests

let server: { server: ApiServer; url: string } | undefined;

const REQUESTS = [
  'POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 57\r\n\r\n{"prompt": "Once upon", "max_tokens": 4, "temperature": 0}',
  'POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 84\r\n\r\n{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": true}   ',
  'GET /v1/models/tiny HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer x\r\n\r\n',
  'OPTIONS /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\nAccess-Control-Request-Method: POST\r\n\r\n',
  'HEAD /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
  'POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{"max_tokens": 2\r\n1\r\n}\r\n0\r\n\r\n',
];

/** Sends raw bytes; resolves with the status of the answer ('' when the connection closed without one). */
function rawRequest(url: string, bytes: Uint8Array): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let data = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      data += d;
      // one answer is enough (a streamed one ends later; the status line says enough)
      if (/^HTTP\/1\.1 \d{3} /.test(data)) socket.destroy();
    });
    socket.on('error', () => {}); // (a reset after the server refused the request)
    socket.on('close', () => resolve(/^HTTP\/1\.1 (\d{3}) /.exec(data)?.[1] ?? ''));
    socket.setTimeout(5000, () => {
      socket.destroy();
      reject(new Error(`no answer in 5 s to ${JSON.stringify(new TextDecoder('latin1').decode(bytes.subarray(0, 200)))}`));
    });
    socket.end(bytes); // (half-closed: a request that announces more body than it sends ends here)
  });
}

// ------------------------------------------------------------------------------------------------

export const FUZZ_TARGETS: readonly FuzzTarget[] = [
  ...(['v0', 'v1', 'v2'] as const).map((format): FuzzTarget => ({
    name: `llama2.c checkpoint ${format}`,
    seeds: (dir) => [
      { file: 'model.bin', bytes: readFileSync(tinyCheckpoint(dir, format)) },
      { file: 'model.bin', bytes: readFileSync(tinyCheckpoint(dir, format, { ...TINY, sharedClassifier: true, nKvHeads: 4, seqLen: 8 })) },
    ],
    parse: (input) => {
      readCheckpoint(input.path);
      readModel(input.path);
    },
    head: 300,
  })),
  {
    name: 'tokenizer.bin (llama2.c)',
    seeds: () => [
      { file: 'tokenizer.bin', bytes: readFileSync(ref('data', 'models', 'tok512.bin')) },
      { file: 'tokenizer.bin', bytes: readFileSync(ref('data', 'models', 'other', 'aidreams260K_tok512.bin')) },
    ],
    parse: (input) => tokenize(input.path),
    head: 2048,
  },
  {
    name: 'tokenizer .model (SentencePiece)',
    seeds: () => [{ file: 'tok.model', bytes: readFileSync(ref('data', 'models', 'tok512.model')) }],
    parse: (input) => tokenize(input.path),
    head: 4096,
  },
  {
    name: 'tokenizer.json (Hugging Face)',
    seeds: () => [{ file: 'tokenizer.json', bytes: new TextEncoder().encode(JSON.stringify(tokenizerJson(loadTokenizer(ref('data', 'models', 'tok512.model')).vocabulary))) }],
    parse: (input) => tokenize(input.path),
    json: true,
  },
  {
    name: 'GGUF model and tokenizer',
    seeds: (dir) => {
      const out: FuzzSeed[] = [];
      const tok = loadTokenizer(ref('data', 'models', 'tok512.bin'), 512);
      for (const dtype of ['f32', 'q8_0'] as const) {
        const path = join(dir, `tiny.${dtype}.gguf`);
        const source = openModelSource(tinyCheckpoint(dir, 'v1'));
        try {
          writeLlamaGguf(path, source, ggufTokenizerMetadata(tok.vocabulary), dtype, 'tiny');
        } finally {
          source.close();
        }
        out.push({ file: 'model.gguf', bytes: readFileSync(path) });
      }
      return out;
    },
    parse: (input) => {
      readGgufHeader(input.path);
      readModel(input.path);
      tokenize(input.path, 512);
    },
    head: 8192,
  },
  {
    name: 'Hugging Face folder: model.safetensors',
    seeds: () => {
      const files = tinyHfFolder(TINY);
      return [{ file: 'model.safetensors', bytes: files['model.safetensors']!, companions: without(files, 'model.safetensors') }];
    },
    parse: (input) => readModel(input.dir),
    head: 2048,
  },
  {
    name: 'Hugging Face folder: config.json',
    seeds: () => {
      const files = tinyHfFolder(TINY);
      return [{ file: 'config.json', bytes: files['config.json']!, companions: without(files, 'config.json') }];
    },
    parse: (input) => readModel(input.dir),
    json: true,
  },
  {
    name: 'Meta folder: consolidated.00.pth',
    seeds: () => {
      const files = folder(ref('golden', 'hf', 'meta_gqa_bf16'));
      return [{ file: 'consolidated.00.pth', bytes: files['consolidated.00.pth']!, companions: without(files, 'consolidated.00.pth') }];
    },
    parse: (input) => readModel(input.dir),
    head: 4096,
  },
  {
    name: 'training checkpoint (ckpt.bin)',
    seeds: (dir) => {
      const w = initWeights(TINY, 5);
      const path = join(dir, 'ckpt.bin');
      writeTrainCheckpoint(path, {
        state: {
          config: TINY, settings: { batch_size: 2 }, iter: 3, adamSteps: 3, tokensSeen: 96, bestValLoss: 5.5,
          sampler: { epoch: 0, cursor: 3 }, dropoutRng: [1, 2, 3, 4],
          run: { trainFiles: ['a.bin'], valFiles: ['b.bin'], exportFormat: 'v1' },
        },
        params: w.data, m: new Float32Array(w.data.length), v: new Float32Array(w.data.length),
      });
      return [{ file: 'ckpt.bin', bytes: readFileSync(path) }];
    },
    parse: (input) => {
      readTrainCheckpoint(input.path);
    },
    head: 1024,
  },
  {
    name: 'dataset archive (.tar.gz)',
    seeds: async (dir) => [{ file: 'data.tar.gz', bytes: (await makeArchive(dir, 2, 5)).bytes }],
    parse: async (input) => {
      await extractShards(input.path, join(input.dir, 'shards'), { maxUnpackedBytes: 1 << 22 });
    },
    head: 64,
  },
  {
    name: 'server: API request bodies',
    seeds: () => [
      { file: 'completion.json', bytes: new TextEncoder().encode(JSON.stringify({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 20, temperature: 0.8, top_p: 0.9, seed: 42, stop: ['.', '!'], stream: true, stream_options: { include_usage: true }, echo: true, n: 1 })) },
      { file: 'chat.json', bytes: new TextEncoder().encode(JSON.stringify({ model: 'tiny', messages: [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: [{ type: 'text', text: 'Tell me' }] }, { role: 'assistant', content: 'Once' }, { role: 'user', content: 'More' }], max_completion_tokens: 5, temperature: 0, logprobs: false, tools: [] })) },
    ],
    parse: (input) => {
      const text = new TextDecoder().decode(input.bytes);
      for (const parse of [parseCompletionRequest, parseChatRequest]) {
        try {
          parse(parseBody(text));
        } catch (err) {
          if (!(err instanceof LlamaError)) throw err;
        }
      }
    },
    json: true,
  },
  {
    name: 'server: raw HTTP requests',
    seeds: async (dir) => {
      const model = tinyCheckpoint(dir, 'v1');
      server = await startServer(loadServedModel({ modelPath: model, tokenizerPath: ref('data', 'models', 'tok512.bin'), id: 'tiny' }, jsKernels), {
        port: 0, maxConcurrent: 2, maxQueued: 64, headersTimeoutMs: 500, bodyTimeoutMs: 300, requestTimeoutMs: 2000, maxBodyBytes: 1 << 16,
      });
      return REQUESTS.map((r, i) => ({ file: `request${i}.http`, bytes: new TextEncoder().encode(r) }));
    },
    parse: async (input) => {
      const status = await rawRequest(server!.url, input.bytes);
      // a 5xx would be an internal error; '' is a connection the server closed (a request Node.js's parser refused)
      if (status.startsWith('5') && status !== '503') throw new Error(`HTTP ${status}`);
    },
    async teardown() {
      // the server still answers, with nothing left running or waiting
      const health = await fetch(`${server!.url}/health`);
      const body = (await health.json()) as { sessions: { active: number; queued: number } };
      await server!.server.close(1000);
      if (health.status !== 200 || body.sessions.active !== 0 || body.sessions.queued !== 0) {
        throw new Error(`after the fuzzing: /health ${health.status} ${JSON.stringify(body)}`);
      }
    },
    head: 200,
  },
];

/** Writes a seed's companion files into `dir` (once per target). */
export function writeCompanions(dir: string, seed: FuzzSeed): void {
  mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(seed.companions ?? {})) writeFileSync(join(dir, name), bytes);
}
