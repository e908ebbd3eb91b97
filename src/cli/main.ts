#!/usr/bin/env node
// `llama2` — the command-line entry point. It only dispatches: each sub-command lives in its own
// module (see commands.ts), and every error meant for the user is printed as one line.

import { LlamaError } from '../errors.js';
import { commands } from './commands.js';
import { formatHelp } from './help.js';

function usage(): string {
  const names = Object.keys(commands);
  const width = names.reduce((w, n) => Math.max(w, n.length), 0);
  const lines = names.map((n) => `  ${n.padEnd(width)}  ${commands[n]!.summary}`);
  return formatHelp([
    'Usage: llama2 <command> [options]',
    '       llama2 ["PROMPT"] [options]',
    '',
    'llama2.c rebuilt in TypeScript: train, run and serve Llama 2 models. Without a command, tells a',
    'story with the embedded model (the options of `llama2 run`). `llama2 <command> --help` gives the',
    'options of one command.',
    '',
    'Commands:',
    ...lines,
    '',
    'Options:',
    '  -h, --help      this help',
    '  -v, --version   the version of llama2ts',
  ].join('\n'));
}

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === '--help' || first === '-h' || first === 'help') {
    process.stdout.write(usage() + '\n');
    return 0;
  }
  if (first === '--version' || first === '-v') {
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(pkg.version + '\n');
    return 0;
  }
  if (first !== undefined && Object.hasOwn(commands, first)) {
    const mod = await commands[first]!.load();
    return (await mod.main(rest)) ?? 0;
  }
  // A lone lower-case word is a mistyped command, not a prompt.
  if (first !== undefined && /^[a-z][a-z0-9-]*$/.test(first)) {
    process.stderr.write(`llama2: unknown command '${first}'\n\n${usage()}\n`);
    return 2;
  }
  // `llama2` or `llama2 "Once upon a time"` [flags]: run the embedded model (with that prompt).
  const run = commands['run'];
  if (run === undefined) {
    process.stderr.write(usage() + '\n');
    return 2;
  }
  const mod = await run.load();
  const runArgs = first === undefined || first.startsWith('-') ? argv : ['-i', first, ...rest];
  return (await mod.main(runArgs)) ?? 0;
}

// A reader that goes away (`llama2 run … | head`) ends the program quietly, as Unix tools do.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof LlamaError) {
      process.stderr.write(`llama2: ${err.message}\n`);
      process.exitCode = err.exitCode;
    } else if (process.env['LLAMA2_DEBUG']) {
      console.error(err);
      process.exitCode = 70;
    } else {
      const msg = err instanceof Error ? err.message : String(err);
      process.stderr.write(`llama2: internal error: ${msg.split('\n')[0]} (set LLAMA2_DEBUG=1 for details)\n`);
      process.exitCode = 70;
    }
  },
);
