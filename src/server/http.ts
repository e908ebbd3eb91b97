// `llama2 serve`'s HTTP server (node:http): the OpenAI-compatible API and the playground page.
//
//   POST /v1/completions        text completion        (stream: server-sent events)
//   POST /v1/chat/completions   the model's chat template (stream: server-sent events)
//   GET  /v1/models, /v1/models/ID
//   GET  /health                { status, model, sessions: { active, queued, max_concurrent, max_queued } }
//   POST /tokenize, /detokenize  llama.cpp server's: { content } → { tokens }, { tokens } → { content }
//   GET  /                      the playground (dist/web, built by `npm run build:web`), plus
//        /model.bin, /tokenizer.bin   the served model's files, for the page to run in the browser
//
// Each request gets a session (sessions.ts) and generates with generateFromIds, one position at a
// time, letting the event loop run between positions: requests interleave token by token, and a
// client that goes away is noticed before the next position (its generation stops there). The
// pages are sent with the COOP/COEP headers that make them cross-origin isolated, which browsers
// require for SharedArrayBuffer and so for the threaded WebAssembly kernels.
//
// Work is bounded before it starts. A connection has headersTimeoutMs to send its headers and
// requestTimeoutMs to send its whole request, its body may go quiet for at most bodyTimeoutMs,
// and there are at most maxConnections of them. A prompt is first measured cheaply
// (Tokenizer.minTokens: a lower bound of its token count, one pass over the text), and one that
// cannot fit the context window is refused (400) without being tokenized; the others are
// tokenized only once they hold a session — tokenizing counts under the concurrency limit — and
// in slices (Tokenizer.encodeAsync), so that the event loop keeps serving meanwhile. max_tokens
// may run past the context window (the context shifts, keeping BOS and a chat's system prompt),
// up to maxTokens.
//
// Exposure. A page in the user's browser must not be able to drive a local server: API bodies
// must be application/json (which a cross-origin page cannot send without a CORS preflight),
// requests from another origin are refused unless that origin is allowed (corsOrigins, --cors),
// and a server on a loopback address only answers to loopback host names (DNS rebinding). With
// apiKey, /v1/ requests need "Authorization: Bearer KEY", as OpenAI's clients send it.

import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type TextPart, systemPromptTokens } from '../infer/chat.js';
import { type ChatFormat, LLAMA2_CHAT, splitSpecialTokens } from '../infer/chat-format.js';
import type { InferenceEngine } from '../infer/engine.js';
import type { ModelKernels } from '../infer/forward.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { LlamaError, quote } from '../errors.js';
import { type GenerationRequest, type GenerationResult, generateFromIds, promptText } from '../infer/generate.js';
import { StreamingDecoder } from '../tokenizer/index.js';
import { type SteeringOptions, TokenSteering, tokenText } from './token-steering.js';
import {
  ApiError, type ApiFinishReason, type ChatRequest, type ChoiceOut, type CompletionRequest, type ResponseHead, type SamplingParams, type TokenLogprob,
  chatChunk, chatObject, completionChunk, completionObject, errorBody, parseBody, parseChatRequest, parseCompletionRequest,
  type DetokenizeRequest, parseDetokenizeRequest, parseTokenizeRequest, type TokenizeRequest,
  usage, usageChunk,
} from './openai.js';
import { BusyError, SessionPool } from './sessions.js';
import { isIP } from 'node:net';

/** The model a server serves: loaded, with the name clients use for it. */
export interface ServedModel {
  /** Its name in /v1/models and in requests' `model`. */
  readonly id: string;
  /** The first session; every other session shares its weights. */
  readonly transformer: InferenceEngine;
  readonly tokenizer: Tokenizer;
  /** How /v1/chat/completions turns messages into tokens (default: Llama 2's [INST] format). */
  readonly chatFormat?: ChatFormat;
  readonly kernels: ModelKernels;
  /** The files, served to the playground at /model.bin and /tokenizer.bin (when given). */
  readonly modelFile?: string;
  readonly tokenizerFile?: string;
  /** Unix seconds reported as the model's `created`. */
  readonly created: number;
}

