// Chat with a Llama 2 chat model, as run.c's chat(): each user turn is rendered with the Llama 2
// template and encoded with BOS; the assistant's answer streams until it emits EOS.
//
//   first turn:  [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]     (without a system prompt:
//   later turns: [INST] {user} [/INST]                                      [INST] {user} [/INST])
//
// Unlike run.c there are no fixed-size buffers, end of input ends the chat cleanly, and a full
// context window ends it with a message instead of silently.

import { LlamaError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { StreamingDecoder } from '../tokenizer/index.js';
import type { InferenceEngine } from './engine.js';
import { clampSteps } from './generate.js';
import { Sampler, type SamplerOptions } from './sampler.js';

export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

/** The Llama 2 rendering of one user turn (with the system prompt on the first turn). */
export function renderUserTurn(user: string, system?: string): string {
  return system ? `[INST] <<SYS>>\n${system}\n<</SYS>>\n\n${user} [/INST]` : `[INST] ${user} [/INST]`;
}

/** A piece of text to encode, with BOS in front and/or EOS after it. */
export interface TextPart {
  readonly text: string;
  readonly bos: boolean;
  readonly eos: boolean;
}

/**
 * A whole conversation in the Llama 2 chat format, as the texts to encode, ready for the
 * assistant's next answer: BOS [INST] user [/INST] answer EOS BOS [INST] user [/INST] … (a
 * system message joins the first user turn). The last message must be the user's.
 */
export function conversationParts(messages: readonly ChatMessage[]): TextPart[] {
  const system = messages.filter((m) => m.role === 'system').map((m) => m.content).join('\n');
  const turns = messages.filter((m) => m.role !== 'system');
  if (turns.length === 0 || turns[turns.length - 1]!.role !== 'user') {
    throw new LlamaError('a conversation must end with a user message');
  }
  let first = true;
  return turns.map((m) => {
    if (m.role !== 'user') return { text: m.content, bos: false, eos: true };
    const text = renderUserTurn(m.content, first ? system : undefined);
    first = false;
    return { text, bos: true, eos: false };
  });
}

/** Token ids of a whole conversation (conversationParts, encoded one after the other). */
export function encodeConversation(tokenizer: Tokenizer, messages: readonly ChatMessage[]): number[] {
  const ids: number[] = [];
  for (const part of conversationParts(messages)) {
    // (appended one by one: a spread of a long turn's ids would overflow the stack)
    for (const id of tokenizer.encode(part.text, part)) ids.push(id);
  }
  return ids;
}

export interface ChatIO {
  /** Shows `prompt` and resolves with the next line of input, or null at end of input. */
  readLine(prompt: string): Promise<string | null>;
  /** Writes assistant text (and the "Assistant: " label). */
  write(text: string): void;
}

export interface ChatOptions extends SamplerOptions {
  /** Total positions (all turns); 0 or more than the context window = the whole window. */
  steps?: number;
  /** System prompt; when undefined it is asked for once (empty = none). */
  systemPrompt?: string;
  /** The first user message; when undefined it is read from the input. */
  userPrompt?: string;
  cCompatible?: boolean;
}

/** Runs an interactive chat until end of input or a full context window. */
export async function chat(transformer: InferenceEngine, tokenizer: Tokenizer, io: ChatIO, options: ChatOptions = {}): Promise<void> {
  const c = transformer.config;
  const steps = clampSteps(options.steps, c.seqLen);
  const sampler = new Sampler(c.vocabSize, options);
  let system = options.systemPrompt;
  if (system === undefined) system = (await io.readLine('Enter system prompt (optional): ')) ?? '';
  let pos = 0;
  let firstTurn = true;
  while (pos < steps) {
    const user = firstTurn && options.userPrompt !== undefined ? options.userPrompt : await io.readLine('User: ');
    if (user === null) break;
    const prompt = tokenizer.encode(renderUserTurn(user, firstTurn && system !== '' ? system : undefined), { bos: true, eos: false });
    firstTurn = false;
    io.write('Assistant: ');
    const decoder = new StreamingDecoder(tokenizer, { cCompatible: options.cCompatible ?? false });
    // feed the prompt, then the assistant's own tokens until EOS
    let token = prompt[0]!;
    let idx = 1;
    let ended = false;
    while (pos < steps) {
      if (idx < prompt.length) {
        // a prompt token followed by another: only the KV cache is needed; run.c samples here
        // too and throws the token away, so the random stream advances the same
        transformer.advance(token, pos++);
        sampler.skip();
        token = prompt[idx++]!;
        continue;
      }
      const next = sampler.sample(transformer.forward(token, pos++));
      if (next === tokenizer.eosId) {
        // the answer is over; EOS goes into the cache as the first token of the next turn's position
        if (pos < steps) transformer.advance(next, pos++);
        ended = true;
        break;
      }
      io.write(decoder.push(token, next));
      token = next;
    }
    io.write(decoder.flush() + '\n');
    if (!ended) {
      io.write(`(the context window of ${c.seqLen} tokens is full)\n`);
      break;
    }
  }
}
