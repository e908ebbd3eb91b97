// One --help style for every command. A command writes its help as plain text in a loose
// convention — "Usage:" lines, paragraphs, "Title:" lines over option lists, option lines
// ("  -t, --temperature T  what it does", continued on deeper-indented lines), and indented
// tables — and formatHelp lays it out the same way everywhere:
//
//   Usage: llama2 CMD …            (more forms aligned under the first)
//
//   Paragraphs, re-wrapped at 100 columns.
//     indented table rows kept as written (wrapped under their second column)
//
//   Options:
//     -t, --temperature T   text starting in one column per section, wrapped at 100 columns
//         --host HOST       a long-only flag lined up with the long flags of the short ones
//     -h, --help            this help (listed in every command)

const WIDTH = 100;
/** Flags wider than this put their description on the next line. */
const MAX_FLAG_COLUMN = 32;

type Block =
  | { kind: 'usage'; lines: string[] }
  | { kind: 'paragraph'; text: string }
  | { kind: 'table'; lines: string[] }
  | { kind: 'section'; title: string; options: Array<{ flags: string; text: string }> };

/** Words wrapped to lines of at most `width` columns, the first prefixed by `first`, the rest by `rest`. */
function wrap(text: string, first: string, rest: string, width = WIDTH): string[] {
  const words = text.split(/\s+/).filter((w) => w !== '');
  const lines: string[] = [];
  let line = first;
  let empty = true;
  for (const w of words) {
    if (!empty && line.length + 1 + w.length > width) {
      lines.push(line);
      line = rest + w;
    } else {
      line += (empty ? '' : ' ') + w;
    }
    empty = false;
  }
  lines.push(line);
  return lines;
}

/** A token that is part of an option's flags: -x, --long, or a value name (N, FILE…, js|wasm, [true|false]). */
function isFlagToken(t: string, afterFlag: boolean): boolean {
  const s = t.replace(/,$/, '');
  if (/^--?[A-Za-z0-9][\w-]*(=\S+)?$/.test(s)) return true;
  if (!afterFlag) return false;
  return /^[A-Z][A-Z0-9_]*(…|\.\.\.)?$/.test(s) || /^\[[^\]]*\]$/.test(s) || /^[\w.]+(\|[\w.]+)+$/.test(s) || /^\((repeatable|[a-z ]+)\)$/.test(s);
}

/** Splits an option line "  -t, --temperature T   text" into flags and text. */
function splitOption(line: string): { flags: string; text: string } | undefined {
  const body = line.trim();
  if (!body.startsWith('-')) return undefined;
  const gap = /\s{2,}/.exec(body);
  if (gap !== null) return { flags: body.slice(0, gap.index), text: body.slice(gap.index + gap[0].length) };
  // one space between the flags and the text: take the flag-like tokens
  const tokens = body.split(' ');
  let n = 0;
  while (n < tokens.length && isFlagToken(tokens[n]!, n > 0)) n++;
  if (n === 0) return undefined;
  return { flags: tokens.slice(0, n).join(' '), text: tokens.slice(n).join(' ') };
}

