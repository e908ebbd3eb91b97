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
  run: { summary: 'generate text (or chat) with a model — llama2.c\'s run', load: () => import('./run.js') },
  serve: { summary: 'OpenAI-compatible HTTP API and a browser playground for a model', load: () => import('./serve.js') },
  bench: { summary: 'time decoding and prefill; peak memory', load: () => import('./bench.js') },
  eval: { summary: 'validation loss and perplexity over pretokenized data', load: () => import('./eval.js') },
  init: { summary: 'write a freshly initialised checkpoint of any shape', load: () => import('./init.js') },
  export: { summary: 'convert a model to llama2.c v0, v1, v2 (Q8_0), GGUF, a Hugging Face or a Meta folder', load: () => import('./export.js') },
  download: { summary: 'fetch a model (stories15M, hf:ORG/NAME, …) or the TinyStories dataset (resumable)', load: () => import('./download.js') },
  pretokenize: { summary: 'stories → uint16 token shards for training (worker threads)', load: () => import('./pretokenize.js') },
  'train-vocab': { summary: 'learn a BPE vocabulary (SentencePiece-compatible .model + tokenizer.bin)', load: () => import('./train-vocab.js') },
  'tokenize-stats': { summary: 'tokens per story/byte and vocabulary use of a tokenizer on story files', load: () => import('./tokenize-stats.js') },
  info: { summary: 'print a model\'s format, shape, tokenizer and parameter count', load: () => import('./info.js') },
  encode: { summary: 'text → token ids (SentencePiece-exact), BOS first', load: () => import('./encode.js') },
  decode: { summary: 'token ids → text', load: () => import('./decode.js') },
  'export-tokenizer': { summary: 'SentencePiece .model → llama2.c tokenizer.bin', load: () => import('./export-tokenizer.js') },
  train: { summary: 'train a model from scratch (or resume) on pretokenized data', load: () => import('./train.js') },
};
