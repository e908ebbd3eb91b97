// Shared by the server tests: a server on an ephemeral loopback port serving stories260K, raw
// HTTP helpers, a server-sent-events reader, and `llama2 run` as the reference.

import { execFileSync } from 'node:child_process';
import { createKernels, type KernelSet } from '../src/kernels/kernel-set.js';
import { type ApiServer, type ServerOptions, startServer } from '../src/server/http.js';
import { loadServedModel } from '../src/server/served-model.js';
import { cliPath, ref } from './refdata.js';

export const MODEL = ref('data', 'models', 'stories260K.bin');
export const TOKENIZER = ref('data', 'models', 'tok512.bin');

export interface TestServer {
  readonly server: ApiServer;
  readonly url: string;
  close(): Promise<void>;
}

/** A server with its own copy of the model (single-threaded WebAssembly kernels, or the slower TypeScript ones). */
export async function serve(options: ServerOptions = {}, kind: 'wasm' | 'js' = 'wasm'): Promise<TestServer> {
  const kernels: KernelSet = await createKernels({ kind, threads: 1 });
  const model = loadServedModel({ modelPath: MODEL, tokenizerPath: TOKENIZER }, kernels);
  const { server, url } = await startServer(model, { port: 0, ...options });
  return {
    server, url,
    async close() {
      await server.close(1000);
      await kernels.close();
    },
  };
}

/** What API clients send with a body. */
export const JSON_HEADERS = { 'Content-Type': 'application/json' };

export interface JsonResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Record<string, unknown>;
}

export async function postJson(url: string, body: unknown): Promise<JsonResponse> {
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

/** The `data:` payloads of a server-sent-events body, in order. */
export function sseData(text: string): string[] {
  const events = text.split('\n\n');
  if (events.pop() !== '') throw new Error('the event stream does not end with a blank line');
  return events.map((e) => {
    if (!e.startsWith('data: ') || e.includes('\n')) throw new Error(`not a single-line data event: ${JSON.stringify(e)}`);
    return e.slice(6);
  });
}

export interface Chunk {
  choices: Array<{ text?: string; delta?: { role?: string; content?: string }; finish_reason: string | null }>;
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  error?: unknown;
}

/** A streamed response read to its end: the parsed chunks (before [DONE]) and their text. */
export async function postStream(url: string, body: Record<string, unknown>): Promise<{ status: number; contentType: string | null; chunks: Chunk[]; text: string }> {
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) });
  const data = sseData(await res.text());
  if (data.pop() !== '[DONE]') throw new Error('the stream does not end with data: [DONE]');
  const chunks = data.map((d) => JSON.parse(d) as Chunk);
  const text = chunks.map((c) => c.choices.map((ch) => ch.text ?? ch.delta?.content ?? '').join('')).join('');
  return { status: res.status, contentType: res.headers.get('content-type'), chunks, text };
}

/** `llama2 run` stdout for these flags (the final newline dropped). */
export function llama2Run(args: string[]): string {
  const out = execFileSync(process.execPath, [cliPath, 'run', MODEL, '-z', TOKENIZER, ...args], { encoding: 'utf8', stdio: ['pipe', 'pipe', 'ignore'], input: '' });
  return out.replace(/\n$/, '');
}
