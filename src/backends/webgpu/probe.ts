// Node.js only: whether Dawn (the `webgpu` package) finds an adapter, asked in a child process.
// Dawn prints its own warnings to the process's standard error when it finds none ("Couldn't load
// Vulkan: …", with a source location); asking in a child keeps them out of the CLI's one-line
// error, and lets that line say why.

import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

/** undefined when an adapter is there, else why not (one line). */
export function probeAdapter(): string | undefined {
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve('webgpu');
  } catch {
    return 'the WebGPU backend needs the `webgpu` package (npm install webgpu)';
  }
  const script = `const { create } = await import(${JSON.stringify(pathToFileURL(entry).href)});
const gpu = create([]);
const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
process.stdout.write(adapter === null ? 'none' : 'ok');`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.stdout === 'ok') return undefined;
  const dawn = (r.stderr ?? '').split('\n').find((l) => l.startsWith('Warning: '))?.slice('Warning: '.length);
  const hint = process.platform === 'linux'
    ? '; without a GPU, LD_LIBRARY_PATH=/usr/lib/chromium VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json runs WebGPU on the CPU (SwiftShader, from Debian\'s chromium)'
    : '';
  return `no WebGPU adapter found${dawn ? ` (Dawn: ${dawn})` : r.stdout === 'none' ? '' : ` (the probe failed: ${(r.stderr ?? '').split('\n')[0]})`}${hint}`;
}
