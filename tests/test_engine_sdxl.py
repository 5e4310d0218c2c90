"""The engine on a tiny random-weight SDXL pipeline: pooled embeddings, SDXL img2img and previews."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipeline.engine import Engine, StepProgress
from pipeline.request import GenerationRequest


@dataclass(frozen=True)
class TinyXL:
    pipe: Any
    name: str = "tiny-sdxl"
    hash: str | None = None
    architecture: str = "sdxl"


def tiny_sdxl_pipeline(tokenizer_dir: Path) -> Any:
    """A few-thousand-parameter SDXL pipeline with the real layout (two text encoders, text_time)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from pipeline.testmodel import write_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=128,
    )
    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=2,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=3,
        pad_token_id=1,
        vocab_size=1000,
        projection_dim=32,
    )
    write_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(config),
        text_encoder_2=CLIPTextModelWithProjection(config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )


@pytest.fixture(scope="module")
def xl_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return Engine(TinyXL(tiny_sdxl_pipeline(tmp_path_factory.mktemp("sdxl-tokenizer"))))


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
