// The loss curve as a self-contained SVG: training loss of every iteration (thin line), the
// evaluations' train and validation losses (thick lines with dots), against tokens seen; the
// learning rate of every iteration (dashed) on its own axis at the right.
//
// A run can have millions of iterations: ranges are found with loops (a spread of that many
// values into Math.min overflows the stack), and a line with more points than pixel columns is
// thinned to the first, lowest, highest and last point of each column — the same picture, and a
// file of bounded size.

export interface LossCurve {
  /** (tokens seen, loss) of each training iteration. */
  readonly train: ReadonlyArray<readonly [number, number]>;
  /** (tokens seen, train loss estimate, val loss) of each evaluation. */
  readonly evals: ReadonlyArray<readonly [number, number, number]>;
  /** (tokens seen, learning rate) of each training iteration. */
  readonly lr?: ReadonlyArray<readonly [number, number]>;
}

const W = 720;
const H = 420;
const M = { left: 64, right: 72, top: 36, bottom: 52 };

function niceTicks(lo: number, hi: number, n: number): number[] {
  const span = hi - lo || 1;
  const raw = span / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function fmtTokens(t: number): string {
  if (t >= 1e9) return `${+(t / 1e9).toPrecision(3)}B`;
  if (t >= 1e6) return `${+(t / 1e6).toPrecision(3)}M`;
  if (t >= 1e3) return `${+(t / 1e3).toPrecision(3)}k`;
  return String(t);
}

/** [lowest, highest] of the finite values (col) of each list; [Infinity, -Infinity] for none. */
function range(lists: ReadonlyArray<ReadonlyArray<readonly number[]>>, cols: readonly number[]): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const list of lists) {
    for (const p of list) {
      for (const c of cols) {
        const v = p[c]!;
        if (!Number.isFinite(v)) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
  }
  return [lo, hi];
}

/**
 * The points of a line (finite y only) with at most four per pixel column: the first, the lowest,
 * the highest and the last, in their order.
 */
function thin(points: ReadonlyArray<readonly [number, number]>, column: (x: number) => number): Array<readonly [number, number]> {
  const out: Array<readonly [number, number]> = [];
  let col = NaN;
  let group: Array<readonly [number, number]> = [];
  const flush = (): void => {
    if (group.length <= 4) {
      for (const p of group) out.push(p);
    } else {
      let lo = group[0]!;
      let hi = group[0]!;
      for (const p of group) {
        if (p[1] < lo[1]) lo = p;
        if (p[1] > hi[1]) hi = p;
      }
      const keep = new Set([group[0]!, lo, hi, group[group.length - 1]!]);
      for (const p of group) if (keep.has(p)) out.push(p);
    }
    group = [];
  };
  for (const p of points) {
    if (!Number.isFinite(p[1])) continue;
    const c = Math.floor(column(p[0]));
    if (c !== col) {
      flush();
      col = c;
    }
    group.push(p);
  }
  flush();
  return out;
}

export function renderLossSvg(curve: LossCurve, title: string): string {
  const x0 = 0;
  const x1 = Math.max(1, range([curve.train, curve.evals], [0])[1]);
  let [y0, y1] = range([curve.train, curve.evals], [1, 2]);
  if (y0 > y1) [y0, y1] = [0, 1];
  if (y1 - y0 < 1e-6) { y0 -= 0.5; y1 += 0.5; }
  const pad = 0.05 * (y1 - y0);
  y0 = Math.max(0, y0 - pad);
  y1 += pad;
  const px = (x: number): number => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);
  const py = (y: number): number => H - M.bottom - ((y - y0) / (y1 - y0)) * (H - M.top - M.bottom);
  const path = (pts: ReadonlyArray<readonly [number, number]>): string =>
    thin(pts, px).map((p, i) => `${i ? 'L' : 'M'}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join('');
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${escapeXml(title)}</text>`);
  for (const t of niceTicks(y0, y1, 6)) {
    out.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${py(t).toFixed(1)}" y2="${py(t).toFixed(1)}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${M.left - 6}" y="${(py(t) + 4).toFixed(1)}" text-anchor="end">${t}</text>`);
  }
  for (const t of niceTicks(x0, x1, 6)) {
    out.push(`<line x1="${px(t).toFixed(1)}" x2="${px(t).toFixed(1)}" y1="${M.top}" y2="${H - M.bottom}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${px(t).toFixed(1)}" y="${H - M.bottom + 16}" text-anchor="middle">${fmtTokens(t)}</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${W - M.left - M.right}" height="${H - M.top - M.bottom}" fill="none" stroke="#888"/>`);
  out.push(`<text x="${(M.left + W - M.right) / 2}" y="${H - 12}" text-anchor="middle">tokens seen</text>`);
  out.push(`<text transform="translate(16,${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">cross-entropy loss</text>`);
  const lrs = thin(curve.lr ?? [], px);
  if (lrs.length > 0) {
    // learning rate: 0 at the bottom, its maximum near the top, ticks on the right
    const lrMax = Math.max(0, range([lrs], [1])[1]) || 1;
    const pl = (v: number): number => H - M.bottom - (v / (lrMax * 1.05)) * (H - M.top - M.bottom);
    for (const t of niceTicks(0, lrMax * 1.05, 5)) {
      out.push(`<text x="${W - M.right + 6}" y="${(pl(t) + 4).toFixed(1)}" fill="#2ca02c">${t.toExponential(1)}</text>`);
    }
    out.push(`<text transform="translate(${W - 10},${(M.top + H - M.bottom) / 2}) rotate(90)" text-anchor="middle" fill="#2ca02c">learning rate</text>`);
    const d = lrs.map((p, i) => `${i ? 'L' : 'M'}${px(p[0]).toFixed(1)},${pl(p[1]).toFixed(1)}`).join('');
    out.push(`<path d="${d}" fill="none" stroke="#2ca02c" stroke-width="1.5" stroke-dasharray="5,3"/>`);
  }
  out.push(`<path d="${path(curve.train)}" fill="none" stroke="#9ecae1" stroke-width="1"/>`);
  const evTrain = curve.evals.map((e) => [e[0], e[1]] as const);
  const evVal = curve.evals.map((e) => [e[0], e[2]] as const);
  out.push(`<path d="${path(evTrain)}" fill="none" stroke="#1f77b4" stroke-width="2"/>`);
  out.push(`<path d="${path(evVal)}" fill="none" stroke="#d62728" stroke-width="2"/>`);
  for (const [x, y] of evVal) if (Number.isFinite(y)) out.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="#d62728"/>`);
  for (const [x, y] of evTrain) if (Number.isFinite(y)) out.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="#1f77b4"/>`);
  const lx = W - M.right - 170;
  out.push(`<rect x="${lx}" y="${M.top + 8}" width="160" height="${lrs.length > 0 ? 74 : 58}" fill="white" stroke="#ccc"/>`);
  out.push(`<line x1="${lx + 8}" x2="${lx + 30}" y1="${M.top + 22}" y2="${M.top + 22}" stroke="#9ecae1"/><text x="${lx + 36}" y="${M.top + 26}">train (per iteration)</text>`);
  out.push(`<line x1="${lx + 8}" x2="${lx + 30}" y1="${M.top + 38}" y2="${M.top + 38}" stroke="#1f77b4" stroke-width="2"/><text x="${lx + 36}" y="${M.top + 42}">train (evaluation)</text>`);
  out.push(`<line x1="${lx + 8}" x2="${lx + 30}" y1="${M.top + 54}" y2="${M.top + 54}" stroke="#d62728" stroke-width="2"/><text x="${lx + 36}" y="${M.top + 58}">validation</text>`);
  if (lrs.length > 0) out.push(`<line x1="${lx + 8}" x2="${lx + 30}" y1="${M.top + 70}" y2="${M.top + 70}" stroke="#2ca02c" stroke-width="1.5" stroke-dasharray="5,3"/><text x="${lx + 36}" y="${M.top + 74}">learning rate</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
