// The OpenAI API's shapes: checking request bodies of /v1/completions and /v1/chat/completions,
// and building the response objects, streamed chunks and error objects.
//
// Supported parameters (anything else in a body is ignored, as long as it asks for nothing we
// cannot do):
//   model        must name the served model when given
//   prompt       completions: a string, or an array holding one string (default "")
//   messages     chat: [{ role: system | developer | user | assistant, content }], ending with a
//                user message; content is a string or an array of { type: "text", text } parts
//   max_tokens   (chat also: max_completion_tokens) tokens to generate, ≥ 1; default: until the
//                context window is full; more runs past it (the context shifts), up to the
//                server's limit (ServerOptions.maxTokens)
//   temperature  0 to 2 (default 1; 0 = greedy)
//   top_p        0 to 1 (default 1 = plain sampling; 0 is also plain sampling, as in llama2 run)
//   seed         an integer; the same seed and settings give the same text (0 or absent = random)
//   stop         a string or up to 4 strings; the text ends just before the first one
//   stream       true: server-sent events, ending with "data: [DONE]"
//   stream_options.include_usage   a last chunk with the token counts
//   echo         completions: the prompt's text is put in front of the answer
//   n, best_of   must be 1;  logprobs, tools, non-zero penalties, a suffix: refused

import type { ChatMessage } from '../infer/chat.js';
import { LlamaError } from '../errors.js';

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
  /** undefined = until the context window is full. */
  readonly maxTokens: number | undefined;
  readonly temperature: number;
  readonly topP: number;
  /** undefined = a random seed. */
  readonly seed: number | undefined;
  readonly stop: readonly string[];
  readonly stream: boolean;
  readonly includeUsage: boolean;
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

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** body[name] as a number in [min, max] (absent or null → fallback). */
function numberParam(body: Body, name: string, fallback: number, min: number, max: number): number {
  const v = body[name];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw invalid(name, `expected a number, got ${typeName(v)}`);
  if (v < min || v > max) throw invalid(name, `${v} is out of range [${min}, ${max}]`);
  return v;
}

function integerParam(body: Body, name: string, min: number): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw invalid(name, `expected an integer, got ${typeof v === 'number' ? v : typeName(v)}`);
  if (v < min) throw invalid(name, `${v} must be at least ${min}`);
  return v;
}

function booleanParam(body: Body, name: string): boolean {
  const v = body[name];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw invalid(name, `expected a boolean, got ${typeName(v)}`);
  return v;
}

function stopParam(body: Body): string[] {
  const v = body['stop'];
  if (v === undefined || v === null) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || !list.every((s): s is string => typeof s === 'string')) {
    throw invalid('stop', `expected a string or an array of strings, got ${typeName(v)}`);
  }
  if (list.length > 4) throw invalid('stop', `at most 4 stop strings, got ${list.length}`);
  if (list.some((s) => s.length === 0)) throw invalid('stop', 'a stop string must not be empty');
  return list;
}

/** Parameters that ask for something this server cannot do. */
function refuseUnsupported(body: Body): void {
  for (const name of ['n', 'best_of']) {
    const v = body[name];
    if (v !== undefined && v !== null && v !== 1) throw invalid(name, `only 1 is supported, got ${JSON.stringify(v)}`);
  }
  for (const name of ['presence_penalty', 'frequency_penalty']) {
    const v = body[name];
    if (v !== undefined && v !== null && v !== 0) throw invalid(name, 'penalties are not supported (only 0)');
  }
  const lp = body['logprobs'];
  if (lp !== undefined && lp !== null && lp !== false) throw invalid('logprobs', 'log probabilities are not supported');
  const tools = body['tools'];
  if (Array.isArray(tools) ? tools.length > 0 : tools !== undefined && tools !== null) throw invalid('tools', 'tools are not supported');
  const suffix = body['suffix'];
  if (suffix !== undefined && suffix !== null && suffix !== '') throw invalid('suffix', 'a suffix (insertion) is not supported');
}

