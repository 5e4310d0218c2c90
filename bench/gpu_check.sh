#!/usr/bin/env bash
# One run on a lent GPU host (PyTorch with CUDA installed, no network, a few minutes of time):
# installs the carried wheels (bench/fetch_wheels.sh made them) beside the host's PyTorch,
# runs the engine's tests on the GPU, then the throughput benchmark; the table comes last.
#   bench/gpu_check.sh                    # results in $OUT (default /tmp/nanke-gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/nanke-gpu}
mkdir -p "$OUT"
DEPS="$OUT/deps"

# 1. What the host lacks, without touching its PyTorch
python3 -m pip install --quiet --no-deps --no-index --no-build-isolation --target "$DEPS" .whl/*
export PYTHONPATH="$DEPS:$PWD" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python3 - <<'PY' | tee "$OUT/environment.txt"
import torch, diffusers, transformers
print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPU", torch.cuda.get_device_name())
print("diffusers", diffusers.__version__, "transformers", transformers.__version__)
free, total = torch.cuda.mem_get_info()
print(f"memory {free / 2**30:.1f} GB free of {total / 2**30:.1f} GB")
PY

# 2. The engine on the GPU: fp16, the VAE's float32 copy, the NaN guard, batching, every sampler
timeout 150 python3 -m pytest -q -p no:cacheprovider -x tests/test_engine.py tests/test_engine_half.py \
  tests/test_engine_sdxl.py 2>&1 | tail -5 | tee "$OUT/tests.txt" || true

# 3. Throughput: SD 1.5 architecture, 512x512, 20 steps, DPM++ 2M, fp16, 32 members x 4 images,
#    plain diffusers in the same run; then with the GPU speed-ups
timeout 200 python3 -m bench.throughput --arch sd1 --device cuda --dtype fp16 --members 32 \
  --json "$OUT/throughput.json" | tee "$OUT/throughput.txt"
timeout 200 python3 -m bench.throughput --arch sd1 --device cuda --dtype fp16 --members 32 \
  --tuning channels_last,fuse_qkv --baseline-images 4 --json "$OUT/throughput-tuned.json" \
  | tee "$OUT/throughput-tuned.txt"
