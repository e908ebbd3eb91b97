// Where the WebGPU tests find an adapter. This machine class has no GPU; Debian's chromium brings
// SwiftShader, a Vulkan driver on the CPU, which Dawn (the `webgpu` package) uses when the Vulkan
// loader is pointed at it — but the dynamic linker reads LD_LIBRARY_PATH only when a process
// starts. So a test file that imports this module first re-runs itself, with its arguments and
// the test runner's channel (stdout) unchanged, under SwiftShader's environment when it is
// installed and no Vulkan driver was chosen (LLAMA2_WEBGPU_TEST=native keeps the machine's own).
// Without an adapter the tests skip with a visible message; under CI=true that is an error.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { WebGpuDevice } from '../src/backends/webgpu/engine.js';

export const SWIFTSHADER_DIR = '/usr/lib/chromium';
export const SWIFTSHADER_ICD = `${SWIFTSHADER_DIR}/vk_swiftshader_icd.json`;

/** The environment that makes Dawn find SwiftShader. */
export function swiftShaderEnv(): Record<string, string> {
  const ld = process.env['LD_LIBRARY_PATH'];
  return { LD_LIBRARY_PATH: ld ? `${SWIFTSHADER_DIR}:${ld}` : SWIFTSHADER_DIR, VK_ICD_FILENAMES: SWIFTSHADER_ICD };
}

const chosen = process.env['VK_ICD_FILENAMES'] !== undefined || process.env['VK_DRIVER_FILES'] !== undefined;
if (!chosen && process.env['LLAMA2_WEBGPU_TEST'] !== 'native' && existsSync(SWIFTSHADER_ICD)) {
  const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...process.env, ...swiftShaderEnv() } });
  process.exit(r.status ?? 1);
}

/** Opens the WebGPU device once for a test file, or says why not (a skip reason; an error under CI). */
export async function openTestDevice(tuning: Parameters<typeof WebGpuDevice.open>[0] = {}): Promise<{ device: WebGpuDevice | undefined; skip: string | false }> {
  try {
    return { device: await WebGpuDevice.open(tuning), skip: false };
  } catch (err) {
    const why = `no WebGPU adapter: ${(err as Error).message} (on Linux without a GPU: apt-get install chromium, for SwiftShader)`;
    if (process.env['CI'] === 'true') throw new Error(`${why}; CI requires it`);
    process.stderr.write(`# SKIPPING WebGPU tests: ${why}\n`);
    return { device: undefined, skip: why };
  }
}
