// loss.svg after a long run (issue 19, finding 1): the plot of 200,000 iterations is drawn (a
// spread of every loss into Math.min overflowed the stack at ~125,000), keeps the curve's range
// and a bounded size; and a plot that cannot be written is a warning that costs no checkpoint.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { readTrainCheckpoint } from '../src/train/checkpoint.js';
import { type LossCurve, renderLossSvg } from '../src/train/plot.js';
import { DEFAULT_SETTINGS } from '../src/train/settings.js';
import { train } from '../src/train/trainer.js';

const dir = mkdtempSync(join(tmpdir(), 'llama2ts-plot-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('renderLossSvg draws 200,000 iterations: the whole range, at most a few points per pixel column', () => {
  const n = 200_000;
  const train: Array<readonly [number, number]> = [];
  const lr: Array<readonly [number, number]> = [];
  for (let i = 0; i < n; i++) {
    const tokens = (i + 1) * 256;
    train.push([tokens, 2 + 8 / Math.sqrt(i + 1) + 0.05 * Math.sin(i)]);
    lr.push([tokens, 1e-3 * Math.min(1, i / 1000)]);
  }
  train[123_456] = [train[123_456]![0], 0.5]; // one outlier, which must stay visible
  const evals: Array<readonly [number, number, number]> = [[0, 10.5, 10.6], [n * 128, 2.1, 2.2], [n * 256, 2.05, 2.15]];
  const curve: LossCurve = { train, evals, lr };
  const svg = renderLossSvg(curve, 'a long run');
  assert.ok(svg.startsWith('<svg') && svg.trimEnd().endsWith('</svg>'));
  assert.ok(svg.length < 200_000, `${svg.length} bytes`);
  // the y axis spans the outlier (0.5, padded down to 0) and the first loss (10) with the first evaluation (10.6)
  const yTicks = [...svg.matchAll(/<text x="58" y="[\d.]+" text-anchor="end">([\d.]+)<\/text>/g)].map((m) => Number(m[1]));
  assert.ok(yTicks.length >= 3, svg.slice(0, 2000));
  assert.equal(Math.min(...yTicks), 0);
  assert.ok(Math.max(...yTicks) >= 10, `ticks ${yTicks.join(' ')}`);
  // the training line keeps its lowest point: the outlier's y, 0.5 on that scale, is drawn
  const line = /<path d="(M[^"]+)" fill="none" stroke="#9ecae1"/.exec(svg)![1]!;
  const ys = line.split(/[ML]/).filter(Boolean).map((p) => Number(p.split(',')[1]));
  assert.ok(ys.length < 4 * 720, `${ys.length} points`);
  const lowest = Math.max(...ys); // SVG y grows downwards
  const y0 = Number(/<text x="58" y="([\d.]+)" text-anchor="end">0<\/text>/.exec(svg)![1]) - 4;
  const y10 = Number(/<text x="58" y="([\d.]+)" text-anchor="end">10<\/text>/.exec(svg)![1]) - 4;
  assert.ok(Math.abs(lowest - (y0 + (y10 - y0) * 0.05)) < 1, `the outlier is drawn at ${lowest} (0 at ${y0}, 10 at ${y10})`);
});

test('a loss.svg that cannot be written is a warning: the run goes on and writes its checkpoints', async () => {
  const tokens = new Uint16Array(4000);
  for (let i = 0; i < tokens.length; i++) tokens[i] = (i * 7 + (i >> 3)) % 32;
  const data = join(dir, 'tokens.bin');
  writeFileSync(data, tokens);
  const outDir = join(dir, 'out');
  mkdirSync(join(outDir, 'loss.svg'), { recursive: true }); // a folder where the plot should go
  const lines: string[] = [];
  const result = await train({
    settings: {
      ...DEFAULT_SETTINGS, batchSize: 2, maxSeqLen: 8, vocabSize: 32, dim: 8, nLayers: 1, nHeads: 2, nKvHeads: 2, multipleOf: 8,
      gradientAccumulationSteps: 1, maxIters: 6, lrDecayIters: 6, warmupIters: 1, evalInterval: 3, evalIters: 1, outDir,
      alwaysSaveCheckpoint: true,
    },
    trainFiles: [data], valFiles: [data], log: (l) => lines.push(l),
  });
  assert.equal(result.losses.length, 7);
  const warnings = lines.filter((l) => l.startsWith('warning: the loss plot was not drawn'));
  assert.equal(warnings.length, 3, lines.join('\n')); // evaluations at 0, 3 and 6
  assert.match(warnings[0]!, /\(\/.*loss\.svg: is a directory, expected a file\)$/);
  // the checkpoint of the evaluation at iteration 3 was written before its plot failed
  const saved = lines.indexOf('saved checkpoint to ' + outDir);
  assert.match(lines[saved - 1]!, /^step 3: /, lines.join('\n'));
  assert.equal(lines[saved + 1], warnings[1], lines.join('\n'));
  assert.ok(existsSync(join(outDir, 'ckpt.bin')));
  assert.equal(readTrainCheckpoint(join(outDir, 'ckpt.bin')).state.iter, 7);
});
