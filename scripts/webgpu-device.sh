#!/usr/bin/env bash
# The WebGPU backend's speed on a real GPU (issue 17). The `device` tool's machine (NVIDIA H200) has
# no Node.js and no registry, so what it needs travels in the git-ignored folders device/ and dist/,
# named in the tool's `carry`:
#
#   here:    npm run build && scripts/webgpu-device.sh prepare   # device/: node, the runtime packages
#                                                                # (webgpu's linux-x64 Dawn), Chromium's libvulkan.so.1
#            scripts/webgpu-device.sh dry-run                    # the device's run, in a copy of what `carry` sends,
#                                                                # on tiny shapes on SwiftShader (~1-2 min)
#   device:  run({ command: 'scripts/webgpu-device.sh run', carry: ['device', 'dist'], timeout_s: 540 })
#
# `run` unpacks node and the packages, points Chromium's Vulkan loader at the NVIDIA driver
# (VK_DRIVER_FILES), then runs bench/webgpu.ts: random-weight models of the 110M (float32) and
# TinyLlama-1.1B (Q8_0) shapes made on the fly, greedy decode and prefill tok/s, the kernel
# tunings, the WebAssembly engine on every core; then PyTorch/transformers `generate` on the same
# shapes when its Python has torch. It prints one compact table and writes it to
# $OUT/webgpu-device.md (the log to $OUT/webgpu-device.log, the figures to $OUT/webgpu.json).
# It stays within ~500 s: steps that would start after BENCH_BUDGET seconds are skipped, and
# every program runs under a timeout. SMALL=1 runs the same steps on tiny shapes on SwiftShader.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}

SWIFTSHADER=/usr/lib/chromium
NVIDIA_ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json

