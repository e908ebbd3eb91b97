// Errors a user can read. Every failure caused by bad input (a flag, a file, a request) is one of
// these; the CLI prints its message as a single line and exits non-zero, the server turns it into
// a 4xx. Anything else is a bug and keeps its stack trace (set LLAMA2_DEBUG=1 to see it).

/**
 * Base class: an error whose message is meant for the user, not a stack trace. The message is
 * always one line: control characters in it (a newline or an escape sequence inside a piece of a
 * corrupt file, a header, a request) are written as escapes, so a file can neither break the
 * one-line error nor drive the terminal.
 */
export class LlamaError extends Error {
  /** Process exit code the CLI uses for this kind of error. */
  readonly exitCode: number = 1;

  constructor(message: string) {
    super(oneLine(message));
  }
}

/** `text` with its control characters escaped (\n, \t, \x1b…): printable on one line. */
export function oneLine(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    const code = c.charCodeAt(0);
    return c === '\n' ? '\\n' : c === '\r' ? '\\r' : c === '\t' ? '\\t' : code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16)}`;
  });
}

/**
 * A value from outside (a field of a file, of a request) as a message quotes it: JSON, at most
 * `max` characters. JSON.stringify alone would copy a huge value into the message, and throw on a
 * deeply nested one (a stack overflow instead of the message).
 */
export function quote(value: unknown, max = 80): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = Array.isArray(value) ? '[…] (nested too deeply)' : typeof value === 'object' && value !== null ? '{…} (nested too deeply)' : String(value);
  }
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** A bad command line or API argument. */
export class UsageError extends LlamaError {
  override readonly exitCode = 2;
  override name = 'UsageError';
}

/** A file whose contents are not what its format says (checkpoint, tokenizer, data shard). */
export class FormatError extends LlamaError {
  override name = 'FormatError';
  constructor(readonly file: string, what: string) {
    super(`${file}: ${what}`);
  }
}

/** Memory for a model, a session or a buffer could not be had (WebAssembly memory or the heap). */
export class OutOfMemoryError extends LlamaError {
  override name = 'OutOfMemoryError';
}

/** Whether `err` says an allocation failed (ours, or V8's RangeError for an ArrayBuffer). */
export function isOutOfMemory(err: unknown): boolean {
  return err instanceof OutOfMemoryError || (err instanceof RangeError && /allocation failed|Invalid typed array length|Array buffer allocation/i.test(err.message));
}

/** Turns a Node.js system error (ENOENT, EISDIR, ...) about `file` into a readable one-liner. */
export function describeFsError(file: string, err: unknown): LlamaError {
  if (err instanceof LlamaError) return err; // already said
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const why =
    code === 'ENOENT' ? 'no such file' :
    code === 'EISDIR' ? 'is a directory, expected a file' :
    code === 'EACCES' || code === 'EPERM' ? 'permission denied' :
    code === 'ENOSPC' ? 'no space left on device' :
    code === 'EROFS' ? 'read-only file system' :
    code === 'EDQUOT' ? 'disk quota exceeded' :
    code === 'ENOTDIR' ? 'a component of the path is not a directory' :
    (err as Error | undefined)?.message ?? String(err);
  return new LlamaError(`${file}: ${why}`);
}
