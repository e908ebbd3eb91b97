// Node.js modules the browser bundle mentions but never calls there (wasm.ts imports node:fs/promises
// and node:url only for file: URLs, a page fetches instead; node:v8 only to turn on relaxed SIMD in
// Node.js 20).

function unavailable(): never {
  throw new Error('not available in the browser');
}

export const readFile = unavailable;
export const fileURLToPath = unavailable;
export const setFlagsFromString = unavailable;
