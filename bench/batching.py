"""How much batching compatible jobs saves: N requests one call each vs. in GPU batches.

    python -m bench.batching --arch sd1 --device cuda --requests 8 --batch 4 --steps 20
    python -m bench.batching --arch tiny --device cpu          # a quick run anywhere

``--arch sd1`` / ``sdxl`` build a randomly initialised model of the real SD 1.5 / SDXL
architecture from nanke's shipped configs: its compute is exactly the real model's, so the timings
are real timings (the images are noise). Both ways run in this process on the same engine, after a
warm-up; the script prints seconds per image for each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.models import build_model
from pipeline.domain.request import GenerationRequest
from pipeline.engine.core import Engine
from pipeline.engine.devices import pick_device, pick_dtype


def timed(engine: Engine, batches: list[list[GenerationRequest]]) -> float:
    """Wall time of running ``batches`` one after another."""
    sync = torch.cuda.synchronize if engine.device.type == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    for batch in batches:
        engine.generate(batch)
    sync()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", choices=("tiny", "sd1", "sdxl"), default="tiny")
    parser.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    parser.add_argument("--dtype", default="auto", help="auto, fp16, bf16 or fp32")
    parser.add_argument("--requests", type=int, default=8, help="how many one-image requests")
    parser.add_argument("--batch", type=int, default=4, help="images per GPU batch")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=None, help="square side (default: 512, SDXL 1024)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    device = pick_device(args.device)
    dtype = pick_dtype(device, args.dtype)
    side = args.size or (1024 if args.arch == "sdxl" else 512)
    with tempfile.TemporaryDirectory() as cache:
        model = build_model(args.arch, Path(cache))
        engine = Engine(model, device=device, dtype=dtype)
        requests = [
            GenerationRequest(
                prompt=f"a lighthouse at dusk, view {i}", width=side, height=side, steps=args.steps, seed=i
            )
            for i in range(args.requests)
        ]
        one_by_one = [[request] for request in requests]
        batched = [requests[i : i + args.batch] for i in range(0, len(requests), args.batch)]
        engine.generate(batched[0])  # warm-up: kernels, allocator, cuDNN autotuning
        sequential_s = statistics.median(timed(engine, one_by_one) for _ in range(args.repeats))
        batched_s = statistics.median(timed(engine, batched) for _ in range(args.repeats))

    per_image = len(requests)
    where = f"{engine.environment['device']} {engine.environment['dtype']}"
    print(f"{args.arch} {side}x{side}, {args.steps} steps, {where}")
    print(f"one request per call: {sequential_s / per_image:.3f} s/image")
    print(f"batches of {args.batch}:      {batched_s / per_image:.3f} s/image")
    print(f"speed-up from batching: {sequential_s / batched_s:.2f}x")


if __name__ == "__main__":
    main()
