// How a conversation becomes the tokens a model answers: the one API chat mode, the server's
// /v1/chat/completions and the library use.
//
//   LLAMA2_CHAT     Llama 2's [INST] format (chat.ts's conversationParts) — the default, and what
//                   llama2.c's run.c does
//   a chat template the Jinja template a model ships in tokenizer_config.json (`chat_template`),
//                   rendered by @huggingface/jinja exactly as transformers' apply_chat_template
//                   renders it (trim_blocks, lstrip_blocks, raise_exception; bos_token and
//                   eos_token from the same file; add_generation_prompt true)
//
// A template renders text in which special tokens are written out ("<s>", "</s>"). As the Hugging
// Face tokenizer does with its added tokens, the text is cut at each special token's spelling
// (the vocabulary's control and unknown pieces): those become their ids, and the text between
// them is encoded on its own (SentencePiece's dummy prefix included, as Llama's "legacy"
// tokenizer does). Text in the messages themselves goes through the same rendering — as in
// transformers, a user who types "</s>" gets the token.
//
// A template is outside input (a downloaded folder's tokenizer_config.json), and Jinja has loops:
// rendering is bounded. range() gives at most RANGE_LIMIT items (the library's own builds the whole
// array first: range(1e11) exhausted the heap and killed the process), the interpreter evaluates at
// most STEP_LIMIT nodes per rendering (nested loops: a clear error instead of a hang), and the text
// may not pass TEXT_LIMIT characters. A real conversation near a 4096-token window renders in a few
// thousand steps.

import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { LlamaError } from '../errors.js';
import type { ChatTemplateRef } from '../model/source.js';
import { PieceType } from '../tokenizer/sentencepiece-model.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { type ChatMessage, conversationParts, type TextPart } from './chat.js';

export interface ChatFormat {
  /** 'llama2', or where the template came from. */
  readonly name: string;
  /** True for Llama 2's [INST] format (chat mode then runs exactly as run.c's chat). */
  readonly isLlama2: boolean;
  /**
   * The conversation as parts to encode one after the other, ready for the assistant's next
   * answer. Every part is text with BOS/EOS around it, or one special token (`special`).
   */
  parts(messages: readonly ChatMessage[], tokenizer: Tokenizer): TextPart[];
}

export const LLAMA2_CHAT: ChatFormat = {
  name: 'llama2',
  isLlama2: true,
  parts: (messages) => conversationParts(messages),
};

/** The ids of one part. */
export function encodePart(tokenizer: Tokenizer, part: TextPart): number[] {
  return part.special !== undefined ? [part.special] : tokenizer.encode(part.text, part);
}

/** Token ids of a conversation in `format`, ready for the assistant's answer. */
export function encodeChat(format: ChatFormat, tokenizer: Tokenizer, messages: readonly ChatMessage[]): number[] {
  const ids: number[] = [];
  // (appended one by one: a spread of a long turn's ids would overflow the stack)
  for (const part of format.parts(messages, tokenizer)) for (const id of encodePart(tokenizer, part)) ids.push(id);
  return ids;
}

/** Cuts rendered text at the spellings of the vocabulary's special tokens. */
export function splitSpecialTokens(text: string, tokenizer: Tokenizer): TextPart[] {
  const v = tokenizer.vocabulary;
  const specials = new Map<string, number>();
  v.pieces.forEach((p, id) => {
    if (v.types[id] === PieceType.CONTROL || v.types[id] === PieceType.UNKNOWN) specials.set(p, id);
  });
  const parts: TextPart[] = [];
  let start = 0;
  const flush = (end: number): void => {
    if (end > start) parts.push({ text: text.slice(start, end), bos: false, eos: false });
  };
  // at each '<' (every Llama special token starts so), the longest special spelled there
  const spellings = [...specials.keys()].sort((a, b) => b.length - a.length);
  for (let i = text.indexOf('<'); i >= 0 && i < text.length; i = text.indexOf('<', i)) {
    const s = spellings.find((sp) => text.startsWith(sp, i));
    if (s === undefined) {
      i++;
      continue;
    }
    flush(i);
    parts.push({ text: '', bos: false, eos: false, special: specials.get(s)! });
    i += s.length;
    start = i;
  }
  flush(text.length);
  return parts;
}

