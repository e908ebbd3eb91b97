// The OpenAI API's shapes: checking request bodies of /v1/completions and /v1/chat/completions,
// and building the response objects, streamed chunks and error objects.
//
// Every field of OpenAI's request bodies is either implemented or refused with a 400 naming it
// (OpenAI's error shape); a field OpenAI does not know is refused as OpenAI refuses it
// ("Unrecognized request argument supplied: …"). Implemented:
//   model        must name the served model when given
//   prompt       completions: a string, or an array holding one string (default "")
//   messages     chat: [{ role: system | developer | user | assistant, content, name? }], ending with
//                a user message; content is a string or an array of { type: "text", text } parts
//   max_tokens   (chat also: max_completion_tokens) tokens to generate per choice, ≥ 1; default:
//                to the end of the context window; more runs past it (the context shifts)
//   temperature  0 to 2 (default 1; 0 = greedy)
//   top_p        0 to 1 (default 1 = plain sampling; 0 is also plain sampling, as in llama2 run)
//   seed         an integer; the same seed and settings give the same text (0 or absent = random);
//                choice i of n is sampled with seed + i
//   stop         a string or up to 4 strings; the text ends just before the first one
//   n            choices, 1 to 16 (each generated in turn, in one session)
//   best_of      completions: generate this many (n to 16) and return the n with the highest mean
//                token log probability; not with stream
//   logit_bias   { "token id": bias from -100 to 100 }, added to the logits before sampling
//   presence_penalty, frequency_penalty   -2 to 2: logit[j] -= frequency × count[j] +
//                presence × (count[j] > 0), count over the tokens generated so far (OpenAI's formula)
//   logprobs     completions: 0 to 5 (the sampled token's log probability and the top N);
//                chat: true, with top_logprobs 0 to 20. Log probabilities are those of the
//                distribution the token was drawn from, before temperature and top-p (after
//                logit_bias and penalties); with echo the prompt's tokens are scored too
//   stream       true: server-sent events, ending with "data: [DONE]"
//   stream_options.include_usage   a last chunk with the token counts
//   echo         completions: the prompt's text is put in front of the answer
//   user, metadata, prompt_cache_key, safety_identifier   accepted; they change nothing here
//   store (false), service_tier ("auto" or "default"), response_format ({ type: "text" }),
//   modalities (["text"]), tools ([]), tool_choice ("none"), functions ([]), function_call
//   ("none"), parallel_tool_calls   accepted with the values that ask for nothing more
// Refused (400) with any other value: store, service_tier, response_format (JSON mode), tools and
// functions, audio, prediction, reasoning_effort, verbosity, web_search_options, suffix.

import type { ChatMessage } from '../infer/chat.js';
import { LlamaError, quote } from '../errors.js';

/** An error answered with an HTTP status and an OpenAI-style error object. */
export class ApiError extends LlamaError {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type: string = status >= 500 ? 'server_error' : 'invalid_request_error',
  ) {
    super(message);
  }
}

/** { error: { message, type, param, code } } */
export function errorBody(err: ApiError): { error: { message: string; type: string; param: string | null; code: string | null } } {
  return { error: { message: err.message, type: err.type, param: err.param, code: err.code } };
}

export interface SamplingParams {
  readonly model: string | undefined;
  /** undefined = to the end of the context window. */
  readonly maxTokens: number | undefined;
  readonly temperature: number;
  readonly topP: number;
  /** undefined = a random seed. */
  readonly seed: number | undefined;
  readonly stop: readonly string[];
  readonly stream: boolean;
  readonly includeUsage: boolean;
  /** Choices returned. */
  readonly n: number;
  /** Candidates generated (≥ n; completions' best_of, else n). */
  readonly bestOf: number;
  /** Token id → bias added to its logit. */
  readonly logitBias: ReadonlyMap<number, number>;
  readonly presencePenalty: number;
  readonly frequencyPenalty: number;
  /** undefined = no log probabilities; else how many top alternatives each token lists. */
  readonly logprobs: number | undefined;
}

export interface CompletionRequest extends SamplingParams {
  readonly prompt: string;
  readonly echo: boolean;
}

export interface ChatRequest extends SamplingParams {
  readonly messages: readonly ChatMessage[];
}

type Body = Record<string, unknown>;

/** The parsed JSON body, which must be an object. */
export function parseBody(text: string): Body {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ApiError(400, `the request body is not valid JSON: ${(err as Error).message}`, null, 'invalid_json');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ApiError(400, 'the request body must be a JSON object');
  }
  return value as Body;
}

