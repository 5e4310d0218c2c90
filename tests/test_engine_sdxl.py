"""The engine on a tiny random-weight SDXL pipeline: pooled embeddings, SDXL img2img and previews."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipeline.domain.request import GenerationRequest
from pipeline.engine.core import Engine
from pipeline.engine.results import StepProgress

pytest_plugins = ["tests.fixtures_models"]


@dataclass(frozen=True)
class TinyXL:
    pipe: Any
    name: str = "tiny-sdxl"
    hash: str | None = None
    architecture: str = "sdxl"


@pytest.fixture(scope="module")
def xl_engine(tiny_sdxl_dir: Path) -> Engine:
    from diffusers import StableDiffusionXLPipeline

    return Engine(TinyXL(StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir, add_watermarker=False)))


def request(**changes: Any) -> GenerationRequest:
    fields: dict[str, Any] = {
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "fog",
        "width": 64,
        "height": 64,
        "steps": 3,
        "sampler": "DPM++ 2M Karras",
        "seed": 42,
    }
    fields.update(changes)
    return GenerationRequest(**fields)


def test_sdxl_txt2img_batches_and_reproduces(xl_engine: Engine) -> None:
    seen: list[StepProgress] = []
    together = xl_engine.generate(
        [request(count=2), request(prompt="a (red:1.3) boat", seed=9)], on_step=seen.append, preview_every=3
    )
    alone = xl_engine.generate([request(prompt="a (red:1.3) boat", seed=9)])[0]

    assert [len(result.images) for result in together] == [2, 1]
    assert together[0].images[0].image.size == (64, 64)
    difference = np.abs(
        np.asarray(together[1].images[0].image, dtype=np.int16)
        - np.asarray(alone.images[0].image, dtype=np.int16)
    ).max()
    assert difference <= 2
    assert [progress.step for progress in seen] == [1, 2, 3]
    assert seen[-1].previews is not None and len(seen[-1].previews) == 3


def test_sdxl_variation_uses_the_sdxl_img2img_pipeline(xl_engine: Engine) -> None:
    from diffusers import StableDiffusionXLImg2ImgPipeline

    rng = np.random.default_rng(3)
    source = Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    sha = hashlib.sha256(source.tobytes()).hexdigest()

    [result] = xl_engine.generate(
        [request(mode="upscale", init_image=sha, strength=0.5, steps=4, width=96, height=96)],
        init_images={sha: source},
    )

    assert result.images[0].image.size == (96, 96)
    assert isinstance(xl_engine._img2img(), StableDiffusionXLImg2ImgPipeline)
