// npm pack's prepack/postpack: the published package.json without the `prepare` script.
//
// `prepare` builds a fresh clone on `npm install` (TypeScript, the WebAssembly kernels, the web
// bundle). A published package is already built, and npm lists any install-time script of a
// dependency as one to review ("install-scripts … not yet covered by allowScripts"); so prepack
// builds from an empty dist/ (no stale file of an earlier build ships), then sets package.json
// aside and writes it without `prepare`, npm packs that, and postpack puts the original back.
// (The same idea as the `pinst` tool, in a few lines.)
//
//   node scripts/pack-manifest.mjs strip     package.json → package.json.orig, write the stripped one
//   node scripts/pack-manifest.mjs restore   package.json.orig → package.json

import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';

const MANIFEST = 'package.json';
const ORIGINAL = 'package.json.orig';
const mode = process.argv[2];

if (mode === 'strip') {
  if (existsSync(ORIGINAL)) {
    console.error(`pack-manifest: ${ORIGINAL} exists (an earlier pack did not finish): restore it first`);
    process.exit(1);
  }
  const text = readFileSync(MANIFEST, 'utf8');
  const manifest = JSON.parse(text);
  delete manifest.scripts.prepare;
  renameSync(MANIFEST, ORIGINAL);
  writeFileSync(MANIFEST, JSON.stringify(manifest, null, 2) + '\n');
} else if (mode === 'restore') {
  if (existsSync(ORIGINAL)) renameSync(ORIGINAL, MANIFEST);
} else {
  console.error('usage: node scripts/pack-manifest.mjs strip|restore');
  process.exit(2);
}
