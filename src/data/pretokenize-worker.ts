// A pretokenize worker thread: loads the tokenizer once, then tokenizes the shards the pool sends.

import { parentPort, workerData } from 'node:worker_threads';
import { LlamaError } from '../errors.js';
import { loadTokenizer } from '../tokenizer/index.js';
import { pretokenizeShard, type WorkerJob, type WorkerReply } from './pretokenize.js';

const port = parentPort!;
const tokenizer = loadTokenizer((workerData as { tokenizer: string }).tokenizer);

port.on('message', (job: WorkerJob) => {
  let reply: WorkerReply;
  try {
    reply = { ok: true, stats: pretokenizeShard(job.input, tokenizer, job.output) };
  } catch (err) {
    reply = { ok: false, message: (err as Error).message, userError: err instanceof LlamaError };
  }
  port.postMessage(reply);
});
