// Node.js modules the browser bundle mentions but never calls there (wasm.ts imports node:fs/promises
// and node:url only for file: URLs; a page fetches instead).

function unavailable(): never {
  throw new Error('not available in the browser');
}

export const readFile = unavailable;
export const fileURLToPath = unavailable;
