// The learning-rate schedule of llama2.c's train.py (get_lr): linear warm-up from 0, cosine decay
// to min_lr, then min_lr.
//
//   it < warmup:            lr = learning_rate · it / warmup
//   it > lr_decay_iters:    lr = min_lr
//   otherwise:              r = (it − warmup) / (lr_decay_iters − warmup)
//                           lr = min_lr + ½ (1 + cos πr) · (learning_rate − min_lr)

export interface LrSchedule {
  readonly learningRate: number;
  readonly minLr: number;
  readonly warmupIters: number;
  readonly lrDecayIters: number;
  /** false: constant learning_rate (train.py's decay_lr = False). */
  readonly decayLr: boolean;
}

export function learningRateAt(it: number, s: LrSchedule): number {
  if (!s.decayLr) return s.learningRate;
  if (it < s.warmupIters) return (s.learningRate * it) / s.warmupIters;
  if (it > s.lrDecayIters) return s.minLr;
  const span = s.lrDecayIters - s.warmupIters;
  const ratio = span > 0 ? (it - s.warmupIters) / span : 1;
  const coeff = 0.5 * (1 + Math.cos(Math.PI * ratio));
  return s.minLr + coeff * (s.learningRate - s.minLr);
}
