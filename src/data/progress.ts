// A one-line progress bar on stderr: done/total, rate and ETA. On a terminal it redraws in place
// (at most 10 times a second); otherwise (a log file, CI) it prints a plain line at every 10%,
// so logs stay short. Quiet mode prints nothing.

export interface ProgressOptions {
  /** 'bytes' formats counts as kB/MB/GB; 'count' as plain numbers followed by `unitName`. */
  readonly unit?: 'bytes' | 'count';
  readonly unitName?: string;
  readonly quiet?: boolean;
  /** Where to draw (default process.stderr). */
  readonly stream?: NodeJS.WriteStream;
}

export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n / 1000;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[u]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export class Progress {
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;
  private readonly start = Date.now();
  private lastDraw = 0;
  private lastDecile = -1;
  private done = 0;
  private drawn = false;

  /** `total` may be unknown (0): then only the count and rate are shown. `base` = already done before (a resumed download). */
  constructor(private readonly label: string, private total: number, private readonly opts: ProgressOptions = {}, private readonly base = 0) {
    this.stream = opts.stream ?? process.stderr;
    this.tty = this.stream.isTTY === true;
    this.done = base;
  }

  setTotal(total: number): void {
    this.total = total;
  }

  update(done: number): void {
    this.done = done;
    if (this.opts.quiet) return;
    const now = Date.now();
    if (this.tty) {
      if (now - this.lastDraw < 100) return;
      this.lastDraw = now;
      this.stream.write(`\r${this.line(now)}\x1b[K`);
      this.drawn = true;
    } else if (this.total > 0) {
      const decile = Math.floor((10 * done) / this.total);
      if (decile > this.lastDecile && decile < 10) {
        this.lastDecile = decile;
        this.stream.write(this.line(now) + '\n');
      }
    }
  }

  /** Draws the final state and ends the line. */
  finish(message?: string): void {
    if (this.opts.quiet) return;
    const text = message ?? this.line(Date.now());
    this.stream.write(this.tty ? `\r${text}\x1b[K\n` : text + '\n');
    this.drawn = false;
  }

  /** Ends a partly drawn line (before an error message is printed). */
  abandon(): void {
    if (this.drawn && !this.opts.quiet) this.stream.write('\n');
    this.drawn = false;
  }

  private fmt(n: number): string {
    return this.opts.unit === 'bytes' ? formatBytes(n) : `${n}${this.opts.unitName ? ' ' + this.opts.unitName : ''}`;
  }

  private line(now: number): string {
    const elapsed = Math.max((now - this.start) / 1000, 1e-3);
    const rate = (this.done - this.base) / elapsed;
    const rateText = this.opts.unit === 'bytes' ? `${formatBytes(rate)}/s` : `${rate.toFixed(rate < 10 ? 1 : 0)}/s`;
    if (this.total <= 0) return `${this.label} ${this.fmt(this.done)} ${rateText}`;
    const frac = Math.min(this.done / this.total, 1);
    const width = 24;
    const filled = Math.round(frac * width);
    const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
    const eta = rate > 0 ? (this.total - this.done) / rate : Infinity;
    const pct = (100 * frac).toFixed(0).padStart(3);
    const counts = this.opts.unit === 'bytes' ? `${formatBytes(this.done)}/${formatBytes(this.total)}` : `${this.done}/${this.fmt(this.total)}`;
    return `${this.label} [${bar}] ${pct}% ${counts} ${rateText} ETA ${frac >= 1 ? '0s' : formatDuration(eta)}`;
  }
}