function parse(raw: string): Block[] {
  const blocks: Block[] = [];
  const lines = raw.replace(/\s+$/, '').split('\n');
  let section: Extract<Block, { kind: 'section' }> | undefined;
  let last: { flags: string; text: string } | undefined;
  /** Where the last option's text starts: deeper lines continue it, shallower '-' lines are options. */
  let textColumn = 0;
  let table: Extract<Block, { kind: 'table' }> | undefined;
  let tableIndent = 0;
  let blank = false;
  const push = (b: Block): void => {
    if (blank && blocks.length > 0 && (b.kind === 'table' || b.kind === 'paragraph')) blocks.push({ kind: 'paragraph', text: '' });
    blocks.push(b);
    blank = false;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\s+$/, '');
    if (line === '') {
      section = undefined;
      last = undefined;
      table = undefined;
      blank = true;
      continue;
    }
    const indent = line.length - line.trimStart().length;
    if (line.startsWith('Usage:')) {
      const usage: string[] = [line.slice('Usage:'.length).trim()];
      while (i + 1 < lines.length && /^\s{4,}\S/.test(lines[i + 1]!) && !lines[i + 1]!.trim().startsWith('-')) usage.push(lines[++i]!.trim());
      push({ kind: 'usage', lines: usage });
      continue;
    }
    // a title: an unindented line ending with ':' over an option list
    const next = lines.slice(i + 1).find((l) => l.trim() !== '') ?? '';
    if (indent === 0 && /:$/.test(line) && /^\s+-/.test(next) && splitOption(next) !== undefined) {
      section = { kind: 'section', title: line, options: [] };
      push(section);
      last = undefined;
      table = undefined;
      continue;
    }
    // a deeper line under a table row continues the table
    if (table !== undefined && indent > tableIndent) {
      table.lines.push(line);
      continue;
    }
    // a deeper line under an option that is not itself an option continues its text
    const option = indent > 0 ? splitOption(line) : undefined;
    if (last !== undefined && indent >= textColumn - 1 && (option === undefined || indent >= textColumn)) {
      last.text += (last.text === '' ? '' : ' ') + line.trim();
      continue;
    }
    if (option !== undefined && (section !== undefined || table === undefined)) {
      if (section === undefined) {
        section = { kind: 'section', title: 'Options:', options: [] };
        push(section);
      }
      section.options.push(option);
      last = option;
      textColumn = option.text === '' ? indent + option.flags.length + 2 : line.indexOf(option.text, indent + option.flags.length);
      table = undefined;
      continue;
    }
    last = undefined;
    section = undefined;
    if (indent > 0) {
      if (table !== undefined) table.lines.push(line);
      else {
        table = { kind: 'table', lines: [line] };
        tableIndent = indent;
        push(table);
      }
      continue;
    }
    table = undefined;
    const prev = blocks[blocks.length - 1];
    if (prev?.kind === 'paragraph' && prev.text !== '' && !blank) prev.text += ' ' + line;
    else push({ kind: 'paragraph', text: line });
  }
  return blocks;
}

/** The help text in the common layout (see the top of this file). */
export function formatHelp(raw: string): string {
  const blocks = parse(raw);
  // every command lists -h, --help: in its last option section, or in a new one
  const hasHelp = blocks.some((b) => b.kind === 'section' && b.options.some((o) => /(^|[\s,])--help\b/.test(o.flags)));
  if (!hasHelp) {
    const sections = blocks.filter((b): b is Extract<Block, { kind: 'section' }> => b.kind === 'section');
    const target = sections[sections.length - 1];
    if (target !== undefined) target.options.push({ flags: '-h, --help', text: 'this help' });
    else blocks.push({ kind: 'section', title: 'Options:', options: [{ flags: '-h, --help', text: 'this help' }] });
  }
  const out: string[] = [];
  const emit = (lines: readonly string[]): void => {
    for (const l of lines) out.push(l);
  };
  const gap = (): void => {
    if (out.length > 0 && out[out.length - 1] !== '') out.push('');
  };
  for (const b of blocks) {
    if (b.kind === 'usage') {
      gap();
      b.lines.forEach((l, i) => emit(wrap(l, i === 0 ? 'Usage: ' : '       ', '         ')));
    } else if (b.kind === 'paragraph') {
      gap();
      if (b.text !== '') emit(wrap(b.text, '', ''));
    } else if (b.kind === 'table') {
      for (const l of b.lines) {
        if (l.length <= WIDTH) {
          out.push(l);
          continue;
        }
        const indent = l.length - l.trimStart().length;
        const second = /\S\s{2,}/.exec(l.slice(indent));
        const hang = ' '.repeat(second !== null ? indent + second.index + second[0].length : indent + 2);
        emit(wrap(l, ' '.repeat(indent), hang));
      }
    } else {
      gap();
      out.push(b.title);
      // long-only flags line up with the long flags of "-x, --long" ones when the section has both
      const shortForms = b.options.some((o) => /^-[A-Za-z0-9], /.test(o.flags));
      const flags = b.options.map((o) => (shortForms && o.flags.startsWith('--') ? '    ' : '') + o.flags);
      const column = Math.min(MAX_FLAG_COLUMN, flags.reduce((w, f) => Math.max(w, f.length), 0)) + 4;
      b.options.forEach((o, i) => {
        const head = `  ${flags[i]!}`;
        const pad = ' '.repeat(column);
        if (head.length + 2 > column) {
          out.push(head);
          if (o.text !== '') emit(wrap(o.text, pad, pad));
        } else {
          emit(wrap(o.text, head.padEnd(column), pad));
        }
      });
    }
  }
  return out.join('\n');
}
