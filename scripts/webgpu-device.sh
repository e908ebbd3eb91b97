#!/usr/bin/env bash
# The WebGPU backend's speed on a real GPU (issue 17): the `device` tool's machine (NVIDIA H200) has
# no Node.js and no registry, so everything it needs travels in the git-ignored folder device/
# (and dist/), named in the tool's `carry`:
#
#   here:    npm run build && scripts/webgpu-device.sh prepare      # fills device/ (~50 MB)
#   device:  run({ command: 'scripts/webgpu-device.sh run', carry: ['device', 'dist'], timeout_s: 540 })
#
# `run` unpacks node, points Dawn at the NVIDIA Vulkan driver (VK_DRIVER_FILES) through Chromium's
# Vulkan loader, makes random-weight models of the two target shapes with `llama2 init`, and
# benchmarks greedy decode and prefill with --backend webgpu: the 110M shape in float32 (target
# ≥ 1,500 tok/s) and the TinyLlama-1.1B shape in Q8_0 (target ≥ 300 tok/s), then a kernel-tuning
# sweep, then PyTorch/transformers generate on the same shapes for comparison. Results go to
# $OUT/webgpu-device.txt (and standard output). SMALL=1 runs the same steps on tiny shapes (a
# dry run here, on SwiftShader).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}

if [ "$mode" = prepare ]; then
  rm -rf device && mkdir -p device/lib device/node_modules/webgpu/dist
  xz -T0 -6 -c "$(command -v node)" > device/node.xz
  cp /usr/lib/chromium/libvulkan.so.1 device/lib/
  cp node_modules/webgpu/package.json node_modules/webgpu/index.js device/node_modules/webgpu/
  cp -r node_modules/webgpu/dist/linux-x64 device/node_modules/webgpu/dist/
  du -sh device dist
  exit 0
fi
if [ "$mode" != run ]; then echo "usage: $0 prepare|run" >&2; exit 2; fi

OUT=${OUT:-/tmp/webgpu-device}
mkdir -p "$OUT" device/bin models-device
log="$OUT/webgpu-device.txt"
exec > >(tee -a "$log") 2>&1
[ -x device/bin/node ] || xz -dc device/node.xz > device/bin/node && chmod +x device/bin/node
NODE="$PWD/device/bin/node"
mkdir -p node_modules && rm -rf node_modules/webgpu && cp -r device/node_modules/webgpu node_modules/webgpu
export LD_LIBRARY_PATH="$PWD/device/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -z "${SMALL:-}" ]; then export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}; fi
echo "== $(date -u) node $("$NODE" --version); nvidia-smi: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo none)"
L2="$NODE dist/src/cli/main.js"

if [ -n "${SMALL:-}" ]; then
  S110="--dim 64 --layers 2 --heads 8 --kv-heads 4 --vocab 512 --seq-len 128"; STINY="--dim 128 --layers 2 --heads 8 --kv-heads 2 --vocab 512 --seq-len 128"; N=32
else
  S110="--dim 768 --layers 12 --heads 12 --vocab 32000 --seq-len 1024"
  STINY="--dim 2048 --hidden-dim 5632 --layers 22 --heads 32 --kv-heads 4 --vocab 32000 --seq-len 2048 --unshared"; N=256
fi
[ -f models-device/s110.bin ] || $L2 init -o models-device/s110.bin $S110
[ -f models-device/tiny.bin ] || $L2 init -o models-device/tiny.bin --format v2 $STINY

bench() { echo "-- llama2 bench $*"; timeout 240 $L2 bench "$@" -n $N --prompt-len 16 -t 0 --repeats 3 --json || echo "(failed: $?)"; }
bench models-device/s110.bin --backend webgpu
bench models-device/tiny.bin --backend webgpu --quantize q8
# the kernels' tuning (threads per matmul workgroup, rows per workgroup) — LLAMA2_WEBGPU_TUNING is read by WebGpuDevice.open
for t in '{"matmulThreads":256,"itemsPerGroup":8}' '{"matmulThreads":64,"itemsPerGroup":2}' '{"subgroups":false,"teamSize":32}'; do
  LLAMA2_WEBGPU_TUNING="$t" bench models-device/s110.bin --backend webgpu
done
bench models-device/s110.bin --backend wasm

# PyTorch / transformers generate on the same shapes (random weights), greedy, for comparison
python3 - "$N" "${SMALL:-}" <<'PY' || echo "(transformers comparison failed)"
import sys, time, torch
from transformers import LlamaConfig, LlamaForCausalLM
n, small = int(sys.argv[1]), sys.argv[2] == '1'
shapes = {'110M fp32': dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=12, vocab_size=32000, max_position_embeddings=1024, dtype=torch.float32),
          'TinyLlama fp16': dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048, dtype=torch.float16)}
if small: shapes = {'small': dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=4, vocab_size=512, max_position_embeddings=128, dtype=torch.float32)}
dev = 'cuda' if torch.cuda.is_available() else 'cpu'
for name, s in shapes.items():
    dtype = s.pop('dtype')
    m = LlamaForCausalLM(LlamaConfig(**s)).to(dev, dtype).eval()
    ids = torch.randint(0, s['vocab_size'], (1, 16), device=dev)
    with torch.no_grad():
        m.generate(ids, max_new_tokens=8, do_sample=False, min_new_tokens=8)
        if dev == 'cuda': torch.cuda.synchronize()
        t = time.perf_counter(); m.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        if dev == 'cuda': torch.cuda.synchronize()
        dt = time.perf_counter() - t
    print(f'transformers generate {name} on {dev}: {n / dt:.1f} tok/s (greedy, {n} new tokens after 16)')
PY
echo "== done $(date -u)"
