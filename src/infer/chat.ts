// Chat with a Llama 2 chat model, as run.c's chat(): each user turn is rendered with the Llama 2
// template and encoded with BOS; the assistant's answer streams until it emits EOS.
//
//   first turn:  [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]     (without a system prompt:
//   later turns: [INST] {user} [/INST]                                      [INST] {user} [/INST])
//
// Unlike run.c there are no fixed-size buffers, end of input ends the chat cleanly, and a full
// context window does not end it: the context shifts (see generate.ts), keeping BOS and the system
// prompt.

import { LlamaError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/index.js';
import type { InferenceEngine } from './engine.js';
import { ContextWindow, generateInWindow, stepsFor } from './generate.js';
import { Sampler, type SamplerOptions } from './sampler.js';

export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

/** The Llama 2 rendering of one user turn (with the system prompt on the first turn). */
export function renderUserTurn(user: string, system?: string): string {
  return system ? `[INST] <<SYS>>\n${system}\n<</SYS>>\n\n${user} [/INST]` : `[INST] ${user} [/INST]`;
}

/** A piece of text to encode, with BOS in front and/or EOS after it — or one special token. */
export interface TextPart {
  readonly text: string;
  readonly bos: boolean;
  readonly eos: boolean;
  /** When set, the part is this token id alone (text '', no BOS/EOS): a chat template's special token. */
  readonly special?: number;
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

/**
 * How many leading ids of an encoded conversation hold BOS and its system prompt — what a context
 * shift keeps: the ids it shares with the same system messages followed by an empty user message,
 * in the same format (`parts`: Llama 2's [INST] one by default, or a chat template's). Without a
 * system message (or when a template refuses that conversation): BOS alone. At most half the
 * context window `seqLen`.
 */
export function systemPromptTokens(
  tokenizer: Tokenizer, messages: readonly ChatMessage[], ids: readonly number[], seqLen: number,
  parts: (messages: readonly ChatMessage[]) => TextPart[] = conversationParts,
): number {
  const system = messages.filter((m) => m.role === 'system' && m.content !== '');
  let n = ids[0] === tokenizer.bosId ? 1 : 0;
  if (system.length > 0) {
    try {
      const prefix: number[] = [];
      for (const part of parts([...system, { role: 'user', content: '' }])) {
        if (part.special !== undefined) prefix.push(part.special);
        else for (const id of tokenizer.encode(part.text, part)) prefix.push(id);
      }
      n = 0;
      while (n < prefix.length && n < ids.length && prefix[n] === ids[n]) n++;
    } catch {
      // a template that cannot render a system message alone: keep BOS only
    }
  }
  return Math.max(0, Math.min(n, ids.length, Math.floor(seqLen / 2)));
}

export interface ChatIO {
  /** Shows `prompt` and resolves with the next line of input, or null at end of input. */
  readLine(prompt: string): Promise<string | null>;
  /** Writes assistant text (and the "Assistant: " label). */
  write(text: string): void;
}

export interface ChatOptions extends SamplerOptions {
  /**
   * Total positions (all turns), as run.c's -n; 0 = one context window. Default: no limit — when
   * the window is full the context shifts, keeping BOS and the system prompt.
   */
  steps?: number;
  /** Positions a context shift keeps (default: BOS and the system prompt, at most half the window). */
  keep?: number;
  /** System prompt; when undefined it is asked for once (empty = none). */
  systemPrompt?: string;
  /** The first user message; when undefined it is read from the input. */
  userPrompt?: string;
  cCompatible?: boolean;
}

/**
 * Runs an interactive chat until end of input (or the step limit). Each turn goes through the
 * generation loop in one ContextWindow, so the conversation continues past the context window.
 * An answer ends at EOS — or at BOS, which could only begin another conversation (as the server
 * has it), or after one context window of tokens (a model that never ends its answers). As in
 * run.c, EOS is then fed (and sampled after) before the next turn's prompt.
 */
export async function chat(transformer: InferenceEngine, tokenizer: Tokenizer, io: ChatIO, options: ChatOptions = {}): Promise<void> {
  const c = transformer.config;
  const steps = options.steps === undefined ? Infinity : stepsFor(options.steps, c.seqLen);
  const sampler = new Sampler(c.vocabSize, options);
  let system = options.systemPrompt;
  if (system === undefined) system = (await io.readLine('Enter system prompt (optional): ')) ?? '';
  let window: ContextWindow | undefined;
  let positions = 0;
  let pending: number[] = []; // the last answer's EOS, fed before the next prompt
  while (positions < steps) {
    const user = window === undefined && options.userPrompt !== undefined ? options.userPrompt : await io.readLine('User: ');
    if (user === null) break;
    const first = window === undefined;
    const turn = tokenizer.encode(renderUserTurn(user, first && system !== '' ? system : undefined), { bos: true, eos: false });
    if (first) {
      const messages: ChatMessage[] = [{ role: 'system', content: system }, { role: 'user', content: user }];
      window = new ContextWindow(transformer, options.keep ?? systemPromptTokens(tokenizer, messages, turn, c.seqLen));
    }
    io.write('Assistant: ');
    const gen = generateInWindow(window!, sampler, tokenizer, {
      promptIds: pending.concat(turn), maxTokens: c.seqLen, maxPositions: steps - positions, stopTokens: [tokenizer.eosId, tokenizer.bosId],
      samplePrompt: true, cCompatible: options.cCompatible ?? false,
    });
    let r = gen.next();
    while (!r.done) {
      io.write(r.value);
      r = gen.next();
    }
    io.write('\n');
    positions += r.value.positions;
    if (r.value.finishReason !== 'stop') {
      io.write(positions >= steps ? `(the limit of ${steps} positions is reached)\n` : `(the answer is cut at ${c.seqLen} tokens)\n`);
    }
    pending = [tokenizer.eosId];
  }
}
