// `llama2 download tinystories [--dir data] [--url URL]`: llama2.c's `tinystories.py download`;
// `llama2 download NAME | hf:ORG/NAME`: a model into the cache (src/data/models.ts).

import { UsageError } from '../errors.js';
import { TINYSTORIES_URL, downloadTinyStories } from '../data/download.js';
import { KNOWN_MODELS, downloadModel, isDownloadableName, modelCacheDir } from '../data/models.js';
import { Progress } from '../data/progress.js';
import { numberFlag, type ParsedFlags, parseCommand, stringFlag } from './flags.js';

const HELP = `Usage: llama2 download MODEL [--dir CACHE] [--revision R] [--url MIRROR] [--timeout SECONDS] [--quiet]
       llama2 download tinystories [--dir DIR] [--url URL] [--timeout SECONDS] [--quiet]

Models go to the cache folder (--dir, else $LLAMA2TS_CACHE, else ~/.cache/llama2ts), where
\`llama2 run MODEL\` (serve, eval, bench, info, export) then finds them by name:
${Object.entries(KNOWN_MODELS).map(([n, m]) => `  ${n.padEnd(14)}${m.description}`).join('\n')}
                (llama2.c's checkpoints, with their tokenizer, from Hugging Face's
                karpathy/tinyllamas and llama2.c's repository)
  hf:ORG/NAME   a Llama-architecture model of the Hugging Face Hub (@REVISION or --revision for
                another branch, tag or commit): config.json, the tokenizer files and every
                safetensors shard. HF_TOKEN is sent to the Hub for gated or private models;
                HF_ENDPOINT points at another hub.
Transfers resume where they stopped (run the command again), sizes (and the Hub's sha256) are
checked, and a model counts as downloaded only once every file is.

tinystories downloads the TinyStories dataset archive (TinyStories_all_data.tar.gz, ~1.5 GB, from the
roneneldan/TinyStories Hugging Face repository) into DIR (default: data) and unpacks its 50 JSON
shards into DIR/TinyStories_all_data/. An interrupted download resumes where it stopped (the
bytes so far are kept in DIR/TinyStories_all_data.tar.gz.part); an archive already present is not
fetched again, and shards are not unpacked again once an unpacking completed (it writes
TinyStories_all_data/.complete last). Dropped connections and server errors are retried; what a
retry cannot fix (HTTP 404, a bad redirect, a full disk) stops at once.

  --dir DIR          where to put the archive and the shards (default: data), or the model cache
  --url URL          download from another address (a mirror, or a local server); for a llama2.c
                     checkpoint, a folder URL its files are fetched from by name
  --revision R       a branch, tag or commit of a Hugging Face model (default main)
  --timeout SECONDS  give up on a connection silent for this long and retry (default 30)
  --quiet            no progress output`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, {
    dir: { type: 'string' },
    url: { type: 'string' },
    timeout: { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
    revision: { type: 'string' },
  }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError(`download takes one name: tinystories, ${Object.keys(KNOWN_MODELS).join(', ')} or hf:ORG/NAME`);
  if (positionals[0] !== 'tinystories') return downloadModelCommand(positionals[0]!, values);
  if (values['revision'] !== undefined) throw new UsageError('--revision is for hf:ORG/NAME models');
  const dir = stringFlag(values, 'dir', 'data');
  const url = stringFlag(values, 'url', TINYSTORIES_URL);
  const timeout = numberFlag(values, 'timeout', 30);
  if (timeout <= 0) throw new UsageError('--timeout must be positive');
  const quiet = values['quiet'] === true;
  const log = (m: string): void => {
    if (!quiet) {
      bar?.abandon();
      process.stderr.write(m + '\n');
    }
  };

  let bar: Progress | undefined;
  let last = -1;
  try {
    const result = await downloadTinyStories(dir, url, {
      stallTimeoutMs: timeout * 1000,
      log,
      onProgress: (done, total) => {
        if (bar === undefined || done < last) bar = new Progress('download', total, { unit: 'bytes', quiet }, done);
        bar.setTotal(total);
        bar.update(done);
        last = done;
      },
      onExtract: (read, total) => {
        if (last !== -2) {
          if (bar !== undefined) bar.finish();
          bar = new Progress('unpack  ', total, { unit: 'bytes', quiet });
          last = -2;
        }
        bar!.update(read);
      },
    });
    bar?.finish();
    bar = undefined;
    process.stderr.write(`${result.shards.length} shards in ${result.shardDir}\n`);
    return 0;
  } catch (err) {
    bar?.abandon();
    throw err;
  }
}

/** `llama2 download MODEL`: a llama2.c checkpoint or a Hugging Face model into the cache. */
async function downloadModelCommand(spec: string, values: ParsedFlags['values']): Promise<number> {
  if (!isDownloadableName(spec)) throw new UsageError(`unknown name ${JSON.stringify(spec)}: llama2 download knows tinystories, ${Object.keys(KNOWN_MODELS).join(', ')} and hf:ORG/NAME`);
  const timeout = numberFlag(values, 'timeout', 30);
  if (timeout <= 0) throw new UsageError('--timeout must be positive');
  const quiet = values['quiet'] === true;
  const mirror = stringFlag(values, 'url');
  if (mirror !== undefined && spec.startsWith('hf:')) throw new UsageError('--url is for llama2.c checkpoints; set HF_ENDPOINT for another hub');
  const dir = stringFlag(values, 'dir');
  const cache = modelCacheDir(dir);
  let bar: Progress | undefined;
  try {
    const path = await downloadModel(spec, cache, {
      stallTimeoutMs: timeout * 1000,
      ...(mirror !== undefined ? { mirror } : {}),
      log: (m) => {
        if (quiet) return;
        bar?.abandon();
        bar = undefined;
        process.stderr.write(m + '\n');
      },
      onProgress: (done, total) => {
        bar ??= new Progress('download', total, { unit: 'bytes', quiet }, done);
        bar.setTotal(total);
        bar.update(done);
      },
    }, stringFlag(values, 'revision'));
    bar?.finish();
    const rev = stringFlag(values, 'revision');
    const name = rev !== undefined && !spec.includes('@') ? `${spec}@${rev}` : spec;
    process.stderr.write(`${spec} is in ${path}\nrun it with: llama2 run ${dir === undefined ? name : path}\n`);
    return 0;
  } catch (err) {
    bar?.abandon();
    throw err;
  }
}
