// npm run build:web — the playground as static files in dist/web:
//
//   index.html, style.css   the page (web/)
//   app.js                  the page's script (web/app.ts)
//   llama2ts.js             the browser library, `llama2ts/web` (web/llama2ts.ts; its
//                           declarations, llama2ts.d.ts, come from tsc -p web/tsconfig.lib.json)
//   engine-worker.js        the engine in a Web Worker (web/engine-worker.ts + src/)
//   thread-worker.js        a WebAssembly kernel thread (web/kernel-worker.ts)
//   host-worker.js          the thread that owns the GPU device (web/gpu-worker.ts)
//   kernels.wasm            the SIMD kernels (built by `asc` into dist/src/kernels)
//   kernels-fma.wasm        the same with relaxed SIMD's fused multiply-add (taken where it validates)
//
// esbuild bundles the TypeScript sources; the engine's Node.js imports are replaced by the
// browser shims in web/shims (any other node:* import fails the build). Put a checkpoint and its
// tokenizer beside these files as model.bin and tokenizer.bin (or pass ?model=URL&tokenizer=URL)
// and serve the folder from any static host; send COOP/COEP headers for WebAssembly threads.

import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const web = join(root, 'web');
const out = join(root, 'dist', 'web');
const wasm = join(root, 'dist', 'src', 'kernels', 'kernels.wasm');
const wasmFma = join(root, 'dist', 'src', 'kernels', 'kernels-fma.wasm');

/** node:* modules the engine imports, and what stands in for them in a page. */
const shims = {
  'node:fs': join(web, 'shims', 'fs.ts'),
  'node:worker_threads': join(web, 'shims', 'worker-threads.ts'),
  'node:fs/promises': join(web, 'shims', 'empty.ts'),
  'node:url': join(web, 'shims', 'empty.ts'),
  'node:v8': join(web, 'shims', 'empty.ts'),
};

/** @type {import('esbuild').Plugin} */
const nodeShims = {
  name: 'node-shims',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) => {
      const path = shims[args.path];
      if (path === undefined) {
        return { errors: [{ text: `${args.path} has no browser shim (imported by ${args.importer}); add one in web/shims` }] };
      }
      return { path };
    });
  },
};

for (const file of [wasm, wasmFma]) {
  if (!existsSync(file)) {
    console.error(`build:web: ${file} is missing: run npm run build (it compiles the kernels first)`);
    process.exit(1);
  }
}
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: {
    app: join(web, 'app.ts'),
    llama2ts: join(web, 'llama2ts.ts'),
    'engine-worker': join(web, 'engine-worker.ts'),
    'thread-worker': join(web, 'kernel-worker.ts'),
    'host-worker': join(web, 'gpu-worker.ts'),
  },
  outdir: out,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  sourcemap: 'linked',
  plugins: [nodeShims],
  logLevel: 'warning',
});
for (const file of ['index.html', 'style.css']) copyFileSync(join(web, file), join(out, file));
copyFileSync(wasm, join(out, 'kernels.wasm'));
copyFileSync(wasmFma, join(out, 'kernels-fma.wasm'));
console.log(`build:web: wrote ${out}`);
