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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.domain.request import GenerationRequest
from pipeline.engine.core import Engine
from pipeline.engine.devices import pick_device, pick_dtype


@dataclass(frozen=True)
class RandomModel:
    """A loaded-model stand-in for a pipeline built in memory (fits ``pipeline.engine.ModelLike``)."""

    pipe: Any
    name: str
    architecture: str
    hash: str | None = None


def build_model(arch: str, cache: Path) -> RandomModel:
    """A pipeline with random weights: the tiny test model, or the real SD 1.5 / SDXL shapes."""
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    if arch == "tiny":
        from pipeline.engine.testmodel import make_test_model

        folder = make_test_model(cache / "tiny")
        return RandomModel(
            StableDiffusionPipeline.from_pretrained(folder, safety_checker=None), "tiny", "sd1"
        )

    from pipeline.domain.models.config_folder import shipped_configs
    from pipeline.domain.models.tokenizer import clip_tokenizer

    configs = shipped_configs(arch)  # type: ignore[arg-type]
    tokenizer_dir = clip_tokenizer(cache)
    if tokenizer_dir is None:
        raise SystemExit("the CLIP vocabulary is missing: pip install openai-clip==1.0.1")
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    parts: dict[str, Any] = {
        "unet": UNet2DConditionModel.from_config(configs["unet/config.json"]),
        "vae": AutoencoderKL.from_config(configs["vae/config.json"]),
        "text_encoder": CLIPTextModel(CLIPTextConfig(**configs["text_encoder/config.json"])),
        "tokenizer": tokenizer,
        "scheduler": EulerAncestralDiscreteScheduler.from_config(configs["scheduler/scheduler_config.json"]),
    }
    if arch == "sdxl":
        parts["text_encoder_2"] = CLIPTextModelWithProjection(
            CLIPTextConfig(**configs["text_encoder_2/config.json"])
        )
        parts["tokenizer_2"] = tokenizer
        return RandomModel(StableDiffusionXLPipeline(**parts), "random-sdxl", "sdxl")
    pipe = StableDiffusionPipeline(
        **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    return RandomModel(pipe, f"random-{arch}", arch)


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