export interface ServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8080; 0 = any free port. */
  port?: number;
  /** Sessions generating at once (default 4); all of them are made (their KV caches allocated) at start-up. */
  maxConcurrent?: number;
  /**
   * When fewer than maxConcurrent sessions fit in memory: 'refuse' (default) throws
   * SessionMemoryError, 'cap' serves with those that fit (see server.sessions.maxConcurrent).
   */
  fitSessions?: 'refuse' | 'cap';
  /** Requests waiting for a session before new ones get 429 (default 16). */
  maxQueued?: number;
  /** Largest request body in bytes (default 1 MiB). */
  maxBodyBytes?: number;
  /** Open connections at most; more are closed at once (default 128, or twice maxConcurrent + maxQueued if more). */
  maxConnections?: number;
  /** Time to send the request headers (default 10 s). */
  headersTimeoutMs?: number;
  /** Longest silence while a request body is being sent (default 10 s); then 408. */
  bodyTimeoutMs?: number;
  /** Time to send the whole request, headers and body (default 30 s). */
  requestTimeoutMs?: number;
  /** Origins allowed to call the API from a browser page ('*' for any); default none (same origin only). */
  corsOrigins?: readonly string[];
  /** When set, /v1/ requests need the header "Authorization: Bearer <apiKey>". */
  apiKey?: string;
  /**
   * Largest max_tokens a request may ask for (default: 4 context windows). Past the context
   * window the context shifts (see src/infer/generate.ts).
   */
  maxTokens?: number;
  /** Folder of the built playground (default: dist/web next to this module's dist/src). */
  webRoot?: string;
  /** One line per request and event (default: none). */
  log?: (line: string) => void;
}

/** Emitted as 'generation' after every generation (also aborted ones). */
export interface GenerationEvent {
  readonly endpoint: 'completions' | 'chat';
  readonly stream: boolean;
  readonly result: GenerationResult;
}