if [ "$mode" = prepare ]; then
  set -e
  [ -f dist/bench/webgpu.js ] || { echo "prepare: run npm run build first" >&2; exit 1; }
  [ -f node_modules/webgpu/dist/linux-x64/dawn.node ] || { echo "prepare: node_modules/webgpu is missing (npm install)" >&2; exit 1; }
  rm -rf device && mkdir -p device/lib
  xz -T0 -6 -c "$(command -v node)" > device/node.xz
  cp "$SWIFTSHADER/libvulkan.so.1" device/lib/
  # the runtime packages (npm's production tree) and webgpu (an optional peer; its index.js needs
  # no other package), without its other platforms' builds
  packages="$(npm ls --omit=dev --all --parseable 2>/dev/null | sed -n "s|^$PWD/||p" | grep '^node_modules/' | sort -u) node_modules/webgpu"
  # shellcheck disable=SC2086
  tar -cJf device/node_modules.tar.xz --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' \
    --exclude='node_modules/webgpu/dist/linux-arm64' $packages
  du -sh device/* dist | sed 's/^/prepare: /'
  du -sch device dist | tail -1 | sed 's/^/prepare: carry /'
  exit 0
fi

if [ "$mode" = dry-run ]; then
  set -e
  [ -f device/node.xz ] || { echo "dry-run: run '$0 prepare' first" >&2; exit 1; }
  copy=$(mktemp -d /tmp/webgpu-device-dry.XXXXXX)
  # what the device tool sends: tracked and untracked-not-ignored files, plus the carried folders
  { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 cp --parents -t "$copy" 2>/dev/null || true
  cp -r device dist "$copy/"
  # the device has no node on its PATH: a `node` here fails loudly
  mkdir -p "$copy/.no-node" && printf '#!/bin/sh\necho "dry-run: the device has no node on its PATH" >&2; exit 127\n' > "$copy/.no-node/node" && chmod +x "$copy/.no-node/node"
  echo "dry-run: in $copy"
  (cd "$copy" && PATH="$copy/.no-node:$PATH" OUT="$copy/out" SMALL=1 bash scripts/webgpu-device.sh run)
  echo "dry-run: results in $copy/out:"; ls -la "$copy/out"
  exit 0
fi

if [ "$mode" != run ]; then echo "usage: $0 prepare|dry-run|run" >&2; exit 2; fi

OUT=${OUT:-/tmp/webgpu-device}
mkdir -p "$OUT"
exec > >(tee "$OUT/webgpu-device.log") 2>&1
started=$SECONDS
table="$OUT/webgpu-device.md"
: > "$table"

# node and the packages (xz, or Python's lzma where xz is missing)
mkdir -p device/bin
unxz_to() { if command -v xz >/dev/null; then xz -dc "$1" > "$2"; else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi; }
[ -x device/bin/node ] || { unxz_to device/node.xz device/bin/node && chmod +x device/bin/node; }
if [ ! -f node_modules/webgpu/index.js ]; then
  if command -v xz >/dev/null; then tar -xJf device/node_modules.tar.xz; else python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(".")' device/node_modules.tar.xz; fi
fi
NODE="$PWD/device/bin/node"

export LD_LIBRARY_PATH="$PWD/device/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -n "${SMALL:-}" ]; then
  export VK_ICD_FILENAMES="$SWIFTSHADER/vk_swiftshader_icd.json"; small=--small
else
  # the NVIDIA Vulkan driver: where the container runtime puts it, else the usual places
  if [ -z "${VK_DRIVER_FILES:-}" ]; then
    for icd in "$NVIDIA_ICD" /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
      if [ -f "$icd" ]; then VK_DRIVER_FILES=$icd; break; fi
    done
  fi
  export VK_DRIVER_FILES=${VK_DRIVER_FILES:-$NVIDIA_ICD}; small=
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do [ -d "$d" ] && LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"; done
fi
echo "== $(date -u '+%F %T') UTC; $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"); $(ldd --version 2>/dev/null | head -1)"
echo "== node $("$NODE" --version 2>&1); GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
icd=${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-}}
echo "== Vulkan driver: $icd $( [ -f "$icd" ] && tr -d '\n ' < "$icd" || echo '(MISSING)')"

# the WebGPU backend (bench/webgpu.ts); its table rows go to the table file as they come
BENCH_BUDGET=${BENCH_BUDGET:-240}
timeout -k 5 330 "$NODE" dist/bench/webgpu.js $small --budget "$BENCH_BUDGET" --json "$OUT/webgpu.json" | tee -a "$table"
echo "(bench/webgpu: exit ${PIPESTATUS[0]}, $(( SECONDS - started )) s since start)"
if ! grep -q '^WebGPU adapter' "$OUT/webgpu-device.log"; then
  # no adapter: what the Vulkan loader saw, for the next attempt
  echo "== no WebGPU adapter; the Vulkan loader (VK_LOADER_DEBUG=error,warn,driver):"
  VK_LOADER_DEBUG=error,warn,driver timeout -k 5 30 "$NODE" --input-type=module -e \
    "const g = (await import('webgpu')).create([]); const a = await g.requestAdapter(); console.log(a ? 'adapter: ' + a.info.vendor + ' ' + a.info.description : 'no adapter'); process.exit(0);" 2>&1 | head -60
fi

# PyTorch/transformers generate on the same shapes (random weights), greedy, for comparison
timeout -k 5 150 python3 - "${SMALL:-}" <<'PY' 2>&1 | tee -a "$table"
import sys, time
small = sys.argv[1] == '1'
try:
    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM
except Exception as e:
    print(f'| transformers | – | – | – | – | – | – | – | not available: {e}'); sys.exit(0)
dev = 'cuda' if torch.cuda.is_available() else 'cpu'
name = torch.cuda.get_device_name() if dev == 'cuda' else 'cpu'
print(f'(torch {torch.__version__}, transformers {transformers.__version__}, {name})')
shapes = [('110M', torch.float32, dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=12, vocab_size=32000, max_position_embeddings=1024)),
          ('TinyLlama-1.1B', torch.float16, dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048))]
if small:
    shapes = [('110M (small)', torch.float32, dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=8, vocab_size=512, max_position_embeddings=128))]
n, prompt = (16, 64) if small else (256, 512)
sync = torch.cuda.synchronize if dev == 'cuda' else (lambda: None)
def build(label, dtype, s):
    config = LlamaConfig(**s, tie_word_embeddings=label.startswith('110M'))
    torch.set_default_dtype(dtype)
    try:
        if hasattr(torch.device(dev), '__enter__'):  # torch >= 2.0: made on the device, not copied there
            with torch.device(dev):
                return LlamaForCausalLM(config).eval()
        return LlamaForCausalLM(config).to(dev).eval()
    finally:
        torch.set_default_dtype(torch.float32)
def measure(label, dtype, s):
    torch.manual_seed(0)
    m = build(label, dtype, s)
    ids = torch.randint(0, s['vocab_size'], (1, 16), device=dev)
    long = torch.randint(0, s['vocab_size'], (1, prompt), device=dev)
    with torch.no_grad():
        m.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)  # warm-up
        times = []
        for _ in range(3):
            sync(); t = time.perf_counter()
            m.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
            sync(); times.append(time.perf_counter() - t)
        pre = []
        for _ in range(3):
            sync(); t = time.perf_counter(); m(long); sync(); pre.append(time.perf_counter() - t)
    dt, pt = sorted(times)[1], sorted(pre)[1]
    return f'{n / dt:.0f} | {1000 * dt / n:.3f} | {prompt / pt:.0f} ({prompt})'
for label, dtype, s in shapes:
    row = f'| transformers generate ({dev}) | {label} | {str(dtype).replace("torch.", "")} | eager, KV cache |'
    try:
        print(f'{row} {measure(label, dtype, s)} | – |', flush=True)
    except Exception as e:
        print(f'{row} – | – | – | – | failed: {type(e).__name__}: {e}', flush=True)
    if dev == 'cuda': torch.cuda.empty_cache()
PY

echo
echo "== summary ($(( SECONDS - started )) s): decode = greedy tok/s after 16 prompt tokens; prefill = prompt tokens per second until their last logits"
echo '| engine | shape | weights | tuning | decode tok/s | ms/token | prefill tok/s (tokens) | load s |'
echo '|---|---|---|---|---|---|---|---|'
grep '^| ' "$table" | grep -v '^| engine \|^|---' || true
