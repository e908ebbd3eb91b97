// GGUF written by `llama2 export --format gguf` runs in llama.cpp (node-llama-cpp 3.21.1, installed on
// demand by bench/llama-cpp.ts) exactly as the original checkpoint runs in `llama2 run -t 0`: the
// greedy continuation of a prompt is the same for 100 tokens from the float32 file, and for at least
// the first 30 from the Q8_0 file (llama.cpp's Q8_0 arithmetic — f16 scales, activations quantized to
// Q8_0 with f16 scales — is not the float32 model's; the point where the two part is reported).
// Models: stories260K (GQA 8/4, tok512) and the embedded default model (GQA 8/4, head size 16, its
// own vocabulary, trained by llama2ts); and the Hugging Face / Meta reference folders (an untied
// classifier, GQA 8/2, θ = 100000, F16/BF16 sources), whose export llama.cpp must continue as
// PyTorch did (their golden greedy ids). Where node-llama-cpp cannot be installed or loaded the
// tests are skipped with the reason.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type LlamaCpp, llamaCppGreedy, loadLlamaCpp } from '../bench/llama-cpp.js';
import { type LoadModelOptions, loadTransformer } from '../src/infer/load.js';
import { jsKernels } from '../src/kernels/js.js';
import { jsQ8Kernels } from '../src/kernels/q8-js.js';
import { loadTokenizer } from '../src/tokenizer/index.js';
import { cliPath, needsRefdata, projectRoot, ref } from './refdata.js';

const tmp = mkdtempSync(join(tmpdir(), 'llama2ts-llamacpp-'));
const PROMPT = 'Once upon a time';
const TOKENS = 100;
const Q8_AGREE = 30;

let llama: LlamaCpp | undefined;
let unavailable: string | undefined;

before(async () => {
  const r = await loadLlamaCpp();
  if (typeof r === 'string') {
    unavailable = r;
    process.stderr.write(`# SKIPPING llama.cpp comparisons: ${r}\n`);
  } else {
    llama = r;
  }
});
after(async () => {
  await llama?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

function llama2(args: string[]): string {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

/** The model's greedy continuation of the prompt ids, by the engine `llama2 run -t 0` uses (argmax). */
function greedy(model: string, promptIds: readonly number[], n: number, options: LoadModelOptions = {}): number[] {
  const t = loadTransformer(model, { ...jsKernels, ...jsQ8Kernels }, options);
  const out: number[] = [];
  let token = promptIds[0]!;
  for (let pos = 0; out.length < n; pos++) {
    if (pos < promptIds.length - 1) {
      t.advance(token, pos);
      token = promptIds[pos + 1]!;
      continue;
    }
    const logits = t.forward(token, pos);
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    out.push(best);
    token = best;
  }
  return out;
}

function firstDifference(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

const models = (): Array<{ name: string; bin: string; tokenizer: string }> => [
  { name: 'stories260K', bin: ref('data', 'models', 'stories260K.bin'), tokenizer: ref('data', 'models', 'tok512.bin') },
  { name: 'default (llama2ts-trained, GQA, head size 16)', bin: join(projectRoot, 'models', 'default.bin'), tokenizer: join(projectRoot, 'models', 'tokenizer.bin') },
];

for (const dtype of ['f32', 'q8_0'] as const) {
  test(`llama.cpp runs llama2 export --format gguf --dtype ${dtype} as llama2 run -t 0 runs the .bin`, needsRefdata, async (t) => {
    if (llama === undefined) return t.skip(unavailable);
    for (const m of models()) {
      const gguf = join(tmp, `${m.name.split(' ')[0]}.${dtype}.gguf`);
      llama2(['export', m.bin, '-z', m.tokenizer, '--format', 'gguf', '--dtype', dtype, '-o', gguf]);
      const tokenizer = loadTokenizer(m.tokenizer);
      const promptIds = tokenizer.encode(PROMPT);
      const ours = greedy(m.bin, promptIds, TOKENS);
      // what `llama2 run -t 0` prints is the text of these tokens (no BOS among them: it would stop there)
      assert.ok(!ours.includes(tokenizer.bosId));
      const printed = llama2(['run', m.bin, '-z', m.tokenizer, '-t', '0', '-n', String(promptIds.length + TOKENS - 1), '-i', PROMPT]);
      assert.equal(printed, tokenizer.decode([...promptIds, ...ours]) + '\n');

      const theirs = await llamaCppGreedy(llama, gguf, promptIds, TOKENS);
      const at = firstDifference(ours, theirs);
      if (dtype === 'f32') {
        assert.deepEqual(theirs, ours, `${m.name}: llama.cpp's continuation differs at token ${at}`);
        t.diagnostic(`${m.name} f32: llama.cpp = llama2 run -t 0 for all ${TOKENS} tokens`);
      } else {
        // llama2ts running the same Q8_0 file (group 32, as stored) against llama.cpp on it
        const oursQ8 = greedy(gguf, promptIds, TOKENS, { quantize: 'q8' });
        const atQ8 = firstDifference(oursQ8, theirs);
        t.diagnostic(`${m.name} q8_0: llama.cpp on the Q8_0 GGUF follows llama2 run -t 0 on the .bin for ` +
          `${at < 0 ? `all ${TOKENS}` : `the first ${at}`} tokens, and llama2ts on the same Q8_0 GGUF for ${atQ8 < 0 ? `all ${TOKENS}` : `the first ${atQ8}`}`);
        assert.ok(at < 0 || at >= Q8_AGREE, `${m.name}: llama.cpp on q8_0 diverges from the float32 model at token ${at} (< ${Q8_AGREE})`);
      }
    }
  });
}

test('llama.cpp continues the GGUF export of the Hugging Face and Meta reference folders as PyTorch does', needsRefdata, async (t) => {
  if (llama === undefined) return t.skip(unavailable);
  for (const name of ['hf_gqa_f32', 'hf_gqa_bf16_sharded', 'hf_mha_f16_tied', 'meta_gqa_bf16']) {
    const dir = ref('golden', 'hf', name);
    const golden = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8')) as { prompt_ids: number[]; greedy_ids: number[] };
    const gguf = join(tmp, `${name}.gguf`);
    llama2(['export', dir, '--format', 'gguf', '-o', gguf]);
    const want = golden.greedy_ids.slice(golden.prompt_ids.length);
    const got = await llamaCppGreedy(llama, gguf, golden.prompt_ids, want.length);
    assert.deepEqual(got, want, `${name}: llama.cpp's continuation differs at token ${firstDifference(got, want)}`);
  }
});
