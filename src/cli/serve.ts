// `llama2 serve MODEL [options]` — the OpenAI-compatible HTTP API and the browser playground.

import { UsageError } from '../errors.js';
import { startServer } from '../server/http.js';
import { loadServedModel } from '../server/served-model.js';
import { intFlag, parseCommand, stringFlag } from './flags.js';
import { ENGINE_HELP, engineFlagSpec, engineFromFlags, resolveModelFiles } from './model-args.js';

const HELP = `Usage: llama2 serve [MODEL] [options]

Serves a llama2.c checkpoint (default: the embedded model, models/default.bin) over HTTP with the OpenAI API, and a playground page that runs the
model in the browser (or through the API).

  POST /v1/completions, POST /v1/chat/completions (stream: true for server-sent events)
  GET  /v1/models, GET /health, GET / (the playground)

Options:
  -z, --tokenizer FILE    tokenizer.bin or .model (default: tokenizer.bin beside the model)
      --host HOST         address to listen on (default 127.0.0.1)
      --port N            port (default 8080; 0 = any free port)
      --model-id NAME     the model's name in the API (default: the file name without extension)
      --max-concurrent N  requests generating at once, each with its own KV cache (default 4)
      --queue N           requests waiting for a free slot before others get 429 (default 16)
${ENGINE_HELP}
  -q, --quiet             no log line per request
  -h, --help              this help

Prints "listening on URL" on standard output; request logs go to standard error. SIGINT or
SIGTERM stops it gracefully (requests in progress get 10 s to finish; a second signal quits).`;

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
    ...engineFlagSpec,
    quiet: { type: 'boolean', short: 'q' },
  }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  const host = stringFlag(values, 'host', '127.0.0.1');
  const port = intFlag(values, 'port', 8080, 0, 65535);
  const maxConcurrent = intFlag(values, 'max-concurrent', 4, 1, 1024);
  const maxQueued = intFlag(values, 'queue', 16, 0, 100_000);
  const id = stringFlag(values, 'model-id');
  if (id !== undefined && id.length === 0) throw new UsageError('--model-id must not be empty');

  const { model: modelPath, tokenizer: tokenizerPath } = resolveModelFiles(positionals, 'serve', stringFlag(values, 'tokenizer'));
  const engine = await engineFromFlags(values);
  const model = loadServedModel({ modelPath, tokenizerPath, ...(id !== undefined ? { id } : {}) }, engine.kernels, engine.load);
  const log = values['quiet'] ? undefined : (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  let started;
  try {
    started = await startServer(model, { host, port, maxConcurrent, maxQueued, ...(log ? { log } : {}) });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new UsageError(`port ${port} on ${host} is already in use (try --port 0)`);
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new UsageError(`cannot listen on ${host}: no such local address`);
    if (code === 'EACCES') throw new UsageError(`no permission to listen on port ${port}`);
    throw err;
  }
  const { server, url } = started;
  const c = model.transformer.config;
  process.stderr.write(`serving ${model.id} (dim ${c.dim}, ${c.nLayers} layers, context ${c.seqLen}) with ${engine.kernels.name} kernels, ` +
    `${maxConcurrent} at once, ${maxQueued} waiting\n`);
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
  await engine.kernels.close();
  process.stderr.write('stopped\n');
  return 0;
}
