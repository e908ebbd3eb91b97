// `llama2 serve MODEL [options]` — the OpenAI-compatible HTTP API and the browser playground.

import { UsageError } from '../errors.js';
import { type ModelConfig, kvDim } from '../model/config.js';
import { startServer } from '../server/http.js';
import { SessionMemoryError } from '../server/sessions.js';
import { loadServedModel } from '../server/served-model.js';
import { intFlag, parseCommand, stringFlag } from './flags.js';
import { ENGINE_HELP, engineFlagSpec, engineFromFlags, resolveModelFiles } from './model-args.js';

const HELP = `Usage: llama2 serve [MODEL] [options]

Serves a model — a llama2.c checkpoint, a GGUF file, a Hugging Face or Meta folder, or a downloaded model's name (default: the embedded model, models/default.bin) — over HTTP with the OpenAI API, and a playground page that runs the
model in the browser (or through the API).

  POST /v1/completions, POST /v1/chat/completions (stream: true for server-sent events)
  GET  /v1/models, GET /health, GET / (the playground)

Options:
  -z, --tokenizer FILE    tokenizer.bin or .model (default: tokenizer.bin beside the model)
      --host HOST         address to listen on (default 127.0.0.1)
      --port N            port (default 8080; 0 = any free port)
      --model-id NAME     the model's name in the API (default: the file name without extension)
      --max-concurrent N  requests generating at once, each with its own KV cache, all allocated at
                          start-up (default 4, or as many as fit in memory; more than fit is an error)
      --queue N           requests waiting for a free slot before others get 429 (default 16)
      --max-tokens N      largest max_tokens a request may ask for (default: 4 context windows;
                          past the context window the context shifts, keeping BOS and a chat's
                          system prompt)
      --max-connections N open connections at most; more are closed at once (default 128, or
                          2 × (max-concurrent + queue) when that is more)
      --cors ORIGIN       let pages of ORIGIN (e.g. http://localhost:3000, or *) call the API from a
                          browser; repeatable (default: none — only the playground's own origin)
      --api-key KEY       require "Authorization: Bearer KEY" on /v1/ requests (default: the
                          LLAMA2_API_KEY environment variable, else no key)
${ENGINE_HELP}
  -q, --quiet             no log line per request
  -h, --help              this help

API bodies must be sent as Content-Type: application/json. A request has 10 s to send its headers,
30 s for the whole request, and its body may not pause for more than 10 s.

Prints "listening on URL" on standard output; request logs go to standard error. SIGINT or
SIGTERM stops it gracefully (requests in progress get 10 s to finish; a second signal quits).`;

function kvCacheMiB(c: ModelConfig): string {
  return `${((2 * c.nLayers * c.seqLen * kvDim(c) * 4) / 2 ** 20).toFixed(1)} MiB`;
}

