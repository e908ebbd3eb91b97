// The training loop of llama2.c's train.py, in TypeScript:
//
//   for iter = start .. max_iters:
//     lr = get_lr(iter)
//     every eval_interval: estimate train/val loss; checkpoint + export if val improved
//     for each micro-step: forward(x, y) → loss / accum; backward; next batch
//     clip gradients, AdamW update, progress line
//
// Files in out_dir: ckpt.bin (training checkpoint, train/checkpoint.ts), model.bin (the model for
// `llama2 run`, at each improvement and at the end), tokenizer.bin (the data's tokenizer, when
// known, so that `llama2 run out_dir/model.bin` finds it), metrics.jsonl (a settings record, then
// one JSON object per iteration and per evaluation, each with an ISO timestamp `time`), loss.svg
// (rewritten at each evaluation). All written atomically.

import { appendFileSync, existsSync, readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { describeFsError, LlamaError, UsageError } from '../errors.js';
import { type ModelConfig, hiddenDimFor, validateConfig } from '../model/config.js';
import { type CheckpointFormat, writeCheckpoint } from '../model/checkpoint.js';
import { makeDirs, writeFileAtomic } from '../files.js';
import { parameterCount } from '../model/weights.js';
import { loadTokenizer } from '../tokenizer/index.js';
import { readTrainCheckpoint, type TrainRunRecord, writeTrainCheckpoint } from './checkpoint.js';
import { BatchSampler, closeTokenFile, openTokenFile, type TokenFile, windowCount } from './data.js';
import { initWeights } from './init.js';
import { buildTrainModel, type TrainModel } from './model.js';
import { type LossCurve, renderLossSvg } from './plot.js';
import { createTrainPool, type TrainEngine, type TrainPool } from './pool.js';
import { learningRateAt } from './schedule.js';
import { checkSettings, settingsByName, type TrainSettings } from './settings.js';

export interface TrainRunOptions {
  readonly settings: TrainSettings;
  readonly trainFiles: readonly string[];
  readonly valFiles: readonly string[];
  /** Kernels (and threads); default plain TypeScript on this thread. */
  readonly engine?: TrainEngine;
  /** Format of the exported model.bin. */
  readonly exportFormat?: Extract<CheckpointFormat, 'v0' | 'v1'>;
  /** Peak FLOP/s that MFU is measured against (default: cpuPeakFlops()). */
  readonly peakFlops?: number;
  /** After training, evaluate on all non-overlapping windows of the validation files. */
  readonly finalEval?: boolean;
  /** How the validation files were chosen (printed with the data). */
  readonly valChoice?: string;
  /** The data's tokenizer: copied to out_dir/tokenizer.bin and recorded in the checkpoint. */
  readonly tokenizer?: string;
  /** Where progress lines go (default: stdout). */
  readonly log?: (line: string) => void;
}

export interface TrainResult {
  /** Loss of each iteration run by this call, in order. */
  readonly losses: number[];
  readonly firstIter: number;
  readonly bestValLoss: number;
  readonly finalValLoss?: number;
  readonly tokensSeen: number;
  readonly ms: number;
}

/** Model shape from the settings (hidden size as model.py derives it unless given). */
export function modelConfigOf(s: TrainSettings): ModelConfig {
  const c: ModelConfig = {
    dim: s.dim, hiddenDim: s.hiddenDim > 0 ? s.hiddenDim : hiddenDimFor(s.dim, s.multipleOf), nLayers: s.nLayers,
    nHeads: s.nHeads, nKvHeads: s.nKvHeads, vocabSize: s.vocabSize, seqLen: s.maxSeqLen, sharedClassifier: true,
  };
  validateConfig(c, 'model settings');
  return c;
}

/** The CPU's peak float32 FLOP/s: cores × clock × 32 (two 256-bit FMA pipes: 2 × 8 lanes × 2 FLOPs). */
export function cpuPeakFlops(): { flops: number; note: string } {
  const cores = availableParallelism();
  let mhz = cpus()[0]?.speed ?? 0;
  if (!(mhz > 0)) {
    try {
      const m = /cpu MHz\s*:\s*([\d.]+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'));
      if (m) mhz = Number(m[1]);
    } catch { /* not Linux */ }
  }
  if (!(mhz > 0)) mhz = 2500;
  const flops = cores * mhz * 1e6 * 32;
  return { flops, note: `${cores} cores × ${(mhz / 1000).toFixed(2)} GHz × 32 FP32 FLOP/cycle (AVX2 FMA)` };
}

/** model.py estimate_mfu: FLOPs per token = 6N + 12·L·H·Q·T (N parameters, H heads of size Q). */
export function flopsPerToken(c: ModelConfig, T: number): number {
  return 6 * parameterCount(c) + 12 * c.nLayers * c.nHeads * (c.dim / c.nHeads) * T;
}

/** Mean cross-entropy of `model` over `batches` batches drawn by `sampler` from its start (dropout off). */
export function estimateLoss(model: TrainModel, sampler: BatchSampler, batches: number, x: Int32Array, y: Int32Array): number {
  model.setTraining(false);
  sampler.setState({ epoch: 0, cursor: 0 });
  let sum = 0;
  for (let i = 0; i < batches; i++) {
    sampler.next(x, y);
    sum += model.forward(x, y);
  }
  model.setTraining(true);
  return sum / batches;
}

/**
 * Mean cross-entropy over every non-overlapping window of T tokens (targets shifted by one) of
 * the files, as `llama2 eval` measures it; the last partial batch is padded with ignored targets.
 */
export function evaluateAllWindows(model: TrainModel, files: readonly TokenFile[]): { loss: number; windows: number } {
  const { B, T } = model;
  const x = new Int32Array(B * T);
  const y = new Int32Array(B * T);
  const sampler = new BatchSampler(files, B, T, 0);
  model.setTraining(false);
  let sum = 0;
  let count = 0;
  for (let w0 = 0; w0 < sampler.windows; w0 += B) {
    const n = Math.min(B, sampler.windows - w0);
    x.fill(0);
    y.fill(-1);
    for (let b = 0; b < n; b++) sampler.readWindow(w0 + b, x, y, b * T);
    const mean = model.forward(x, y);
    sum += mean * n * T;
    count += n * T;
  }
  model.setTraining(true);
  return { loss: sum / count, windows: sampler.windows };
}

const CKPT = 'ckpt.bin';
const MODEL = 'model.bin';
const METRICS = 'metrics.jsonl';
const PLOT = 'loss.svg';
const TOKENIZER = 'tokenizer.bin';

/** Runs training as configured; resumes from out_dir/ckpt.bin when init_from = resume. */
export async function train(opts: TrainRunOptions): Promise<TrainResult> {
  const s = opts.settings;
  checkSettings(s);
  const log = opts.log ?? ((line: string) => process.stdout.write(line + '\n'));
  const outDir = s.outDir;
  makeDirs(outDir);
  removeStaleTempFiles(outDir);

  // Model: fresh, or the checkpoint's shape and state.
  const resume = s.initFrom === 'resume' ? readTrainCheckpoint(join(outDir, CKPT)) : undefined;
  const config = resume ? resume.state.config : modelConfigOf(s);
  if (resume) {
    const asked = modelConfigOf(s);
    const differs = (['dim', 'hiddenDim', 'nLayers', 'nHeads', 'nKvHeads', 'vocabSize', 'seqLen'] as const).filter((k) => asked[k] !== config[k]);
    if (differs.length) log(`note: resuming with the checkpoint's model shape (${differs.map((k) => `${k} ${config[k]}`).join(', ')}), not the settings'`);
  }
  const B = s.batchSize;
  const T = config.seqLen;
  const accum = s.gradientAccumulationSteps;
  const lrDecayIters = s.lrDecayIters > 0 ? s.lrDecayIters : s.maxIters;
  const schedule = { learningRate: s.learningRate, minLr: s.minLr, warmupIters: s.warmupIters, lrDecayIters, decayLr: s.decayLr };
  const hyper = { beta1: s.beta1, beta2: s.beta2, eps: 1e-8, weightDecay: s.weightDecay };

  if (opts.trainFiles.length === 0) throw new UsageError('no training data (give --data DIR or --train FILE)');
  if (opts.valFiles.length === 0) throw new UsageError('no validation data (give --data DIR or --val FILE)');
  const trainFiles = opts.trainFiles.map((p) => openTokenFile(p, config.vocabSize));
  const valFiles = opts.valFiles.map((p) => openTokenFile(p, config.vocabSize));
  let pool: TrainPool | undefined;
  try {
    const trainSampler = new BatchSampler(trainFiles, B, T, s.seed);
    const evalTrain = new BatchSampler(trainFiles, B, T, s.seed + 1);
    const evalVal = new BatchSampler(valFiles, B, T, s.seed + 2);

    const initial = resume ? resume.params : initWeights(config, s.seed).data;
    const engine = opts.engine;
    const parts = engine?.shared && engine.threads > 1 ? engine.threads : 1;
    const model = buildTrainModel(config, initial, {
      B, T, dropout: s.dropout, seed: s.seed + 3, parts,
      ...(engine ? { kernels: engine.matmul } : {}),
      ...(engine?.allocate ? { allocate: engine.allocate } : {}),
    });
    pool = parts > 1 ? await createTrainPool(engine!.shared!, model) : undefined;
    model.setParallel(pool);
    let iter = 0;
    let tokensSeen = 0;
    let bestValLoss = Infinity;
    if (resume) {
      model.m.set(resume.m);
      model.v.set(resume.v);
      model.adamSteps = resume.state.adamSteps;
      model.dropoutRng.setState(resume.state.dropoutRng);
      const was = resume.state.run?.trainFiles;
      const same = was === undefined || (was.length === opts.trainFiles.length && was.every((p, i) => p === resolve(opts.trainFiles[i]!)));
      if (same && resume.state.sampler.cursor <= trainSampler.windows) trainSampler.setState(resume.state.sampler);
      else log('note: the training data differs from the checkpoint\'s: batches start a new shuffled epoch');
      iter = resume.state.iter;
      tokensSeen = resume.state.tokensSeen;
      bestValLoss = resume.state.bestValLoss;
    }
    const firstIter = iter;
    const curve = loadCurve(join(outDir, METRICS), firstIter, resume !== undefined);

    const peak = opts.peakFlops !== undefined ? { flops: opts.peakFlops, note: 'given with --peak-flops' } : cpuPeakFlops();
    const tokensPerIter = B * T * accum;
    const flopsPerIter = flopsPerToken(config, T) * tokensPerIter;
    log(`model: dim ${config.dim}, hidden ${config.hiddenDim}, ${config.nLayers} layers, ${config.nHeads} heads, ${config.nKvHeads} kv heads, vocab ${config.vocabSize}, seq ${T}: ${parameterCount(config).toLocaleString('en-US')} parameters`);
    const trainTokens = trainFiles.reduce((n, f) => n + f.tokens, 0);
    const valTokens = valFiles.reduce((n, f) => n + f.tokens, 0);
    log(`training data: ${describeFiles(opts.trainFiles)}: ${trainTokens.toLocaleString('en-US')} tokens, ${trainSampler.windows.toLocaleString('en-US')} windows of ${T}`);
    log(`validation data: ${describeFiles(opts.valFiles)}${opts.valChoice ? ` (${opts.valChoice})` : ''}: ${valTokens.toLocaleString('en-US')} tokens, ${windowsOf(valFiles, T).toLocaleString('en-US')} windows`);
    if (valTokens > trainTokens) log(`warning: the validation data (${valTokens.toLocaleString('en-US')} tokens) is larger than the training data (${trainTokens.toLocaleString('en-US')}); are --train and --val the right way round?`);
    log(`${tokensPerIter} tokens per iteration (${B} × ${T} × ${accum}), iterations ${iter}..${s.maxIters}`);
    log(`kernels: ${model.kernels.name}; MFU against a peak of ${(peak.flops / 1e9).toFixed(0)} GFLOP/s (${peak.note})`);
    log(resume ? `resuming at iteration ${iter} (best val loss ${bestValLoss.toFixed(4)})` : `training from scratch (seed ${s.seed})`);

    const x = new Int32Array(B * T);
    const y = new Int32Array(B * T);
    const ex = new Int32Array(B * T);
    const ey = new Int32Array(B * T);
    const losses: number[] = [];
    const t0 = performance.now();
    const exportFormat = opts.exportFormat ?? 'v1';
    const settingsRecord = { ...s } as Record<string, unknown>;
    const runRecord: TrainRunRecord = {
      trainFiles: opts.trainFiles.map((p) => resolve(p)), valFiles: opts.valFiles.map((p) => resolve(p)), exportFormat,
      ...(opts.tokenizer !== undefined ? { tokenizer: resolve(opts.tokenizer) } : {}),
    };
    if (opts.tokenizer !== undefined) log(`tokenizer: ${opts.tokenizer} → ${copyTokenizer(opts.tokenizer, outDir, config.vocabSize)}`);
    appendMetric(outDir, {
      type: 'settings', ...(resume ? { resumed_at: firstIter } : {}), ...settingsByName(s), model: config,
      train_files: runRecord.trainFiles, val_files: runRecord.valFiles, export_format: exportFormat,
      ...(runRecord.tokenizer !== undefined ? { tokenizer: runRecord.tokenizer } : {}),
    });

    const saveCheckpoint = (nextIter: number): void => {
      writeTrainCheckpoint(join(outDir, CKPT), {
        state: {
          config, settings: settingsRecord, run: runRecord, iter: nextIter, adamSteps: model.adamSteps, tokensSeen, bestValLoss,
          sampler: trainSampler.getState(), dropoutRng: model.getRngState(),
        },
        params: model.params.data, m: model.m, v: model.v,
      });
    };

    for (; iter <= s.maxIters; iter++) {
      const lr = learningRateAt(iter, schedule);

      if (iter % s.evalInterval === 0) {
        const trainLoss = estimateLoss(model, evalTrain, s.evalIters, ex, ey);
        const valLoss = estimateLoss(model, evalVal, s.evalIters, ex, ey);
        log(`step ${iter}: train loss ${trainLoss.toFixed(4)}, val loss ${valLoss.toFixed(4)}`);
        appendMetric(outDir, { type: 'eval', iter, tokens: tokensSeen, train_loss: trainLoss, val_loss: valLoss, lr });
        (curve.evals as Array<readonly [number, number, number]>).push([tokensSeen, trainLoss, valLoss]);
        if (valLoss < bestValLoss || s.alwaysSaveCheckpoint) {
          bestValLoss = Math.min(bestValLoss, valLoss);
          if (iter > 0) {
            saveCheckpoint(iter);
            writeCheckpoint(join(outDir, MODEL), model.params, exportFormat);
            log(`saved checkpoint to ${outDir}`);
          }
        }
        // the plot last: a plot must never cost a checkpoint, nor stop the run
        drawPlot(curve, join(outDir, PLOT), `llama2ts training: ${parameterCount(config).toLocaleString('en-US')} parameters`, log);
      }

      const start = performance.now();
      model.zeroGrad();
      let lossSum = 0;
      for (let micro = 0; micro < accum; micro++) {
        trainSampler.next(x, y);
        lossSum += model.forward(x, y);
        model.backward(1 / accum);
      }
      model.update(lr, hyper, s.gradClip);
      const ms = performance.now() - start;
      const loss = lossSum / accum;
      if (!Number.isFinite(loss)) throw new LlamaError(`training diverged: loss is ${loss} at iteration ${iter}`);
      tokensSeen += tokensPerIter;
      losses.push(loss);
      (curve.train as Array<readonly [number, number]>).push([tokensSeen, loss]);
      (curve.lr as Array<readonly [number, number]>).push([tokensSeen, lr]);
      const tokPerSec = tokensPerIter / (ms / 1000);
      const mfu = flopsPerIter / (ms / 1000) / peak.flops;
      appendMetric(outDir, { type: 'train', iter, tokens: tokensSeen, loss, lr, grad_norm: model.lastGradNorm, ms, tok_per_s: tokPerSec, mfu });
      if (iter % s.logInterval === 0) {
        const elapsed = (performance.now() - t0) / 1000;
        const eta = (elapsed / (iter + 1 - firstIter)) * (s.maxIters - iter);
        log(`${iter}/${s.maxIters} | loss ${loss.toFixed(4)} | lr ${lr.toExponential(6)} | ${ms.toFixed(2)}ms | ${Math.round(tokPerSec)} tok/s | mfu ${(100 * mfu).toFixed(2)}% | ${formatDuration(elapsed)} elapsed, ETA ${formatDuration(eta)}`);
      }
    }

    // The end: the training checkpoint (to continue with a larger max_iters) and the model.
    saveCheckpoint(iter);
    writeCheckpoint(join(outDir, MODEL), model.params, exportFormat);
    log(`saved checkpoint and ${exportFormat} model to ${outDir}`);
    let finalValLoss: number | undefined;
    if (opts.finalEval) {
      const r = evaluateAllWindows(model, valFiles);
      finalValLoss = r.loss;
      log(`final val loss ${r.loss.toFixed(4)} over all ${r.windows} windows of ${T} tokens`);
      appendMetric(outDir, { type: 'final_eval', iter, tokens: tokensSeen, val_loss: r.loss, windows: r.windows });
    }
    const result: TrainResult = { losses, firstIter, bestValLoss, tokensSeen, ms: performance.now() - t0 };
    return finalValLoss === undefined ? result : { ...result, finalValLoss };
  } finally {
    for (const f of [...trainFiles, ...valFiles]) closeTokenFile(f);
    await pool?.close();
  }
}

function windowsOf(files: readonly TokenFile[], T: number): number {
  return files.reduce((n, f) => n + windowCount(f.tokens, T), 0);
}

/** "a.bin", "a.bin, b.bin" or "a.bin … z.bin (12 files)". */
function describeFiles(paths: readonly string[]): string {
  if (paths.length <= 3) return paths.join(', ');
  return `${paths[0]} … ${paths[paths.length - 1]} (${paths.length} files)`;
}

/** 42s, 3m05s, 2h07m. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const t = Math.round(Math.max(0, seconds));
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m${String(t % 60).padStart(2, '0')}s`;
  return `${Math.floor(t / 3600)}h${String(Math.floor(t / 60) % 60).padStart(2, '0')}m`;
}

/**
 * Writes the tokenizer beside the model as out_dir/tokenizer.bin (llama2.c's form, what `llama2
 * run` looks for beside a model); a tokenizer.bin is copied byte for byte.
 */
function copyTokenizer(path: string, outDir: string, vocabSize: number): string {
  const tokenizer = loadTokenizer(path, vocabSize);
  const dest = join(outDir, TOKENIZER);
  if (resolve(path) === resolve(dest)) return dest;
  let bytes: Uint8Array;
  try {
    bytes = tokenizer.format === 'llama2c' ? readFileSync(path) : tokenizer.toLlama2cBytes();
  } catch (err) {
    throw describeFsError(path, err);
  }
  writeFileAtomic(dest, [bytes]);
  return dest;
}

/** Rewrites loss.svg; a failure is a warning (the run and its checkpoints go on without the picture). */
function drawPlot(curve: LossCurve, path: string, title: string, log: (line: string) => void): void {
  try {
    writeFileAtomic(path, [Buffer.from(renderLossSvg(curve, title))]);
  } catch (err) {
    log(`warning: the loss plot was not drawn (${err instanceof Error ? err.message : String(err)})`);
  }
}

function appendMetric(outDir: string, record: Record<string, unknown>): void {
  try {
    appendFileSync(join(outDir, METRICS), JSON.stringify({ time: new Date().toISOString(), ...record }) + '\n');
  } catch (err) {
    throw describeFsError(join(outDir, METRICS), err);
  }
}

/**
 * The loss curve so far. A fresh run starts a new metrics.jsonl; a resumed one keeps the records
 * of iterations before the resume point (later ones are about to be recomputed) and drops the rest.
 */
function loadCurve(path: string, firstIter: number, resumed: boolean): LossCurve {
  const curve = { train: [] as Array<readonly [number, number]>, evals: [] as Array<readonly [number, number, number]>, lr: [] as Array<readonly [number, number]> };
  if (!resumed || !existsSync(path)) {
    writeFileAtomic(path, []);
    return curve;
  }
  const kept: string[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    let r: { type?: string; resumed_at?: number; iter?: number; tokens?: number; loss?: number; lr?: number; train_loss?: number; val_loss?: number };
    try {
      r = JSON.parse(line) as typeof r;
    } catch {
      continue; // a line cut by a kill: drop it
    }
    if (r.type === 'settings' && (typeof r.resumed_at !== 'number' || r.resumed_at < firstIter)) {
      kept.push(line);
      continue;
    }
    if (typeof r.iter !== 'number' || r.iter >= firstIter || typeof r.tokens !== 'number') continue;
    kept.push(line);
    if (r.type === 'train' && typeof r.loss === 'number') curve.train.push([r.tokens, r.loss]);
    if (r.type === 'train' && typeof r.lr === 'number') curve.lr.push([r.tokens, r.lr]);
    if (r.type === 'eval' && typeof r.train_loss === 'number' && typeof r.val_loss === 'number') curve.evals.push([r.tokens, r.train_loss, r.val_loss]);
  }
  writeFileAtomic(path, [Buffer.from(kept.map((l) => l + '\n').join(''))]);
  return curve;
}

/** Temp files of writeFileAtomic left by a run killed mid-write (name.tmp-PID-TIME). */
function removeStaleTempFiles(outDir: string): void {
  for (const name of readdirSync(outDir)) {
    if (/^(ckpt\.bin|model\.bin|tokenizer\.bin|loss\.svg|metrics\.jsonl)\.tmp-\d+-\d+$/.test(name)) {
      try { unlinkSync(join(outDir, name)); } catch { /* gone already */ }
    }
  }
}
