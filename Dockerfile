# nanke on an NVIDIA GPU host: docker compose up -d (see compose.yaml and README: Running it for months).
# PyPI's torch==2.13.0 is the CUDA 13 build; the host needs an NVIDIA driver of version 580 or newer
# and the NVIDIA Container Toolkit.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    NANKE_DATA_DIR=/data \
    HF_HOME=/data/huggingface

RUN useradd --create-home --uid 1000 nanke
WORKDIR /app

# The dependencies first, so a change of nanke's code does not download PyTorch again
COPY pyproject.toml README.md ./
RUN mkdir -p bot pipeline storage migrations && touch main.py \
    && pip install ".[postgres]" && pip uninstall -y nanke

COPY . .
RUN pip install --no-deps . && mkdir -p /data && chown nanke:nanke /data

USER nanke
VOLUME ["/data"]
CMD ["python", "main.py", "run"]
