// `llama2 download tinystories [--dir data] [--url URL]`: llama2.c's `tinystories.py download`.

import { UsageError } from '../errors.js';
import { TINYSTORIES_URL, downloadTinyStories } from '../data/download.js';
import { Progress } from '../data/progress.js';
import { numberFlag, parseCommand, stringFlag } from './flags.js';

const HELP = `Usage: llama2 download tinystories [--dir DIR] [--url URL] [--timeout SECONDS] [--quiet]

Downloads the TinyStories dataset archive (TinyStories_all_data.tar.gz, ~1.5 GB, from the
roneneldan/TinyStories Hugging Face repository) into DIR (default: data) and unpacks its 50 JSON
shards into DIR/TinyStories_all_data/. An interrupted download resumes where it stopped (the
bytes so far are kept in DIR/TinyStories_all_data.tar.gz.part); an archive already present is not
fetched again, and shards are not unpacked again once an unpacking completed (it writes
TinyStories_all_data/.complete last). Dropped connections and server errors are retried; what a
retry cannot fix (HTTP 404, a bad redirect, a full disk) stops at once.

  --dir DIR          where to put the archive and the shards (default: data)
  --url URL          download from another address (a mirror, or a local server)
  --timeout SECONDS  give up on a connection silent for this long and retry (default 30)
  --quiet            no progress output`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, {
    dir: { type: 'string' },
    url: { type: 'string' },
    timeout: { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
  }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  if (positionals.length !== 1 || positionals[0] !== 'tinystories') {
    throw new UsageError(`download knows one dataset: llama2 download tinystories [--dir DIR] [--url URL]`);
  }
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
