// Getting a WebGPU device: the browser's navigator.gpu, or in Node.js the `webgpu` package (Dawn,
// Chromium's WebGPU implementation, as a native addon with prebuilt binaries). What the kernels
// need from the adapter — subgroups, the largest buffers it allows — is decided here, once.

/// <reference types="@webgpu/types" />

import type { KernelTuning } from './wgsl.js';

/** GPUBufferUsage and GPUMapMode flags (fixed by the WebGPU specification; Node.js has no globals for them). */
export const Usage = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 } as const;
export const MAP_READ = 0x1;

/** A device and what was chosen for it. */
export interface GpuContext {
  /** The entry point, kept referenced: Dawn's instance must outlive its devices (a collected one crashes them). */
  readonly gpu: GPU;
  readonly device: GPUDevice;
  /** The adapter, in words ('NVIDIA …', 'SwiftShader …'). */
  readonly adapterName: string;
  readonly tuning: KernelTuning;
}

/** Overrides of the kernels' tuning (the benchmark sweeps them on a real GPU). */
export type TuningOverrides = Partial<KernelTuning>;

/** The WebGPU entry point where this code runs (in Node.js, Dawn created with `dawnFlags`), or undefined. */
async function gpuApi(dawnFlags: readonly string[]): Promise<GPU | undefined> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu !== undefined) return nav.gpu;
  if (typeof process === 'undefined' || process.versions?.node === undefined) return undefined;
  // Node.js: Dawn through the `webgpu` package (an optional dependency)
  const name = 'webgpu';
  let mod: { create(flags: string[]): GPU };
  try {
    mod = await import(name) as typeof mod;
  } catch {
    throw new Error('the WebGPU backend needs the `webgpu` package (npm install webgpu)');
  }
  return mod.create([...dawnFlags]);
}

/** Requests an adapter and a device with the largest buffers the adapter allows. Throws a one-line Error when there is none. */
export async function requestGpu(overrides: TuningOverrides = {}, dawnFlags: readonly string[] = []): Promise<GpuContext> {
  const gpu = await gpuApi(dawnFlags);
  if (gpu === undefined) throw new Error('no WebGPU here (navigator.gpu is missing)');
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (adapter === null) throw new Error('no WebGPU adapter found');
  const info = adapter.info;
  const adapterName = [info.vendor, info.architecture, info.description].filter((s) => s !== undefined && s !== '').join(' ') || 'unknown adapter';
  // subgroups need both the feature and the subgroup_id builtin (a WGSL language feature)
  // a CPU adapter (SwiftShader) pays for every barrier and subgroup operation: there one invocation
  // per row is fastest; GPUs get warp-sized teams (subgroups where the adapter has them)
  const cpu = info.vendor === 'google' || /swiftshader|llvmpipe|lavapipe/i.test(adapterName);
  const subgroups = adapter.features.has('subgroups') && gpu.wgslLanguageFeatures.has('subgroup_id') && (overrides.subgroups ?? !cpu);
  if (!gpu.wgslLanguageFeatures.has('packed_4x8_integer_dot_product')) {
    throw new Error(`the WebGPU adapter (${adapterName}) lacks WGSL's packed_4x8_integer_dot_product`);
  }
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures: subgroups ? ['subgroups'] : [],
    requiredLimits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
    },
  });
  const sgMax = (info as GPUAdapterInfo & { subgroupMaxSize?: number }).subgroupMaxSize ?? 32;
  const matmulThreads = overrides.matmulThreads ?? (cpu ? 64 : 128);
  const teamSize = overrides.teamSize ?? (cpu ? 1 : 32);
  const tuning: KernelTuning = {
    subgroups,
    matmulThreads,
    teamSize,
    itemsPerGroup: overrides.itemsPerGroup ?? (subgroups ? Math.max(1, Math.floor(matmulThreads / Math.max(4, sgMax))) : matmulThreads / teamSize),
    threads: overrides.threads ?? (cpu ? 64 : 128),
    maxBatch: overrides.maxBatch ?? 32,
  };
  return { gpu, device, adapterName, tuning };
}