function invalid(param: string, message: string): ApiError {
  return new ApiError(400, `${param}: ${message}`, param, 'invalid_value');
}

function unsupported(param: string, message: string): ApiError {
  return new ApiError(400, `${param}: ${message}`, param, 'unsupported_value');
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

const absent = (v: unknown): boolean => v === undefined || v === null;

/** body[name] as a number in [min, max] (absent or null → fallback). */
function numberParam(body: Body, name: string, fallback: number, min: number, max: number): number {
  const v = body[name];
  if (absent(v)) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw invalid(name, `expected a number, got ${typeName(v)}`);
  if (v < min || v > max) throw invalid(name, `${v} is out of range [${min}, ${max}]`);
  return v;
}

function integerParam(body: Body, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = body[name];
  if (absent(v)) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw invalid(name, `expected an integer, got ${typeof v === 'number' ? v : typeName(v)}`);
  if (v < min) throw invalid(name, `${v} must be at least ${min}`);
  if (v > max) throw invalid(name, `${v} must be at most ${max}`);
  return v;
}

function booleanParam(body: Body, name: string): boolean {
  const v = body[name];
  if (absent(v)) return false;
  if (typeof v !== 'boolean') throw invalid(name, `expected a boolean, got ${typeName(v)}`);
  return v;
}

function stringParam(body: Body, name: string): void {
  const v = body[name];
  if (!absent(v) && typeof v !== 'string') throw invalid(name, `expected a string, got ${typeName(v)}`);
}

function stopParam(body: Body): string[] {
  const v = body['stop'];
  if (absent(v)) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || !list.every((s): s is string => typeof s === 'string')) {
    throw invalid('stop', `expected a string or an array of strings, got ${typeName(v)}`);
  }
  if (list.length > 4) throw invalid('stop', `at most 4 stop strings, got ${list.length}`);
  if (list.some((s) => s.length === 0)) throw invalid('stop', 'a stop string must not be empty');
  return list;
}

/** logit_bias: { "id": bias } with integer ids and biases in [-100, 100] (ids are checked against the vocabulary later). */
function logitBiasParam(body: Body): Map<number, number> {
  const v = body['logit_bias'];
  const bias = new Map<number, number>();
  if (absent(v)) return bias;
  if (typeof v !== 'object' || Array.isArray(v)) throw invalid('logit_bias', `expected an object of token ids, got ${typeName(v)}`);
  for (const [key, b] of Object.entries(v as Body)) {
    if (!/^(0|[1-9]\d{0,8})$/.test(key)) throw invalid('logit_bias', `${quote(key)} is not a token id`);
    if (typeof b !== 'number' || !Number.isFinite(b) || b < -100 || b > 100) throw invalid('logit_bias', `the bias of token ${key} must be a number from -100 to 100`);
    bias.set(Number(key), b);
  }
  if (bias.size > 1024) throw invalid('logit_bias', `at most 1024 tokens, got ${bias.size}`);
  return bias;
}

/** Fields each endpoint knows (OpenAI's), other than those read by name below. */
const COMPLETION_FIELDS = new Set([
  'model', 'prompt', 'best_of', 'echo', 'frequency_penalty', 'logit_bias', 'logprobs', 'max_tokens', 'n', 'presence_penalty',
  'seed', 'stop', 'stream', 'stream_options', 'suffix', 'temperature', 'top_p', 'user',
]);
const CHAT_FIELDS = new Set([
  'messages', 'model', 'audio', 'frequency_penalty', 'function_call', 'functions', 'logit_bias', 'logprobs', 'max_completion_tokens',
  'max_tokens', 'metadata', 'modalities', 'n', 'parallel_tool_calls', 'prediction', 'presence_penalty', 'prompt_cache_key',
  'reasoning_effort', 'response_format', 'safety_identifier', 'seed', 'service_tier', 'stop', 'store', 'stream', 'stream_options',
  'temperature', 'tool_choice', 'tools', 'top_logprobs', 'top_p', 'user', 'verbosity', 'web_search_options',
]);

