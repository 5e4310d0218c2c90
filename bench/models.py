"""Models with random weights for the benchmarks: the tiny test model, or the real SD 1.5 / SDXL
architecture built from nanke's shipped configs (its compute is exactly the real model's, so the
timings are real timings; the images are noise)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


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


def model_folder(arch: str, cache: Path, *, dtype: Any) -> Path:
    """A diffusers folder of ``arch`` with random weights in ``dtype``, loadable like any model."""
    if arch == "tiny":
        from pipeline.engine.testmodel import make_test_model

        return make_test_model(cache / "tiny")
    folder = cache / f"random-{arch}"
    model = build_model(arch, cache)
    model.pipe.to(dtype=dtype)
    model.pipe.save_pretrained(folder, safe_serialization=True)
    return folder