const RANGE_LIMIT = 100_000;
const STEP_LIMIT = 200_000;
const TEXT_LIMIT = 16 << 20;

/** range() as Jinja's (and Python's), refusing more than RANGE_LIMIT items before making any. */
function boundedRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) {
    stop = start;
    start = 0;
  }
  if (![start, stop, step].every(Number.isFinite) || step === 0) throw new Error('range() needs finite numbers and a step that is not zero');
  const count = Math.max(0, Math.ceil((stop - start) / step));
  if (count > RANGE_LIMIT) throw new Error(`range() of ${count} items (the limit is ${RANGE_LIMIT})`);
  const out = new Array<number>(count);
  for (let i = 0; i < count; i++) out[i] = start + i * step;
  return out;
}

// @huggingface/jinja's Template.render makes its own Interpreter, so the bounds are put on the
// Interpreter's prototype, active only while a ChatTemplate renders (rendering is synchronous:
// nothing else runs in between); other users of the library in the process see no change. run()
// puts boundedRange in place of the global range(); evaluate() — called for every node — counts.
let stepsLeft = Infinity;
const RANGE_VALUE = new Environment().set('range', boundedRange);
type Hooks = { run(this: Interpreter, program: unknown): unknown; evaluate(this: Interpreter, ...args: unknown[]): unknown };
const hooks = Interpreter.prototype as unknown as Hooks;
const runProgram = hooks.run;
const evaluateNode = hooks.evaluate;
hooks.run = function (program) {
  if (stepsLeft !== Infinity) this.global.setVariable('range', RANGE_VALUE);
  return runProgram.call(this, program);
};
hooks.evaluate = function (...args) {
  if (--stepsLeft < 0) throw new Error(`the template takes more than ${STEP_LIMIT} steps`);
  return evaluateNode.apply(this, args);
};

/** A chat template (tokenizer_config.json's chat_template) as a ChatFormat. */
export class ChatTemplate implements ChatFormat {
  readonly name: string;
  readonly isLlama2 = false;
  private readonly template: Template;

  constructor(readonly ref: ChatTemplateRef) {
    this.name = `chat_template of ${ref.file}`;
    try {
      this.template = new Template(ref.template);
    } catch (err) {
      throw new LlamaError(`${ref.file}: the chat template does not parse (${firstLine(err)})`);
    }
  }

  /** The template's text for `messages` (add_generation_prompt: the assistant's turn is opened). */
  render(messages: readonly ChatMessage[], addGenerationPrompt = true): string {
    let text: string;
    stepsLeft = STEP_LIMIT;
    try {
      text = this.template.render({
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        bos_token: this.ref.bosToken,
        eos_token: this.ref.eosToken,
        add_generation_prompt: addGenerationPrompt,
      });
    } catch (err) {
      throw new LlamaError(`chat template: ${firstLine(err)}`);
    } finally {
      stepsLeft = Infinity;
    }
    if (text.length > TEXT_LIMIT) throw new LlamaError(`chat template: the text is ${text.length} characters (the limit is ${TEXT_LIMIT})`);
    return text;
  }

  parts(messages: readonly ChatMessage[], tokenizer: Tokenizer): TextPart[] {
    if (messages.length === 0) throw new LlamaError('a conversation needs at least one message');
    return splitSpecialTokens(this.render(messages, true), tokenizer);
  }
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
}

/** The format of a model: its chat template when it has one, else Llama 2's. */
export function chatFormatFor(template: ChatTemplateRef | undefined): ChatFormat {
  return template === undefined ? LLAMA2_CHAT : new ChatTemplate(template);
}
