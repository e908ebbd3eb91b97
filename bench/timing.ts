// Timing a call for the benchmarks: repeated for about a time budget, after one warm-up call.

/** Runs fn for about budgetMs (and at least twice), after one untimed call; returns ms per call. */
export function msPerCall(fn: () => void, budgetMs: number): number {
  fn();
  let reps = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < budgetMs || reps < 2) {
    fn();
    reps++;
    t = performance.now();
  }
  return (t - t0) / reps;
}
