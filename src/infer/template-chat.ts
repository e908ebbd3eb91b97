// Interactive chat with a model that ships a chat template (chat-format.ts): the conversation so
// far is rendered and encoded whole at every turn, and only what the KV cache does not already
// hold is fed — from the first position where the new ids differ from those fed before (the
// assistant's answer re-encoded from its text may not be the ids it was sampled as; the template
// may also change earlier text): ContextWindow.resume. The answer streams until EOS (or BOS),
// which is fed too, as run.c's chat does. Llama 2's [INST] format keeps run.c's own loop
// (chat.ts). Both slide the context window (generate.ts's ContextWindow), keeping BOS and the
// system prompt, so a conversation goes on past it.

import { StreamingDecoder, type Tokenizer } from '../tokenizer/index.js';
import { type ChatMessage, type ChatIO, type ChatOptions, systemPromptTokens } from './chat.js';
import { type ChatFormat, encodeChat } from './chat-format.js';
import type { InferenceEngine } from './engine.js';
import { ContextWindow, stepsFor } from './generate.js';
import { Sampler } from './sampler.js';

export async function templateChat(
  transformer: InferenceEngine, tokenizer: Tokenizer, format: ChatFormat, io: ChatIO, options: ChatOptions = {},
): Promise<void> {
  const c = transformer.config;
  // positions run: -n, or no limit (the window slides)
  const steps = options.steps === undefined ? Infinity : stepsFor(options.steps, c.seqLen);
  const sampler = new Sampler(c.vocabSize, options);
  let system = options.systemPrompt;
  if (system === undefined) system = (await io.readLine('Enter system prompt (optional): ')) ?? '';
  const messages: ChatMessage[] = system !== '' ? [{ role: 'system', content: system }] : [];
  let window: ContextWindow | undefined;
  let positions = 0;
  for (;;) {
    const user = window === undefined && options.userPrompt !== undefined ? options.userPrompt : await io.readLine('User: ');
    if (user === null) break;
    messages.push({ role: 'user', content: user });
    const prompt = encodeChat(format, tokenizer, messages);
    window ??= new ContextWindow(transformer, options.keep ?? systemPromptTokens(tokenizer, messages, prompt, c.seqLen, (m) => format.parts(m, tokenizer)));
    // keep what the cache holds up to the first difference (at least the last prompt token is run)
    let i = window.resume(prompt);
    // in blocks: the weights read once per block, not per token
    const end = Math.min(prompt.length - 1, i + (steps - positions));
    while (i < end) {
      const n = window.prefill(prompt, i, end);
      i += n;
      positions += n;
    }
    io.write('Assistant: ');
    const decoder = new StreamingDecoder(tokenizer, { cCompatible: options.cCompatible ?? false });
    const answer: number[] = [];
    let token = prompt[i]!;
    let ended = false;
    // an answer ends at EOS or BOS, or after one context window of tokens
    while (positions < steps && answer.length < c.seqLen) {
      const next = sampler.sample(window.forward(token));
      positions++;
      if (next === tokenizer.eosId || next === tokenizer.bosId) {
        if (positions < steps) {
          window.advance(next);
          positions++;
        }
        ended = true;
        break;
      }
      io.write(decoder.push(token, next));
      answer.push(next);
      token = next;
    }
    io.write(decoder.flush() + '\n');
    messages.push({ role: 'assistant', content: tokenizer.decode(answer) });
    if (positions >= steps) {
      io.write(`(the limit of ${steps} positions is reached)\n`);
      break;
    }
    if (!ended) io.write(`(the answer is cut at ${c.seqLen} tokens)\n`);
  }
}
