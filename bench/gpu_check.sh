#!/usr/bin/env bash
# One run on a lent GPU host (PyTorch with CUDA installed, no network, a few minutes of time):
# installs the carried wheels (bench/fetch_wheels.sh made them) and the project beside the host's
# PyTorch, runs the engine's CUDA tests, then the throughput benchmark plain and with the GPU
# speed-ups; the tables come last. About 6 minutes on an H100/H200.
#   bench/gpu_check.sh                    # results in $OUT (default /tmp/nanke-gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/nanke-gpu}
mkdir -p "$OUT"
DEPS="$OUT/deps"

# 1. What the host lacks, and the project itself, without touching its PyTorch
python3 -m pip install --quiet --no-deps --no-index --no-build-isolation --no-cache-dir --target "$DEPS" \
  .whl/* .
export PYTHONPATH="$DEPS:$PWD" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python3 - <<'PY' | tee "$OUT/environment.txt"
import torch, diffusers, transformers
print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPU", torch.cuda.get_device_name())
print("diffusers", diffusers.__version__, "transformers", transformers.__version__)
free, total = torch.cuda.mem_get_info()
print(f"memory {free / 2**30:.1f} GB free of {total / 2**30:.1f} GB")
PY

# 2. The engine on the GPU in fp16: the float32 VAE retry, noise and prompts made ahead, CUDA
#    graphs, each compared with a run without it; batched images against the same ones alone
timeout 150 python3 -m pytest -q -s -p no:cacheprovider tests/test_engine_cuda.py 2>&1 \
  | tail -15 | tee "$OUT/tests.txt" || true

# 3. Throughput: SD 1.5 architecture, 512x512, 20 steps, DPM++ 2M, fp16, 32 members x 4 images,
#    plain diffusers in the same run; then with the GPU speed-ups that keep the pixels
timeout 200 python3 -m bench.throughput --arch sd1 --device cuda --dtype fp16 --members 32 \
  --json "$OUT/throughput.json" > "$OUT/throughput.txt" 2> "$OUT/throughput.log" || true
timeout 200 python3 -m bench.throughput --arch sd1 --device cuda --dtype fp16 --members 32 \
  --tuning cuda_graphs,channels_last,fuse_qkv --baseline-images 4 --json "$OUT/throughput-tuned.json" \
  > "$OUT/throughput-tuned.txt" 2> "$OUT/throughput-tuned.log" || true
tail -3 "$OUT/throughput.log" "$OUT/throughput-tuned.log"
echo "== plain settings"; cat "$OUT/throughput.txt"
echo "== NANKE_GPU_TUNING=cuda_graphs,channels_last,fuse_qkv"; cat "$OUT/throughput-tuned.txt"