/** Fields that ask for something this server does not do (a value that asks for nothing passes). */
function refuseUnsupported(body: Body, fields: ReadonlySet<string>): void {
  for (const name of Object.keys(body)) {
    if (!fields.has(name)) throw new ApiError(400, `Unrecognized request argument supplied: ${name}`, name, 'unknown_parameter');
  }
  const v = (name: string): unknown => body[name];
  const suffix = v('suffix');
  if (!absent(suffix) && suffix !== '') throw unsupported('suffix', 'a suffix (insertion) is not supported');
  if (!absent(v('store')) && v('store') !== false) throw unsupported('store', 'this server stores nothing (store must be false)');
  const tier = v('service_tier');
  if (!absent(tier) && tier !== 'auto' && tier !== 'default') throw unsupported('service_tier', `only "auto" and "default", got ${quote(tier)}`);
  const format = v('response_format');
  if (!absent(format)) {
    if (typeof format !== 'object' || Array.isArray(format)) throw invalid('response_format', `expected an object, got ${typeName(format)}`);
    const type = (format as Body)['type'];
    if (type !== 'text') throw unsupported('response_format', `only { "type": "text" } is supported (JSON output is not), got type ${quote(type)}`);
  }
  const modalities = v('modalities');
  if (!absent(modalities) && !(Array.isArray(modalities) && modalities.every((m) => m === 'text'))) throw unsupported('modalities', 'only ["text"] is supported');
  for (const name of ['tools', 'functions']) {
    const list = v(name);
    if (!absent(list) && !(Array.isArray(list) && list.length === 0)) throw unsupported(name, `${name === 'tools' ? 'tools' : 'functions'} (function calling) are not supported`);
  }
  for (const name of ['tool_choice', 'function_call']) {
    const choice = v(name);
    if (!absent(choice) && choice !== 'none') throw unsupported(name, 'function calling is not supported (only "none")');
  }
  const parallel = v('parallel_tool_calls');
  if (!absent(parallel) && typeof parallel !== 'boolean') throw invalid('parallel_tool_calls', `expected a boolean, got ${typeName(parallel)}`);
  for (const name of ['audio', 'prediction', 'reasoning_effort', 'verbosity', 'web_search_options']) {
    if (!absent(v(name))) throw unsupported(name, `${name.replaceAll('_', ' ')} is not supported by this server`);
  }
  for (const name of ['user', 'prompt_cache_key', 'safety_identifier']) stringParam(body, name);
  const metadata = v('metadata');
  if (!absent(metadata)) {
    if (typeof metadata !== 'object' || Array.isArray(metadata) || !Object.values(metadata as Body).every((x) => typeof x === 'string')) {
      throw invalid('metadata', 'expected an object of strings');
    }
  }
}

function samplingParams(body: Body, maxTokensNames: readonly string[], fields: ReadonlySet<string>): Omit<SamplingParams, 'logprobs' | 'bestOf'> {
  refuseUnsupported(body, fields);
  const model = body['model'];
  if (!absent(model) && typeof model !== 'string') throw invalid('model', `expected a string, got ${typeName(model)}`);
  let maxTokens: number | undefined;
  for (const name of maxTokensNames) maxTokens ??= integerParam(body, name, 1);
  const seed = integerParam(body, 'seed', Number.MIN_SAFE_INTEGER);
  const options = body['stream_options'];
  let includeUsage = false;
  if (!absent(options)) {
    if (typeof options !== 'object' || Array.isArray(options)) throw invalid('stream_options', `expected an object, got ${typeName(options)}`);
    for (const key of Object.keys(options as Body)) {
      if (key !== 'include_usage') throw unsupported(`stream_options.${key}`, 'only include_usage is supported');
    }
    includeUsage = booleanParam(options as Body, 'include_usage');
  }
  return {
    model: typeof model === 'string' ? model : undefined,
    maxTokens,
    temperature: numberParam(body, 'temperature', 1, 0, 2),
    topP: numberParam(body, 'top_p', 1, 0, 1),
    seed: seed === 0 ? undefined : seed,
    stop: stopParam(body),
    stream: booleanParam(body, 'stream'),
    includeUsage,
    n: integerParam(body, 'n', 1, MAX_CHOICES) ?? 1,
    logitBias: logitBiasParam(body),
    presencePenalty: numberParam(body, 'presence_penalty', 0, -2, 2),
    frequencyPenalty: numberParam(body, 'frequency_penalty', 0, -2, 2),
  };
}

/** Most choices (n, best_of) one request may ask for. */
export const MAX_CHOICES = 16;

