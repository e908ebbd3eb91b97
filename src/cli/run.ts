// `llama2 run MODEL [options]` — run.c's command line: generate text, or chat.

import { createInterface } from 'node:readline';
import { UsageError } from '../errors.js';
import { chat } from '../infer/chat.js';
import { type ChatFormat, chatFormatFor } from '../infer/chat-format.js';
import { templateChat } from '../infer/template-chat.js';
import type { InferenceEngine } from '../infer/engine.js';
import { generate } from '../infer/generate.js';
import { loadTokenizer } from '../tokenizer/index.js';
import { intFlag, numberFlag, parseCommand, stringFlag } from './flags.js';
import { ENGINE_HELP, engineFlagSpec, engineFromFlags, resolveModelFiles } from './model-args.js';

const HELP = `Usage: llama2 run [MODEL] [options]
       llama2 ["PROMPT"] [options]

Generates text from a model — a llama2.c checkpoint (v0, v1 or v2; the same output as llama2.c's
run for the same flags and seed), a Hugging Face folder (config.json + safetensors) or a Meta
folder (params.json + consolidated.*.pth). Without MODEL it runs the model embedded in llama2ts
(models/default.bin, trained by llama2ts on TinyStories). Chat mode uses the model's chat template
(tokenizer_config.json) when it has one, else Llama 2's [INST] format.

Options:
  -t, --temperature T   sampling temperature, 0 = greedy (default 1.0)
  -p, --top-p P         nucleus sampling threshold in [0, 1]; 0 or 1 = plain sampling (default 0.9)
  -s, --seed N          random seed (default: the current time)
  -n, --steps N         positions to run, prompt included; 0 = the whole context; more than the
                        context slides it (default 256; in chat mode: no limit)
  -k, --keep N          positions at the start of the context kept when it slides (default: 1,
                        BOS; in chat mode BOS and the system prompt); at most half the context
  -i, --prompt TEXT     the text to continue
      --ignore-bos      go on when the model emits BOS (it then starts another story) instead
                        of stopping there, as llama2.c does
  -z, --tokenizer FILE  tokenizer.bin, .model or tokenizer.json (default: the one with the model —
                        tokenizer.bin or tok<vocab>.bin beside a .bin, tokenizer.model or
                        tokenizer.json in a folder)
  -m, --mode MODE       generate | chat (default generate)
  -y, --system TEXT     system prompt in chat mode
${ENGINE_HELP}
  -h, --help            this help

Text goes to standard output; "achieved tok/s" to standard error.`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, {
    temperature: { type: 'string', short: 't' },
    'top-p': { type: 'string', short: 'p' },
    seed: { type: 'string', short: 's' },
    steps: { type: 'string', short: 'n' },
    keep: { type: 'string', short: 'k' },
    'ignore-bos': { type: 'boolean' },
    prompt: { type: 'string', short: 'i' },
    tokenizer: { type: 'string', short: 'z' },
    mode: { type: 'string', short: 'm' },
    system: { type: 'string', short: 'y' },
    ...engineFlagSpec,
  }, HELP, true);
  if (parsed === null) return 0;
  const { values, positionals } = parsed;
  const temperature = numberFlag(values, 'temperature', 1);
  if (temperature < 0) throw new UsageError(`--temperature must be ≥ 0, got ${temperature}`);
  const topp = numberFlag(values, 'top-p', 0.9);
  if (topp < 0 || topp > 1) throw new UsageError(`--top-p must be in [0, 1], got ${topp}`);
  const seed = intFlag(values, 'seed', 0, -(2 ** 31), 2 ** 32 - 1);
  const steps = intFlag(values, 'steps', 256, 0);
  const keep = values['keep'] === undefined ? undefined : intFlag(values, 'keep', 1, 0);
  const mode = stringFlag(values, 'mode', 'generate');
  if (mode !== 'generate' && mode !== 'chat') throw new UsageError(`--mode must be generate or chat, got '${mode}'`);

  const files = resolveModelFiles(positionals, 'run', stringFlag(values, 'tokenizer'));
  const modelPath = files.model;
  const tokenizer = loadTokenizer(files.tokenizer, files.config.vocabSize);
  const engine = await engineFromFlags(values);
  const transformer = engine.open(modelPath);
  const half = Math.floor(transformer.config.seqLen / 2);
  if (keep !== undefined && keep > half) throw new UsageError(`--keep: ${keep} must be at most half the context window (${half})`);

  if (mode === 'chat') {
    const format = chatFormatFor(files.chatTemplate);
    await runChat(transformer, tokenizer, format, {
      temperature, topp, seed, keep, steps: values['steps'] === undefined ? undefined : steps,
      // with -y or -i given, nothing is asked before the first answer (no -y: no system prompt)
      userPrompt: stringFlag(values, 'prompt'), systemPrompt: stringFlag(values, 'system') ?? (values['prompt'] !== undefined ? '' : undefined),
    });
    return 0;
  }
  const gen = generate(transformer, tokenizer, { prompt: stringFlag(values, 'prompt', ''), steps, keep, temperature, topp, seed, cCompatible: true, stopAtBos: values['ignore-bos'] !== true });
  let r = gen.next();
  while (!r.done) {
    process.stdout.write(r.value);
    r = gen.next();
  }
  process.stdout.write('\n');
  const { truncatedTokens, promptTokens } = r.value;
  if (truncatedTokens > 0) {
    process.stderr.write(`note: the prompt is ${promptTokens} tokens, longer than the context window of ${transformer.config.seqLen}: ` +
      `${truncatedTokens} tokens after the first ${keep ?? 1} were left out\n`);
  }
  if (r.value.positions > 1) process.stderr.write(`achieved tok/s: ${r.value.tokensPerSecond.toFixed(6)}\n`);
  return 0;
}

async function runChat(
  transformer: InferenceEngine, tokenizer: ReturnType<typeof loadTokenizer>, format: ChatFormat,
  options: Parameters<typeof chat>[3],
): Promise<void> {
  const rl = createInterface({ input: process.stdin, terminal: process.stdin.isTTY === true });
  const lines = rl[Symbol.asyncIterator]();
  const io = {
    async readLine(prompt: string): Promise<string | null> {
      process.stdout.write(prompt);
      const next = await lines.next();
      if (next.done) {
        process.stdout.write('\n');
        return null;
      }
      return next.value;
    },
    write(text: string): void {
      process.stdout.write(text);
    },
  };
  try {
    // Llama 2's [INST] format: exactly run.c's chat; a model's own chat template: templateChat
    if (format.isLlama2) await chat(transformer, tokenizer, io, { ...options, cCompatible: true });
    else await templateChat(transformer, tokenizer, format, io, { ...options, cCompatible: true });
  } finally {
    rl.close();
  }
}