function samplingParams(body: Body, maxTokensNames: readonly string[]): SamplingParams {
  refuseUnsupported(body);
  const model = body['model'];
  if (model !== undefined && model !== null && typeof model !== 'string') throw invalid('model', `expected a string, got ${typeName(model)}`);
  let maxTokens: number | undefined;
  for (const name of maxTokensNames) maxTokens ??= integerParam(body, name, 1);
  const seed = integerParam(body, 'seed', Number.MIN_SAFE_INTEGER);
  const options = body['stream_options'];
  let includeUsage = false;
  if (options !== undefined && options !== null) {
    if (typeof options !== 'object' || Array.isArray(options)) throw invalid('stream_options', `expected an object, got ${typeName(options)}`);
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
  };
}

export function parseCompletionRequest(body: Body): CompletionRequest {
  const params = samplingParams(body, ['max_tokens']);
  const p = body['prompt'];
  let prompt: string;
  if (p === undefined || p === null) prompt = '';
  else if (typeof p === 'string') prompt = p;
  else if (Array.isArray(p) && p.length === 1 && typeof p[0] === 'string') prompt = p[0];
  else if (Array.isArray(p) && p.every((x) => typeof x === 'string')) throw invalid('prompt', `one prompt per request, got ${p.length}`);
  else throw invalid('prompt', `expected a string, got ${typeName(p)}`);
  return { ...params, prompt, echo: booleanParam(body, 'echo') };
}

export function parseChatRequest(body: Body): ChatRequest {
  const params = samplingParams(body, ['max_completion_tokens', 'max_tokens']);
  const raw = body['messages'];
  if (!Array.isArray(raw)) throw invalid('messages', raw === undefined ? 'required' : `expected an array, got ${typeName(raw)}`);
  if (raw.length === 0) throw invalid('messages', 'at least one message is needed');
  const messages = raw.map((m: unknown, i): ChatMessage => {
    const where = `messages[${i}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw invalid(where, `expected an object, got ${typeName(m)}`);
    const { role, content } = m as Body;
    if (role !== 'system' && role !== 'developer' && role !== 'user' && role !== 'assistant') {
      throw invalid(`${where}.role`, `expected system, developer, user or assistant, got ${JSON.stringify(role)}`);
    }
    return { role: role === 'developer' ? 'system' : role, content: messageText(content, `${where}.content`) };
  });
  if (messages[messages.length - 1]!.role !== 'user') throw invalid('messages', 'the last message must be the user\'s');
  return { ...params, messages };
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

export function completionObject(h: ResponseHead, text: string, finish: ApiFinishReason, u: Usage): object {
  return { id: h.id, object: 'text_completion', created: h.created, model: h.model, choices: [{ index: 0, text, logprobs: null, finish_reason: finish }], usage: u };
}

export function completionChunk(h: ResponseHead, text: string, finish: ApiFinishReason): object {
  return { id: h.id, object: 'text_completion', created: h.created, model: h.model, choices: [{ index: 0, text, logprobs: null, finish_reason: finish }] };
}

export function chatObject(h: ResponseHead, content: string, finish: ApiFinishReason, u: Usage): object {
  return {
    id: h.id, object: 'chat.completion', created: h.created, model: h.model,
    choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, logprobs: null, finish_reason: finish }], usage: u,
  };
}

/** A chat chunk; `delta` is { role } first, then { content }, then {} with the finish reason. */
export function chatChunk(h: ResponseHead, delta: { role?: 'assistant'; content?: string }, finish: ApiFinishReason): object {
  return { id: h.id, object: 'chat.completion.chunk', created: h.created, model: h.model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] };
}

/** The last chunk of a stream with stream_options.include_usage. */
export function usageChunk(h: ResponseHead, object: 'text_completion' | 'chat.completion.chunk', u: Usage): object {
  return { id: h.id, object, created: h.created, model: h.model, choices: [], usage: u };
}