/** Seconds requests in progress get to finish after SIGINT/SIGTERM. */
const SHUTDOWN_GRACE_MS = 10_000;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, {
    tokenizer: { type: 'string', short: 'z' },
    host: { type: 'string' },
    port: { type: 'string' },
    'model-id': { type: 'string' },
    'max-concurrent': { type: 'string' },
    queue: { type: 'string' },
    'max-connections': { type: 'string' },
    cors: { type: 'string', multiple: true },
    'api-key': { type: 'string' },
    'max-tokens': { type: 'string' },
    ...engineFlagSpec,
    quiet: { type: 'boolean', short: 'q' },
  }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  const host = stringFlag(values, 'host', '127.0.0.1');
  const port = intFlag(values, 'port', 8080, 0, 65535);
  const maxConcurrent = intFlag(values, 'max-concurrent', 4, 1, 1024);
  // asked for: all of them or an error; by default: what fits, up to 4
  const fitSessions = values['max-concurrent'] === undefined ? 'cap' : 'refuse';
  const maxQueued = intFlag(values, 'queue', 16, 0, 100_000);
  const maxTokens = values['max-tokens'] === undefined ? undefined : intFlag(values, 'max-tokens', 1, 1, Number.MAX_SAFE_INTEGER);
  const maxConnections = values['max-connections'] === undefined ? undefined : intFlag(values, 'max-connections', 128, 1, 1_000_000);
  const corsOrigins = (values['cors'] as string[] | undefined) ?? [];
  for (const o of corsOrigins) {
    if (o !== '*' && o !== 'null' && !/^[a-z][a-z0-9+.-]*:\/\/[^/?#\s]+$/i.test(o)) {
      throw new UsageError(`--cors: '${o}' is not an origin (scheme://host[:port], e.g. http://localhost:3000, or *)`);
    }
  }
  const apiKey = stringFlag(values, 'api-key') ?? (process.env['LLAMA2_API_KEY'] || undefined);
  if (apiKey !== undefined && (apiKey.length === 0 || /\s/.test(apiKey))) throw new UsageError('--api-key must be non-empty, without spaces');
  const id = stringFlag(values, 'model-id');
  if (id !== undefined && id.length === 0) throw new UsageError('--model-id must not be empty');

  const { model: modelPath, tokenizer: tokenizerPath } = resolveModelFiles(positionals, 'serve', stringFlag(values, 'tokenizer'));
  const engine = await engineFromFlags(values);
  const model = loadServedModel({ modelPath, tokenizerPath, ...(id !== undefined ? { id } : {}) }, engine.kernels, engine.load, engine.backend === 'webgpu' ? engine.open : undefined);
  const log = values['quiet'] ? undefined : (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  let started;
  try {
    started = await startServer(model, {
      host, port, maxConcurrent, fitSessions, maxQueued, corsOrigins, ...(maxTokens !== undefined ? { maxTokens } : {}), ...(maxConnections !== undefined ? { maxConnections } : {}), ...(apiKey !== undefined ? { apiKey } : {}), ...(log ? { log } : {}),
    });
  } catch (err) {
    if (err instanceof SessionMemoryError) {
      throw new UsageError(`--max-concurrent ${maxConcurrent}: only ${err.fitting} sessions (each with a KV cache of ${kvCacheMiB(model.transformer.config)}) fit in memory; use --max-concurrent ${err.fitting} or less`);
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new UsageError(`port ${port} on ${host} is already in use (try --port 0)`);
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new UsageError(`cannot listen on ${host}: no such local address`);
    if (code === 'EACCES') throw new UsageError(`no permission to listen on port ${port}`);
    throw err;
  }
  const { server, url } = started;
  const c = model.transformer.config;
  const sessions = server.sessions.maxConcurrent;
  if (sessions < maxConcurrent) {
    process.stderr.write(`note: only ${sessions} sessions (each with a KV cache of ${kvCacheMiB(c)}) fit in memory; serving ${sessions} at once\n`);
  }
  process.stderr.write(`serving ${model.id} (dim ${c.dim}, ${c.nLayers} layers, context ${c.seqLen}) with ${engine.backend === 'webgpu' ? model.transformer.backend : `${engine.kernels.name} kernels`}, ` +
    `${sessions} at once, ${maxQueued} waiting${apiKey !== undefined ? ', API key required' : ''}${corsOrigins.length > 0 ? `, CORS for ${corsOrigins.join(' ')}` : ''}\n`);
  process.stdout.write(`listening on ${url}\n`);

  // wait for SIGINT / SIGTERM, then shut down gracefully; a second signal quits at once
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  process.stderr.write(`${signal}: shutting down (requests in progress get ${SHUTDOWN_GRACE_MS / 1000} s)\n`);
  const quit = (): void => process.exit(130);
  process.once('SIGINT', quit);
  process.once('SIGTERM', quit);
  await server.close(SHUTDOWN_GRACE_MS);
  await engine.close();
  process.stderr.write('stopped\n');
  return 0;
}
