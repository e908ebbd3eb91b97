// Interactive chat with a model that ships a chat template (chat-format.ts): the conversation so
// far is rendered and encoded whole at every turn, and only what the KV cache does not already
// hold is fed — from the first position where the new ids differ from those fed before (the
// assistant's answer re-encoded from its text may not be the ids it was sampled as; the template
// may also change earlier text). The answer streams until EOS (or BOS), which is fed too, as
// run.c's chat does. Llama 2's [INST] format keeps run.c's own loop (chat.ts), which also slides
// the context window; here a full window ends the chat.

import { StreamingDecoder, type Tokenizer } from '../tokenizer/index.js';
import type { ChatMessage, ChatIO, ChatOptions } from './chat.js';
import { type ChatFormat, encodeChat } from './chat-format.js';
import type { InferenceEngine } from './engine.js';
import { stepsFor } from './generate.js';
import { Sampler } from './sampler.js';

export async function templateChat(
  transformer: InferenceEngine, tokenizer: Tokenizer, format: ChatFormat, io: ChatIO, options: ChatOptions = {},
): Promise<void> {
  const c = transformer.config;
  // positions in the KV cache: -n, or the context window (the conversation is re-rendered whole,
  // so it does not slide: a full window ends the chat)
  const steps = Math.min(options.steps === undefined ? c.seqLen : stepsFor(options.steps, c.seqLen), c.seqLen);
  const sampler = new Sampler(c.vocabSize, options);
  let system = options.systemPrompt;
  if (system === undefined) system = (await io.readLine('Enter system prompt (optional): ')) ?? '';
  const messages: ChatMessage[] = system !== '' ? [{ role: 'system', content: system }] : [];
  /** The ids in the KV cache, position by position. */
  const fed: number[] = [];
  let firstTurn = true;
  for (;;) {
    const user = firstTurn && options.userPrompt !== undefined ? options.userPrompt : await io.readLine('User: ');
    if (user === null) break;
    firstTurn = false;
    messages.push({ role: 'user', content: user });
    const prompt = encodeChat(format, tokenizer, messages);
    if (prompt.length >= steps) {
      io.write(`(the conversation is ${prompt.length} tokens: it does not fit in ${steps} positions)\n`);
      break;
    }
    // keep what the cache holds up to the first difference (at least the last prompt token is run)
    let pos = 0;
    while (pos < fed.length && pos < prompt.length - 1 && fed[pos] === prompt[pos]) pos++;
    fed.length = pos;
    const turn = prompt.slice(pos, prompt.length - 1);
    transformer.prefill(turn, pos); // in blocks: the weights read once per block, not per token
    for (const t of turn) fed.push(t);
    pos += turn.length;
    io.write('Assistant: ');
    const decoder = new StreamingDecoder(tokenizer, { cCompatible: options.cCompatible ?? false });
    const answer: number[] = [];
    let token = prompt[pos]!;
    let ended = false;
    while (pos < steps) {
      const next = sampler.sample(transformer.forward(token, pos));
      fed.push(token);
      pos++;
      if (next === tokenizer.eosId || next === tokenizer.bosId) {
        if (pos < steps) {
          transformer.advance(next, pos++);
          fed.push(next);
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
    if (!ended) {
      io.write(`(the ${steps} positions ${steps === c.seqLen ? 'of the context window ' : ''}are used up)\n`);
      break;
    }
  }
}
