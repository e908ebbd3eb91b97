// The table of `llama2` sub-commands. Each entry lazily imports its module, so starting the CLI
// loads only the code of the command that runs. A command module exports
//   main(argv: string[]): Promise<number | void>
// which parses its own flags (node:util parseArgs), calls the library and prints.

export interface CommandEntry {
  /** One line for `llama2 --help`. */
  readonly summary: string;
  readonly load: () => Promise<{ main(argv: string[]): Promise<number | void> }>;
}

export const commands: Record<string, CommandEntry> = {
  info: { summary: 'print a checkpoint\'s header, format and parameter count', load: () => import('./info.js') },
};
