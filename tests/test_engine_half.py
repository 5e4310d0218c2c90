"""Half precision without a GPU: the fp16/bf16 paths (dtype plumbing, the float32 VAE used to
decode, the NaN guard) run on the CPU behind the engine's test-only switch, so a dtype bug cannot
reach a GPU box unseen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pipeline.domain.models.catalog import ModelSpec
from pipeline.domain.models.loading import load_model
from pipeline.domain.request import GenerationRequest
from pipeline.engine.core import Engine
from pipeline.engine.results import EngineOptions
from pipeline.errors import DeviceError

CPU = torch.device("cpu")
HALF = EngineOptions(allow_half_on_cpu=True)


def half_engine(folder: Path, dtype: torch.dtype) -> Engine:
    model = load_model(ModelSpec("tiny-sd", str(folder), "diffusers"), device=CPU, dtype=dtype)
    return Engine(model, device=CPU, dtype=dtype, options=HALF)


def small(**changes: Any) -> GenerationRequest:
    return GenerationRequest(prompt="a red fox", width=64, height=64, steps=2, seed=3, **changes)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_precision_runs_end_to_end_behind_the_switch(tiny_model_dir: Path, dtype: torch.dtype) -> None:
    model = load_model(ModelSpec("tiny-sd", str(tiny_model_dir), "diffusers"), device=CPU, dtype=dtype)
    with pytest.raises(DeviceError, match="dtype"):
        Engine(model, device=CPU, dtype=dtype)

    engine = Engine(model, device=CPU, dtype=dtype, options=HALF)
    [result] = engine.generate([small(count=2)])

    assert engine.pipe.unet.dtype == dtype and engine.pipe.vae.dtype == dtype
    assert result.environment["dtype"] == str(dtype).removeprefix("torch.")
    assert len(result.images) == 2 and not result.nan_retry
    for image in result.images:
        assert np.asarray(image.image).max() > 0


def test_the_float32_vae_copy_decodes_exactly_as_casting_the_vae_did(tiny_model_dir: Path) -> None:
    engine = half_engine(tiny_model_dir, torch.float16)
    assert engine.pipe.vae.config.force_upcast
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    copied = engine._vae_decode(latents, float32=True)
    vae = engine.pipe.vae
    vae.to(dtype=torch.float32)  # what diffusers' force_upcast does around every decode
    try:
        with torch.no_grad():
            cast = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
    finally:
        vae.to(dtype=torch.float16)

    assert torch.equal(copied, cast)
    assert engine.pipe.vae.dtype == torch.float16, "the VAE itself stays in half precision"
    assert engine._vae_decode(latents, float32=True).data_ptr() != copied.data_ptr()


def test_a_half_precision_nan_decode_is_retried_with_the_float32_vae(tiny_model_dir: Path) -> None:
    engine = half_engine(tiny_model_dir, torch.bfloat16)  # bf16: decoded in bf16 first
    [expected] = engine.generate([small()])
    calls: list[torch.dtype] = []

    def nan_once(module: Any, args: Any, output: torch.Tensor) -> torch.Tensor | None:
        calls.append(output.dtype)
        return torch.full_like(output, float("nan")) if len(calls) == 1 else None

    engine.pipe.vae.decoder.register_forward_hook(nan_once)
    [result] = engine.generate([small()])

    assert result.nan_retry
    # The half VAE decoded first; the retry ran in float32 (on the copy, which carries the hook)
    assert calls == [torch.bfloat16, torch.float32]
    assert engine.pipe.vae.dtype == torch.bfloat16, "the VAE was not cast for the retry"
    assert np.asarray(result.images[0].image).max() > 0
    assert np.asarray(result.images[0].image).shape == np.asarray(expected.images[0].image).shape


def test_gpu_tuning_is_ignored_off_the_gpu_and_checked_by_name(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pipeline.engine.tuning import apply_tuning

    model = load_model(
        ModelSpec("tiny-sd", str(tiny_model_dir), "diffusers"), device=CPU, dtype=torch.float32
    )
    engine = Engine(model, device=CPU, options=EngineOptions(tuning=("channels_last", "compile")))
    assert "tuning" not in engine.environment
    assert "ignored on cpu" in caplog.text
    with pytest.raises(ValueError, match="turbo"):
        apply_tuning(model.pipe, CPU, ("turbo",))