export function parseCompletionRequest(body: Body): CompletionRequest {
  const params = samplingParams(body, ['max_tokens'], COMPLETION_FIELDS);
  const p = body['prompt'];
  let prompt: string;
  if (absent(p)) prompt = '';
  else if (typeof p === 'string') prompt = p;
  else if (Array.isArray(p) && p.length === 1 && typeof p[0] === 'string') prompt = p[0];
  else if (Array.isArray(p) && p.every((x) => typeof x === 'string')) throw invalid('prompt', `one prompt per request, got ${p.length}`);
  else throw invalid('prompt', `expected a string, got ${typeName(p)}`);
  const bestOf = integerParam(body, 'best_of', 1, MAX_CHOICES) ?? params.n;
  if (bestOf < params.n) throw invalid('best_of', `must be at least n (${params.n}), got ${bestOf}`);
  if (bestOf > params.n && params.stream) throw invalid('best_of', 'cannot be streamed (the best choices are known only at the end)');
  const logprobs = integerParam(body, 'logprobs', 0, 5);
  return { ...params, prompt, echo: booleanParam(body, 'echo'), bestOf, logprobs };
}

export function parseChatRequest(body: Body): ChatRequest {
  const params = samplingParams(body, ['max_completion_tokens', 'max_tokens'], CHAT_FIELDS);
  const raw = body['messages'];
  if (!Array.isArray(raw)) throw invalid('messages', raw === undefined ? 'required' : `expected an array, got ${typeName(raw)}`);
  if (raw.length === 0) throw invalid('messages', 'at least one message is needed');
  const messages = raw.map((m: unknown, i): ChatMessage => {
    const where = `messages[${i}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw invalid(where, `expected an object, got ${typeName(m)}`);
    const { role, content } = m as Body;
    if (role !== 'system' && role !== 'developer' && role !== 'user' && role !== 'assistant') {
      throw invalid(`${where}.role`, `expected system, developer, user or assistant, got ${quote(role)}`);
    }
    for (const key of Object.keys(m)) {
      if (key === 'role' || key === 'content') continue;
      if (key === 'name') stringParam(m as Body, 'name');
      else if (!(key === 'refusal' && (m as Body)[key] === null) && !(key === 'tool_calls' && Array.isArray((m as Body)[key]) && ((m as Body)[key] as unknown[]).length === 0)) {
        throw unsupported(`${where}.${key}`, 'not supported in a message (function calling and audio are not)');
      }
    }
    return { role: role === 'developer' ? 'system' : role, content: messageText(content, `${where}.content`) };
  });
  if (messages[messages.length - 1]!.role !== 'user') throw invalid('messages', 'the last message must be the user\'s');
  const wantLogprobs = booleanParam(body, 'logprobs');
  const top = integerParam(body, 'top_logprobs', 0, 20);
  if (top !== undefined && !wantLogprobs) throw invalid('top_logprobs', 'needs logprobs: true');
  return { ...params, messages, bestOf: params.n, logprobs: wantLogprobs ? (top ?? 0) : undefined };
}

/** A message's content: a string, or text parts joined. */
function messageText(content: unknown, where: string): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((part: unknown, i) => {
      const p = part as Body | null;
      if (typeof p !== 'object' || p === null || p['type'] !== 'text' || typeof p['text'] !== 'string') {
        throw invalid(`${where}[${i}]`, 'only { type: "text", text } parts are supported');
      }
      return p['text'];
    }).join('');
  }
  throw invalid(where, `expected a string or an array of text parts, got ${typeName(content)}`);
}

// ------------------------------------------------------------------------------------------------
// Responses

export interface Usage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly total_tokens: number;
}

export function usage(promptTokens: number, completionTokens: number): Usage {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** What every object of one response shares. */
export interface ResponseHead {
  readonly id: string;
  readonly created: number;
  readonly model: string;
}

export type ApiFinishReason = 'stop' | 'length' | null;

/** One token's log probability and its top alternatives, with its text. */
export interface TokenLogprob {
  readonly token: string;
  readonly bytes: readonly number[];
  readonly logprob: number;
  readonly top: ReadonlyArray<{ readonly token: string; readonly bytes: readonly number[]; readonly logprob: number }>;
  /** Where the token's text starts in the choice's text. */
  readonly offset: number;
}

/** A finished choice. */
export interface ChoiceOut {
  readonly text: string;
  readonly finish: ApiFinishReason;
  /** undefined when not asked for. */
  readonly logprobs: readonly TokenLogprob[] | undefined;
}

/** Completions' logprobs object: { tokens, token_logprobs, top_logprobs, text_offset }. */
export function completionLogprobs(tokens: readonly TokenLogprob[]): object {
  return {
    tokens: tokens.map((t) => t.token),
    token_logprobs: tokens.map((t) => t.logprob),
    top_logprobs: tokens.map((t) => {
      const top: Record<string, number> = {};
      for (const alt of t.top) if (!(alt.token in top)) top[alt.token] = alt.logprob;
      return top;
    }),
    text_offset: tokens.map((t) => t.offset),
  };
}

/** Chat's logprobs object: { content: [{ token, logprob, bytes, top_logprobs }], refusal: null }. */
export function chatLogprobs(tokens: readonly TokenLogprob[]): object {
  return {
    content: tokens.map((t) => ({
      token: t.token, logprob: t.logprob, bytes: t.bytes,
      top_logprobs: t.top.map((alt) => ({ token: alt.token, logprob: alt.logprob, bytes: alt.bytes })),
    })),
    refusal: null,
  };
}

export function completionObject(h: ResponseHead, choices: readonly ChoiceOut[], u: Usage): object {
  return {
    id: h.id, object: 'text_completion', created: h.created, model: h.model,
    choices: choices.map((c, index) => ({ index, text: c.text, logprobs: c.logprobs ? completionLogprobs(c.logprobs) : null, finish_reason: c.finish })),
    usage: u,
  };
}

export function completionChunk(h: ResponseHead, index: number, text: string, finish: ApiFinishReason, logprobs?: readonly TokenLogprob[]): object {
  return {
    id: h.id, object: 'text_completion', created: h.created, model: h.model,
    choices: [{ index, text, logprobs: logprobs ? completionLogprobs(logprobs) : null, finish_reason: finish }],
  };
}

export function chatObject(h: ResponseHead, choices: readonly ChoiceOut[], u: Usage): object {
  return {
    id: h.id, object: 'chat.completion', created: h.created, model: h.model,
    choices: choices.map((c, index) => ({
      index, message: { role: 'assistant', content: c.text, refusal: null }, logprobs: c.logprobs ? chatLogprobs(c.logprobs) : null, finish_reason: c.finish,
    })),
    usage: u,
  };
}

/** A chat chunk; `delta` is { role } first, then { content }, then {} with the finish reason. */
export function chatChunk(h: ResponseHead, index: number, delta: { role?: 'assistant'; content?: string }, finish: ApiFinishReason, logprobs?: readonly TokenLogprob[]): object {
  return {
    id: h.id, object: 'chat.completion.chunk', created: h.created, model: h.model,
    choices: [{ index, delta, logprobs: logprobs ? chatLogprobs(logprobs) : null, finish_reason: finish }],
  };
}

/** The last chunk of a stream with stream_options.include_usage. */
export function usageChunk(h: ResponseHead, object: 'text_completion' | 'chat.completion.chunk', u: Usage): object {
  return { id: h.id, object, created: h.created, model: h.model, choices: [], usage: u };
}

// ------------------------------------------------------------------------------------------------
// llama.cpp server's /tokenize and /detokenize

export interface TokenizeRequest {
  readonly content: string;
  /** BOS first (default false). */
  readonly addSpecial: boolean;
  /** Spellings of special tokens ("<s>", "</s>") in the text become their ids (default true). */
  readonly parseSpecial: boolean;
  /** [{ id, piece }] instead of ids (default false). */
  readonly withPieces: boolean;
}

export interface DetokenizeRequest {
  readonly tokens: readonly number[];
}

function refuseUnknown(body: Body, fields: readonly string[]): void {
  for (const name of Object.keys(body)) {
    if (!fields.includes(name)) throw new ApiError(400, `unknown field: ${name} (this endpoint takes ${fields.join(', ')})`, name, 'unknown_parameter');
  }
}

export function parseTokenizeRequest(body: Body): TokenizeRequest {
  refuseUnknown(body, ['content', 'add_special', 'parse_special', 'with_pieces']);
  const content = body['content'];
  if (typeof content !== 'string') throw invalid('content', content === undefined ? 'required' : `expected a string, got ${typeName(content)}`);
  const parse = body['parse_special'];
  if (!absent(parse) && typeof parse !== 'boolean') throw invalid('parse_special', `expected a boolean, got ${typeName(parse)}`);
  return { content, addSpecial: booleanParam(body, 'add_special'), parseSpecial: parse !== false, withPieces: booleanParam(body, 'with_pieces') };
}

export function parseDetokenizeRequest(body: Body): DetokenizeRequest {
  refuseUnknown(body, ['tokens']);
  const tokens = body['tokens'];
  if (!Array.isArray(tokens)) throw invalid('tokens', tokens === undefined ? 'required' : `expected an array of token ids, got ${typeName(tokens)}`);
  tokens.forEach((id: unknown, i) => {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw invalid('tokens', `tokens[${i}] is not a token id: ${quote(id)}`);
  });
  return { tokens: tokens as number[] };
}
