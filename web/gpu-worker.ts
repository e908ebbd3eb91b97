// The GPU host (src/backends/webgpu/host.ts) in a Web Worker: the counterpart of host-worker.ts,
// started by the engine worker's WebGpuDevice through the worker_threads shim. Its first message
// is the HostInit; then it answers commands through the control block.
// Built as host-worker.js, beside the engine bundle (the name engine.ts's URL looks for).

import { hostDied, startHost } from '../src/backends/webgpu/host.js';
import type { HostInit, ToHost } from '../src/backends/webgpu/protocol.js';
import type { ShimMessage } from './shims/worker-threads.js';

interface WorkerScope {
  onmessage: ((e: { readonly data: unknown }) => void) | null;
  onerror: (() => void) | null;
  onunhandledrejection: (() => void) | null;
  postMessage(message: ShimMessage): void;
}
const scope = self as unknown as WorkerScope;

scope.onmessage = (e) => {
  const init = e.data as HostInit;
  scope.onerror = () => hostDied(init.control);
  scope.onunhandledrejection = () => hostDied(init.control);
  const queued: ToHost[] = [];
  let handle: ((m: ToHost) => void) | undefined;
  scope.onmessage = (m) => (handle ? handle(m.data as ToHost) : queued.push(m.data as ToHost));
  void startHost(init, (m) => scope.postMessage({ kind: 'message', data: m })).then((h) => {
    handle = h;
    if (h !== undefined) for (const m of queued.splice(0)) h(m);
  });
};
