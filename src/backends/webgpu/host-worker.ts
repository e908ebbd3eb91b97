// The GPU host (host.ts) in a Node.js worker thread: started by engine.ts with the HostInit as
// workerData, it answers commands from the parent until the process ends.

import { parentPort, workerData } from 'node:worker_threads';
import { hostDied, startHost } from './host.js';
import type { HostInit, ToHost } from './protocol.js';

const init = workerData as HostInit;
const port = parentPort!;
process.on('uncaughtException', () => hostDied(init.control));
process.on('unhandledRejection', () => hostDied(init.control));
const handle = await startHost(init, (m) => port.postMessage(m));
if (handle !== undefined) port.on('message', (m: ToHost) => handle(m));