const DEFAULT_WEB_ROOT = fileURLToPath(new URL('../../web/', import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm', '.map': 'application/json', '.png': 'image/png', '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon', '.bin': 'application/octet-stream', '.model': 'application/octet-stream',
};

/** Headers that make a page cross-origin isolated (SharedArrayBuffer, and so WebAssembly threads). */
const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/** Sent with the API's answers to an allowed cross-origin page (plus Access-Control-Allow-Origin). */
const CORS_HEADERS = {
  'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
  'Access-Control-Allow-Headers': 'Content-Type, Authorization',
  'Access-Control-Max-Age': '600',
  'Vary': 'Origin',
};

export class ApiServer extends EventEmitter {
  readonly sessions: SessionPool;
  private readonly server: Server;
  private readonly maxBodyBytes: number;
  private readonly maxTokens: number;
  private readonly bodyTimeoutMs: number;
  private readonly corsOrigins: ReadonlySet<string>;
  /** SHA-256 of the API key (compared in constant time), when there is one. */
  private readonly apiKeyHash: Buffer | undefined;
  private readonly log: (line: string) => void;
  /** Static files by URL path. */
  private readonly files = new Map<string, string>();
  private readonly webBuilt: boolean;
  /** Generations in progress, to cut at the end of a shutdown. */
  private readonly running = new Set<AbortController>();
  private closing: Promise<void> | undefined;

  constructor(readonly model: ServedModel, private readonly options: ServerOptions = {}) {
    super();
    const { transformer } = model;
    let first: InferenceEngine | undefined = transformer;
    const create = (): InferenceEngine => {
      const t = first ?? transformer.session();
      first = undefined;
      return t;
    };
    this.sessions = new SessionPool(create, options.maxConcurrent ?? 4, options.maxQueued ?? 16, options.fitSessions ?? 'refuse');
    // The tokenizer's tables (for a 32k vocabulary ~170 ms of work) are built now, not by the first
    // request's bound or encoding, which would hold every other request and /health meanwhile.
    model.tokenizer.minTokens('');
    this.maxBodyBytes = options.maxBodyBytes ?? 1 << 20;
    this.maxTokens = options.maxTokens ?? 4 * model.transformer.config.seqLen;
    this.bodyTimeoutMs = options.bodyTimeoutMs ?? 10_000;
    this.corsOrigins = new Set(options.corsOrigins ?? []);
    if (options.apiKey !== undefined && options.apiKey.length === 0) throw new LlamaError('the API key must not be empty');
    this.apiKeyHash = options.apiKey === undefined ? undefined : sha256(options.apiKey);
    this.log = options.log ?? (() => {});
    const webRoot = options.webRoot ?? DEFAULT_WEB_ROOT;
    this.webBuilt = existsSync(join(webRoot, 'index.html'));
    if (this.webBuilt) {
      for (const name of readdirSync(webRoot)) {
        const path = join(webRoot, name);
        if (statSync(path).isFile()) this.files.set(`/${name}`, path);
      }
      this.files.set('/', join(webRoot, 'index.html'));
    }
    if (model.modelFile !== undefined) this.files.set('/model.bin', model.modelFile);
    if (model.tokenizerFile !== undefined) this.files.set('/tokenizer.bin', model.tokenizerFile);
    const headersTimeout = options.headersTimeoutMs ?? 10_000;
    const requestTimeout = Math.max(options.requestTimeoutMs ?? 30_000, headersTimeout);
    this.server = createServer({
      headersTimeout, requestTimeout,
      // how often Node.js looks for connections past those two limits (its default is 30 s)
      connectionsCheckingInterval: Math.min(1000, headersTimeout),
    }, (req, res) => {
      this.handle(req, res).catch((err: unknown) => this.fail(res, err));
    });
    this.server.maxConnections = options.maxConnections ?? Math.max(128, 2 * (this.sessions.maxConcurrent + this.sessions.maxQueued));
    this.server.on('drop', (d?: { remoteAddress?: string }) => this.log(`connection from ${d?.remoteAddress ?? '?'} dropped: ${this.server.maxConnections} are open`));
    // a keep-alive client must not hold the server open forever after a shutdown starts
    this.server.keepAliveTimeout = 5000;
  }

  /** Starts listening; resolves with the base URL (http://host:port). */
  listen(): Promise<string> {
    const host = this.options.host ?? '127.0.0.1';
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port ?? 8080, host, () => {
        this.server.off('error', reject);
        const { port } = this.server.address() as AddressInfo;
        resolve(`http://${host.includes(':') ? `[${host}]` : host}:${port}`);
      });
    });
  }

  /**
   * Graceful shutdown: no new connections or requests (503), waiting requests refused, requests
   * already generating get `graceMs` to finish, then are cut (a stream ends with an error event).
   */
  close(graceMs = 10_000): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      this.server.closeIdleConnections();
      this.sessions.rejectWaiting(new ApiError(503, 'the server is shutting down', null, 'shutting_down'));
      const deadline = Date.now() + graceMs;
      while (this.running.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      for (const c of this.running) c.abort(new ApiError(503, 'the server is shutting down', null, 'shutting_down'));
      // a moment to send the error event, then the connections go (also those of clients that
      // stopped reading: that ends a generation waiting for them to drain)
      for (let i = 0; i < 20 && this.running.size > 0; i++) await new Promise((r) => setTimeout(r, 5));
      this.server.closeAllConnections();
      while (this.running.size > 0) await new Promise((r) => setTimeout(r, 5));
      await closed;
    })();
    return this.closing;
  }

  // ----------------------------------------------------------------------------------------------
  // Routing

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    res.on('close', () => {
      const gone = res.writableFinished ? '' : ' (the client went away)';
      this.log(`${req.method} ${req.url} ${res.statusCode} ${(performance.now() - started).toFixed(1)} ms${gone}`);
    });
    const path = (req.url ?? '/').split('?')[0]!;
    this.checkHost(req);
    const api = path.startsWith('/v1/') || path === '/tokenize' || path === '/detokenize';
    if (api) {
      this.checkOrigin(req, res);
      if (req.method === 'OPTIONS') {
        res.writeHead(204, { 'Allow': 'GET, HEAD, POST, OPTIONS' }).end();
        return;
      }
    }
    if (this.closing !== undefined) {
      res.setHeader('Connection', 'close');
      throw new ApiError(503, 'the server is shutting down', null, 'shutting_down');
    }
    const route: Route | undefined = ROUTES[path] ?? (path.startsWith('/v1/models/') ? 'model' : undefined);
    if (route === undefined) {
      const file = this.files.get(path);
      if (file !== undefined && (req.method === 'GET' || req.method === 'HEAD')) return this.sendFile(req, res, file);
      if (path === '/' && !this.webBuilt) return sendText(res, 404, 'The playground is not built: run npm run build:web (or npm run build).\n');
      throw new ApiError(404, `no such endpoint: ${req.method} ${path}`, null, 'not_found');
    }
    const post = route === 'completions' || route === 'chat' || route === 'tokenize' || route === 'detokenize';
    if (post ? req.method !== 'POST' : req.method !== 'GET' && req.method !== 'HEAD') {
      const allowed = post ? 'POST' : 'GET, HEAD';
      res.setHeader('Allow', allowed);
      throw new ApiError(405, `${path} takes ${allowed.replace(', ', ' or ')}, not ${req.method}`, null, 'method_not_allowed');
    }
    if (api) this.checkApiKey(req, res);
    // (a HEAD request gets the headers of the GET answer; Node.js leaves its body out)
    switch (route) {
      case 'health':
        return sendJson(res, 200, {
          status: 'ok', model: this.model.id,
          sessions: { active: this.sessions.active, queued: this.sessions.queued, max_concurrent: this.sessions.maxConcurrent, max_queued: this.sessions.maxQueued },
        });
      case 'models':
        return sendJson(res, 200, { object: 'list', data: [this.modelObject()] });
      case 'model': {
        let id: string;
        try {
          id = decodeURIComponent(path.slice('/v1/models/'.length));
        } catch {
          throw new ApiError(400, `${path}: not a valid percent-encoded model name`, null, 'invalid_request');
        }
        if (id !== this.model.id) throw unknownModel(id);
        return sendJson(res, 200, this.modelObject());
      }
      case 'completions':
        return this.completions(res, parseCompletionRequest(parseBody(await this.readBody(req, res))));
      case 'chat':
        return this.chat(res, parseChatRequest(parseBody(await this.readBody(req, res))));
      case 'tokenize':
        return this.tokenize(res, parseTokenizeRequest(parseBody(await this.readBody(req, res))));
      case 'detokenize':
        return this.detokenize(res, parseDetokenizeRequest(parseBody(await this.readBody(req, res))));
    }
  }

  /**
   * A server listening on a loopback address answers only to loopback names in Host: a page
   * whose own host name was made to resolve to 127.0.0.1 (DNS rebinding) sends its own name.
   * With an API key the key is the protection, and any name is accepted (reverse proxies).
   */
  private checkHost(req: IncomingMessage): void {
    if (this.apiKeyHash !== undefined || !isLoopback(this.options.host ?? '127.0.0.1')) return;
    const host = hostName(req.headers.host ?? '');
    if (!isLoopback(host)) {
      throw new ApiError(403, `this server listens on a loopback address and does not answer to the host name ${quote(host)} (start it with --api-key to allow other names)`, null, 'forbidden_host');
    }
  }

  /**
   * A request from a page of another origin (its Origin header) is refused unless corsOrigins
   * allows it; an allowed one gets the CORS headers. Requests without Origin (not from a
   * browser page) and same-origin ones (the playground) pass.
   */
  private checkOrigin(req: IncomingMessage, res: ServerResponse): void {
    const origin = req.headers.origin;
    if (origin === undefined || originHost(origin) === req.headers.host) return;
    const allowed = this.corsOrigins.has('*') ? '*' : this.corsOrigins.has(origin) ? origin : undefined;
    if (allowed === undefined) {
      throw new ApiError(403, `requests from the origin ${origin} are not allowed (start the server with --cors ${origin} to allow them)`, null, 'forbidden_origin');
    }
    res.setHeader('Access-Control-Allow-Origin', allowed);
    for (const [k, v] of Object.entries(CORS_HEADERS)) res.setHeader(k, v);
  }

  private checkApiKey(req: IncomingMessage, res: ServerResponse): void {
    if (this.apiKeyHash === undefined) return;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (m !== null && timingSafeEqual(sha256(m[1]!), this.apiKeyHash)) return;
    res.setHeader('WWW-Authenticate', 'Bearer');
    throw new ApiError(401, m === null ? 'an API key is needed: send the header Authorization: Bearer KEY' : 'the API key is not valid', null, 'invalid_api_key');
  }

  private modelObject(): object {
    return { id: this.model.id, object: 'model', created: this.model.created, owned_by: 'llama2ts' };
  }

  /**
   * The body as text, which must be declared application/json (415 otherwise). More than
   * maxBodyBytes is refused (413) — by its Content-Length before reading anything, else as soon
   * as it is exceeded; the rest is read and dropped, so that the client, still sending, gets the
   * answer instead of a broken connection. A body that stops arriving for bodyTimeoutMs gets 408
   * and the connection is closed (what was received is let go).
   */
  private readBody(req: IncomingMessage, res: ServerResponse): Promise<string> {
    const limit = this.maxBodyBytes;
    const refuse = (err: ApiError): ApiError => {
      res.setHeader('Connection', 'close');
      req.resume();
      return err;
    };
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') {
      return Promise.reject(refuse(new ApiError(415, `the request body must be JSON, sent with Content-Type: application/json (got ${type === '' ? 'none' : type})`, null, 'unsupported_media_type')));
    }
    const tooLarge = (): ApiError => refuse(new ApiError(413, `the request body is larger than ${limit} bytes`, null, 'request_too_large'));
    if (Number(req.headers['content-length'] ?? 0) > limit) return Promise.reject(tooLarge());
    return new Promise((resolve, reject) => {
      let chunks: Buffer[] = [];
      let size = 0;
      let settled = false;
      const settle = (): void => {
        settled = true;
        chunks = [];
        clearTimeout(timer);
      };
      const stalled = (): void => {
        settle();
        res.setHeader('Connection', 'close');
        reject(new ApiError(408, `the request body stopped arriving (nothing for ${this.bodyTimeoutMs / 1000} s)`, null, 'request_timeout'));
        res.once('finish', () => req.destroy());
      };
      const timer = setTimeout(stalled, this.bodyTimeoutMs);
      req.on('data', (chunk: Buffer) => {
        if (settled) return;
        size += chunk.length;
        if (size > limit) {
          settle();
          reject(tooLarge());
        } else {
          chunks.push(chunk);
          timer.refresh();
        }
      });
      req.on('end', () => {
        if (settled) return;
        const body = Buffer.concat(chunks).toString('utf8');
        settle();
        resolve(body);
      });
      req.on('error', (err) => {
        if (settled) return;
        settle();
        reject(err);
      });
      req.on('close', () => {
        if (settled) return;
        settle();
        reject(new LlamaError('the client went away while sending its request'));
      });
    });
  }

  // ----------------------------------------------------------------------------------------------
  // Generation endpoints

  private checkModel(params: SamplingParams): void {
    if (params.model !== undefined && params.model !== this.model.id) throw unknownModel(params.model);
  }

  /** The generation request of choice `index` for prompt ids, after checking they fit the context window. */
  private generationRequest(params: SamplingParams, ids: number[], prompt: PromptSpec, signal: AbortSignal, index: number, observer: TokenSteering | undefined): GenerationRequest {
    const seqLen = this.model.transformer.config.seqLen;
    if (ids.length > seqLen) throw tooLong(`${ids.length} tokens`, seqLen, prompt.param);
    return {
      promptIds: ids,
      // by default to the end of the context window; asked for, past it (the context shifts)
      maxTokens: params.maxTokens ?? seqLen - ids.length + 1,
      keep: prompt.keep(ids),
      stopTokens: prompt.stopTokens,
      stopSequences: params.stop,
      samplePrompt: prompt.samplePrompt,
      temperature: params.temperature,
      topp: params.topP,
      // choice i of n: seed + i, so that the choices differ and each is reproducible
      seed: params.seed !== undefined ? BigInt(params.seed) + BigInt(index) : randomSeed(),
      signal,
      ...(observer !== undefined ? { observer } : {}),
    };
  }

  private async completions(res: ServerResponse, params: CompletionRequest): Promise<void> {
    this.checkModel(params);
    const tok = this.model.tokenizer;
    const prompt: PromptSpec = { parts: [{ text: params.prompt, bos: true, eos: false }], param: 'prompt', stopTokens: [tok.bosId], samplePrompt: false, keep: () => 1 };
    await this.generate(res, params, 'completions', prompt, (ids) => ({
      prefix: params.echo ? promptText(tok, ids) : '',
      start: () => [],
      piece: (h, i, text, lp) => completionChunk(h, i, text, null, lp),
      end: (h, i, finish, lp) => completionChunk(h, i, '', finish, lp),
      whole: (h, choices, u) => completionObject(h, choices, u),
      object: 'text_completion',
      idPrefix: 'cmpl-',
    }));
  }

  private async chat(res: ServerResponse, params: ChatRequest): Promise<void> {
    this.checkModel(params);
    const tok = this.model.tokenizer;
    // the answer ends at EOS; BOS too (it could only begin another conversation turn)
    const seqLen = this.model.transformer.config.seqLen;
    const format = this.model.chatFormat ?? LLAMA2_CHAT;
    const prompt: PromptSpec = {
      parts: format.parts(params.messages, tok), param: 'messages', stopTokens: [tok.eosId, tok.bosId], samplePrompt: true,
      // a context shift keeps BOS and the system prompt
      keep: (ids) => systemPromptTokens(tok, params.messages, ids, seqLen, (m) => format.parts(m, tok)),
    };
    await this.generate(res, params, 'chat', prompt, () => ({
      prefix: '',
      start: (h, i) => [chatChunk(h, i, { role: 'assistant', content: '' }, null)],
      piece: (h, i, text, lp) => chatChunk(h, i, { content: text }, null, lp),
      end: (h, i, finish, lp) => chatChunk(h, i, {}, finish, lp),
      whole: (h, choices, u) => chatObject(h, choices, u),
      object: 'chat.completion.chunk',
      idPrefix: 'chatcmpl-',
    }));
  }

  /**
   * The part both endpoints share: refuse a prompt that cannot fit without tokenizing it, wait for
   * a session, tokenize (in slices), generate the choices one after the other, position by
   * position, send the text as one JSON object or as server-sent events, and stop when the client
   * goes away.
   */
  private async generate(
    res: ServerResponse, params: SamplingParams, endpoint: GenerationEvent['endpoint'], prompt: PromptSpec,
    makeShape: (ids: readonly number[]) => ResponseShape,
  ): Promise<void> {
    const tok = this.model.tokenizer;
    const seqLen = this.model.transformer.config.seqLen;
    if (params.maxTokens !== undefined && params.maxTokens > this.maxTokens) {
      throw new ApiError(400, `max_tokens: ${params.maxTokens} is more than this server generates for a request (${this.maxTokens})`, 'max_tokens', 'invalid_value');
    }
    for (const id of params.logitBias.keys()) {
      if (id >= tok.vocabSize) throw new ApiError(400, `logit_bias: token ${id} is not in the vocabulary (ids 0 to ${tok.vocabSize - 1})`, 'logit_bias', 'invalid_value');
    }
    let atLeast = 0;
    for (const part of prompt.parts) atLeast += part.special !== undefined ? 1 : tok.minTokens(part.text, part);
    if (atLeast > seqLen) throw tooLong(`at least ${atLeast} tokens`, seqLen, prompt.param);

    const { controller, session, done } = await this.acquireFor(res);
    this.running.add(controller);
    try {
      const ids: number[] = [];
      for (const part of prompt.parts) {
        if (part.special !== undefined) ids.push(part.special);
        else for (const id of await tok.encodeAsync(part.text, part, controller.signal)) ids.push(id);
      }
      const shape = makeShape(ids);
      const head: ResponseHead = { id: shape.idPrefix + randomUUID().replaceAll('-', ''), created: Math.floor(Date.now() / 1000), model: this.model.id };
      // the logits are needed for logit_bias, the penalties, logprobs, and to rank best_of
      const steer = params.logitBias.size > 0 || params.presencePenalty !== 0 || params.frequencyPenalty !== 0 || params.logprobs !== undefined || params.bestOf > params.n;
      const steering: SteeringOptions = {
        logitBias: params.logitBias, presencePenalty: params.presencePenalty, frequencyPenalty: params.frequencyPenalty,
        logprobs: params.logprobs ?? (params.bestOf > params.n ? 0 : undefined), scorePrompt: shape.prefix.length > 0,
      };
      if (params.stream) res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no' });
      const candidates: Array<ChoiceOut & { readonly mean: number }> = [];
      let completionTokens = 0;
      for (let index = 0; index < params.bestOf; index++) {
        const observer = steer ? new TokenSteering(tok.vocabSize, steering) : undefined;
        const tracker = observer !== undefined ? new TokenOffsets(tok, observer, ids, shape.prefix.length) : undefined;
        const listed = params.logprobs !== undefined; // logprobs go out (best_of alone only ranks)
        const gen = generateFromIds(session, tok, this.generationRequest(params, ids, prompt, controller.signal, index, observer));
        if (params.stream) {
          for (const chunk of shape.start(head, index)) await sendEvent(res, chunk);
          if (shape.prefix.length > 0) await sendEvent(res, shape.piece(head, index, shape.prefix, listed ? tracker!.upTo(shape.prefix.length) : undefined));
        }
        let text = shape.prefix;
        let result: GenerationResult;
        for (;;) {
          const r = gen.next();
          if (r.done) {
            result = r.value;
            break;
          }
          if (r.value.length > 0) {
            text += r.value;
            if (params.stream) await sendEvent(res, shape.piece(head, index, r.value, listed ? tracker!.upTo(text.length, Infinity) : undefined));
          }
          await new Promise<void>((resolve) => setImmediate(resolve)); // other requests' turn
        }
        this.emit('generation', { endpoint, stream: params.stream, result } satisfies GenerationEvent);
        if (result.finishReason === 'aborted') {
          // the client is gone (nothing to send), or the server is shutting down
          const reason: unknown = controller.signal.reason;
          if (reason instanceof ApiError && !res.destroyed) {
            if (params.stream) await sendEvent(res, errorBody(reason)).then(() => res.end());
            else throw reason;
          }
          return;
        }
        completionTokens += result.completionTokens;
        // the answer's tokens: the sampled ones before a stop token, whose text starts in the text
        const tokens = tracker?.all(text.length, result.completionTokens);
        if (params.stream) await sendEvent(res, shape.end(head, index, result.finishReason, listed ? tracker!.upTo(text.length, result.completionTokens) : undefined));
        const sampled = tokens?.filter((t) => !t.prompt) ?? [];
        candidates.push({
          text, finish: result.finishReason, logprobs: listed ? tokens : undefined,
          mean: sampled.length > 0 ? sampled.reduce((a, t) => a + t.logprob, 0) / sampled.length : -Infinity,
        });
      }
      const u = usage(ids.length, completionTokens);
      if (params.stream) {
        if (params.includeUsage) await sendEvent(res, usageChunk(head, shape.object, u));
        res.end('data: [DONE]\n\n');
      } else {
        // best_of: the n candidates with the highest mean log probability per token
        const chosen = params.bestOf > params.n ? [...candidates].sort((a, b) => b.mean - a.mean).slice(0, params.n) : candidates;
        sendJson(res, 200, shape.whole(head, chosen, u));
      }
    } finally {
      this.running.delete(controller);
      done();
    }
  }

  // ----------------------------------------------------------------------------------------------
  // llama.cpp's /tokenize and /detokenize

  /**
   * { tokens: [ids] }, or with with_pieces { tokens: [{ id, piece }] } (a piece that is not whole
   * UTF-8 as its bytes). Tokenizing takes a session's turn, as a prompt does, and runs in slices.
   */
  private async tokenize(res: ServerResponse, params: TokenizeRequest): Promise<void> {
    const tok = this.model.tokenizer;
    const { controller, session, done } = await this.acquireFor(res);
    try {
      // parse_special: the spellings of special tokens ("<s>") become their ids
      const parts: TextPart[] = params.parseSpecial ? splitSpecialTokens(params.content, tok) : [{ text: params.content, bos: false, eos: false }];
      const ids: number[] = params.addSpecial ? [tok.bosId] : [];
      for (const part of parts) {
        if (part.special !== undefined) ids.push(part.special);
        else for (const id of await tok.encodeAsync(part.text, { bos: false, eos: false }, controller.signal)) ids.push(id);
      }
      if (!params.withPieces) {
        sendJson(res, 200, { tokens: ids });
        return;
      }
      const decoder = new TextDecoder('utf-8', { fatal: true });
      sendJson(res, 200, {
        tokens: ids.map((id, i) => {
          const { bytes } = tokenText(tok, -1, id); // the piece as it is (its leading space kept, as llama.cpp shows it)
          let piece: string | number[];
          try {
            piece = decoder.decode(Uint8Array.from(bytes));
          } catch {
            piece = bytes;
          }
          return { id, piece };
        }),
      });
    } finally {
      done();
    }
  }

  /**
   * A session's turn for the request answered on res: waits for a free session (429 when the queue is
   * full) with an AbortController that fires when the client goes away; done() gives the session back.
   */
  private async acquireFor(res: ServerResponse): Promise<{ controller: AbortController; session: InferenceEngine; done: () => void }> {
    const controller = new AbortController();
    const onClose = (): void => {
      if (!res.writableFinished) controller.abort(new LlamaError('the client went away'));
    };
    res.on('close', onClose);
    let session: InferenceEngine;
    try {
      session = await this.sessions.acquire(controller.signal);
    } catch (err) {
      res.off('close', onClose);
      if (err instanceof BusyError) {
        res.setHeader('Retry-After', '1');
        throw new ApiError(429, `the server is busy (${err.message}); retry later`, null, 'rate_limit_exceeded', 'rate_limit_error');
      }
      throw err;
    }
    const done = (): void => {
      this.sessions.release(session);
      res.off('close', onClose);
    };
    return { controller, session, done };
  }

  /** { content }: the text of the ids, as SentencePiece decodes them. */
  private detokenize(res: ServerResponse, params: DetokenizeRequest): void {
    const tok = this.model.tokenizer;
    const bad = params.tokens.findIndex((id) => id >= tok.vocabSize);
    if (bad >= 0) throw new ApiError(400, `tokens[${bad}]: ${params.tokens[bad]} is not in the vocabulary (ids 0 to ${tok.vocabSize - 1})`, 'tokens', 'invalid_value');
    sendJson(res, 200, { content: tok.decode(params.tokens) });
  }

  // ----------------------------------------------------------------------------------------------
  // Files and errors

  private sendFile(req: IncomingMessage, res: ServerResponse, path: string): void {
    let size: number;
    try {
      size = statSync(path).size;
    } catch {
      throw new ApiError(404, `${req.url} is no longer there`, null, 'not_found');
    }
    res.writeHead(200, {
      'Content-Type': CONTENT_TYPES[extname(path)] ?? 'application/octet-stream',
      'Content-Length': size,
      'Cache-Control': 'no-cache',
      ...ISOLATION_HEADERS,
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const stream = createReadStream(path);
    stream.on('error', () => res.destroy());
    res.on('close', () => stream.destroy());
    stream.pipe(res);
  }

  /** Answers an error (an ApiError as it is, anything else as a 500) unless a response is under way. */
  private fail(res: ServerResponse, err: unknown): void {
    if (res.destroyed) return; // the client is gone (e.g. it left while waiting in line)
    let apiError: ApiError;
    if (err instanceof ApiError) apiError = err;
    else {
      this.log(`error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      apiError = new ApiError(500, `internal error: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (res.headersSent) {
      // mid-stream: say so in the stream, then end it
      if (!res.writableEnded && !res.destroyed) res.end(`data: ${JSON.stringify(errorBody(apiError))}\n\n`);
      return;
    }
    sendJson(res, apiError.status, errorBody(apiError));
  }
}

/** A request's prompt: the texts to tokenize and how the answer ends. */
interface PromptSpec {
  readonly parts: readonly TextPart[];
  /** The request parameter that holds it (named in errors). */
  readonly param: 'prompt' | 'messages';
  readonly stopTokens: readonly number[];
  /** Draw a sample at every prompt position (a chat, as run.c's chat() does). */
  readonly samplePrompt: boolean;
  /** Positions a context shift keeps, given the prompt's ids (BOS; a chat's system prompt too). */
  readonly keep: (ids: readonly number[]) => number;
}

/** How an endpoint's responses look (choice `index`; `lp`: the log probabilities of the tokens a piece holds). */
interface ResponseShape {
  /** Text sent before the answer (the echoed prompt). */
  readonly prefix: string;
  readonly start: (h: ResponseHead, index: number) => object[];
  readonly piece: (h: ResponseHead, index: number, text: string, lp: readonly TokenLogprob[] | undefined) => object;
  readonly end: (h: ResponseHead, index: number, finish: ApiFinishReason, lp: readonly TokenLogprob[] | undefined) => object;
  readonly whole: (h: ResponseHead, choices: readonly ChoiceOut[], u: ReturnType<typeof usage>) => object;
  readonly object: 'text_completion' | 'chat.completion.chunk';
  readonly idPrefix: string;
}

/**
 * Where each scored token's text starts in a choice's text — the prompt's tokens (echo) from 0,
 * the answer's after the echoed prompt — found by decoding them as the generation loop does, so
 * that a streamed piece can carry exactly the tokens whose text has started by its end.
 */
class TokenOffsets {
  private readonly decoder: StreamingDecoder;
  private readonly list: Array<TokenLogprob & { readonly prompt: boolean }> = [];
  private prev: number;
  private length: number;
  private sent = 0;
  private sampled = 0;

  constructor(private readonly tok: Tokenizer, private readonly steering: TokenSteering, ids: readonly number[], prefixLength: number) {
    this.decoder = new StreamingDecoder(tok);
    const scoresPrompt = steering.promptLogits !== undefined;
    this.prev = scoresPrompt ? ids[0]! : ids[ids.length - 1]!;
    this.length = scoresPrompt ? 0 : prefixLength;
  }

  /** Brings the list up to date with the tokens scored so far. */
  private update(): void {
    const v = (id: number): { token: string; bytes: number[] } => tokenText(this.tok, this.prev, id);
    for (let i = this.list.length; i < this.steering.scored.length; i++) {
      const s = this.steering.scored[i]!;
      const own = v(s.id);
      this.list.push({
        ...own, logprob: s.logprob, offset: this.length, prompt: s.prompt,
        top: s.top.map((t) => ({ ...tokenText(this.tok, this.prev, t.id), logprob: t.logprob })),
      });
      this.length += this.decoder.push(this.prev, s.id).length;
      this.prev = s.id;
    }
  }

  /** The tokens not yet sent whose text starts before `end`, at most `maxSampled` answer tokens in all. */
  upTo(end: number, maxSampled = 0): TokenLogprob[] {
    this.update();
    const out: TokenLogprob[] = [];
    while (this.sent < this.list.length) {
      const t = this.list[this.sent]!;
      if (t.offset >= end) break;
      if (!t.prompt && this.sampled >= maxSampled) break;
      if (!t.prompt) this.sampled++;
      out.push(t);
      this.sent++;
    }
    return out;
  }

  /** Every token of the choice: the prompt's (when scored), then the first `sampled` answer tokens whose text starts before `end`. */
  all(end: number, sampled: number): Array<TokenLogprob & { readonly prompt: boolean }> {
    this.update();
    let n = 0;
    return this.list.filter((t) => (t.prompt ? true : n++ < sampled && t.offset < end));
  }
}

type Route = 'health' | 'models' | 'model' | 'completions' | 'chat' | 'tokenize' | 'detokenize';

const ROUTES: Record<string, Route> = {
  '/health': 'health',
  '/v1/models': 'models',
  '/v1/completions': 'completions',
  '/v1/chat/completions': 'chat',
  '/tokenize': 'tokenize',
  '/detokenize': 'detokenize',
};

function tooLong(size: string, seqLen: number, param: string): ApiError {
  return new ApiError(400, `the prompt is ${size}, longer than the model's context window of ${seqLen} tokens`, param, 'context_length_exceeded');
}

/** The host:port of an origin ("http://127.0.0.1:8080" → "127.0.0.1:8080"); undefined for "null" and the like. */
function originHost(origin: string): string | undefined {
  try {
    return new URL(origin).host;
  } catch {
    return undefined;
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** The host name of a Host header ("[::1]:8080" → "::1", "localhost:80" → "localhost"). */
function hostName(host: string): string {
  const m = /^\[([^\]]*)\](?::\d*)?$/.exec(host);
  return m !== null ? m[1]! : host.replace(/:\d*$/, '');
}

/** localhost (and its subdomains), 127.0.0.0/8, ::1 (also IPv4-mapped). */
function isLoopback(name: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, '');
  if (n === 'localhost' || n.endsWith('.localhost')) return true;
  const v4 = n.startsWith('::ffff:') ? n.slice(7) : n;
  if (isIP(v4) === 4) return v4.startsWith('127.');
  return isIP(n) === 6 && /^(0{0,4}:){2,7}0{0,3}1$|^::1$/.test(n);
}

function unknownModel(id: string): ApiError {
  return new ApiError(404, `the model ${quote(id)} does not exist on this server`, 'model', 'model_not_found');
}

/** A random 64-bit seed for requests that give none. */
function randomSeed(): bigint {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return ((BigInt(words[0]!) << 32n) | BigInt(words[1]!)) || 1n;
}

function sendJson(res: ServerResponse, status: number, body: object): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function sendText(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** Writes one server-sent event; waits while the client is slow to read (backpressure). */
function sendEvent(res: ServerResponse, body: object): Promise<void> {
  if (res.destroyed || res.writableEnded) return Promise.resolve();
  if (res.write(`data: ${JSON.stringify(body)}\n\n`)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** Creates a server for `model` and starts listening; resolves once it is. */
export async function startServer(model: ServedModel, options: ServerOptions = {}): Promise<{ server: ApiServer; url: string }> {
  const server = new ApiServer(model, options);
  return { server, url: await server.listen() };
}
