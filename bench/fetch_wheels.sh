#!/usr/bin/env bash
# Download, on a machine with internet, the wheels a GPU host without network lacks to run
# bench/gpu_check.sh (it has PyTorch and CUDA; not diffusers, SQLAlchemy, Alembic, ...).
#   bench/fetch_wheels.sh 3.12      # the GPU host's Python version (python3 --version there)
# They land in .whl/ (git ignores it); carry that folder to the host with the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:?usage: bench/fetch_wheels.sh PYTHON_VERSION (such as 3.12)}
# The versions nanke is tested with (pyproject.toml pins the first ones); numpy, Pillow, requests,
# filelock, fsspec, PyYAML, tqdm, packaging and typing_extensions come with PyTorch images; scipy
# (only the LMS sampler needs it) is left out to keep the carried folder small.
WHEELS=(
  diffusers==0.42.1 transformers==5.24.0 tokenizers==0.23.3 huggingface_hub==2.4.0 hf-xet==1.8.0
  safetensors==0.8.0 accelerate==1.15.0 SQLAlchemy==2.1.9 greenlet alembic==1.20.1 Mako==1.4.3
  MarkupSafe==3.0.4 python-dotenv==1.2.4 torchsde==0.2.6 trampoline==0.1.2
  regex==2026.11.19 pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 psutil==7.2.2
  importlib_metadata==10.2.0 zipp==4.1.2 httpx httpcore anyio h11 certifi idna sniffio click typer
  shellingham rich markdown-it-py mdurl peft==0.21.2
)
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version "$PY" \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d .whl "${WHEELS[@]}"
# CLIP's vocabulary (single-file checkpoints and the random models use it) comes only as a source archive
python3 -m pip download --no-deps --no-binary=:all: -d .whl openai-clip==1.0.1
du -sh .whl
