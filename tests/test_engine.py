"""The diffusers engine on the tiny random-weight model: real diffusers code, small images, few steps."""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.domain.request import GenerationRequest
from pipeline.domain.samplers import SAMPLER_NAMES
from pipeline.engine.core import Engine
from pipeline.engine.preview import latents_to_previews
from pipeline.engine.results import EngineOptions, GenerationResult, StepProgress
from pipeline.errors import BlackImageError, Cancelled, DeviceError, InvalidRequest, OutOfMemory


@dataclass(frozen=True)
class TinyModel:
    """What a model loader hands the engine."""

    pipe: Any
    name: str = "tiny-sd"
    hash: str | None = "0123456789"
    architecture: str = "sd1"


def _load(folder: Path) -> Any:
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(folder)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Engine:
    """An engine shared by tests that change nothing on it."""
    return Engine(TinyModel(_load(tiny_model_dir)))


@pytest.fixture
def fresh_engine(tiny_model_dir: Path) -> Engine:
    """An engine of its own, for tests that hook the model or turn on memory savers."""
    return Engine(TinyModel(_load(tiny_model_dir)))


def request(**changes: Any) -> GenerationRequest:
    fields: dict[str, Any] = {
        "prompt": "a red fox in the snow",
        "negative_prompt": "blurry",
        "width": 64,
        "height": 64,
        "steps": 3,
        "cfg_scale": 7.0,
        "sampler": "Euler a",
        "seed": 1234,
    }
    fields.update(changes)
    return GenerationRequest(**fields)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def assert_close(a: Image.Image, b: Image.Image, *, tolerance: int = 2) -> None:
    """Equal up to float noise from different batch shapes (at most ``tolerance`` of 255)."""
    assert a.size == b.size
    difference = np.abs(pixels(a) - pixels(b)).max()
    assert difference <= tolerance, f"images differ by up to {difference}/255"


def init_image(width: int = 64, height: int = 64, seed: int = 0) -> tuple[str, Image.Image]:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return hashlib.sha256(image.tobytes()).hexdigest(), image


@pytest.fixture
def unet_calls(fresh_engine: Engine) -> Iterator[list[int]]:
    """Batch size of every UNet evaluation of ``fresh_engine``."""
    calls: list[int] = []
    handle = fresh_engine.pipe.unet.register_forward_pre_hook(
        lambda module, args: calls.append(args[0].shape[0])
    )
    yield calls
    handle.remove()


# -- counts and seeds ----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 4])
def test_count_gives_that_many_images_with_consecutive_seeds(engine: Engine, count: int) -> None:
    [result] = engine.generate([request(count=count, seed=100)])

    assert isinstance(result, GenerationResult)
    assert [image.index for image in result.images] == list(range(count))
    assert result.seeds == [100 + i for i in range(count)]
    assert all(image.image.size == (64, 64) and image.image.mode == "RGB" for image in result.images)
    assert result.model_name == "tiny-sd" and result.model_hash == "0123456789"
    assert result.environment["dtype"] == "float32" and result.environment["device"] == "cpu"
    assert {"torch", "diffusers", "transformers"} <= set(result.environment)
    assert result.nan_retry is False and result.elapsed_s > 0


def test_image_i_equals_a_single_run_with_seed_plus_i(engine: Engine) -> None:
    [batch] = engine.generate([request(count=4, seed=500)])
    for i in (1, 3):
        [alone] = engine.generate([request(count=1, seed=500 + i)])
        assert_close(batch.images[i].image, alone.images[0].image)


def test_same_seed_gives_identical_pixels(engine: Engine) -> None:
    first = engine.generate([request(count=2)])[0]
    second = engine.generate([request(count=2)])[0]
    for a, b in zip(first.images, second.images, strict=True):
        assert np.array_equal(pixels(a.image), pixels(b.image))


def test_different_seeds_give_different_images(engine: Engine) -> None:
    [result] = engine.generate([request(count=2)])
    assert np.abs(pixels(result.images[0].image) - pixels(result.images[1].image)).mean() > 1


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M SDE Karras", "DPM++ SDE", "DPM2 a"])
def test_batch_of_two_requests_equals_each_alone(engine: Engine, sampler: str) -> None:
    fox = request(sampler=sampler, count=2, seed=7)
    owl = request(sampler=sampler, prompt="an owl at night", negative_prompt="", seed=99)

    together = engine.generate([fox, owl])
    fox_alone = engine.generate([fox])[0]
    owl_alone = engine.generate([owl])[0]

    assert [result.request for result in together] == [fox, owl]
    assert together[0].seeds == [7, 8] and together[1].seeds == [99]
    for mixed, alone in zip(
        together[0].images + together[1].images, fox_alone.images + owl_alone.images, strict=True
    ):
        assert_close(mixed.image, alone.image)


# -- progress and cancel -------------------------------------------------------------------------


def test_progress_is_reported_once_per_step(engine: Engine) -> None:
    seen: list[StepProgress] = []
    engine.generate([request(steps=4)], on_step=seen.append)

    assert [progress.step for progress in seen] == [1, 2, 3, 4]
    assert {progress.total_steps for progress in seen} == {4}
    assert all(later.elapsed_s >= earlier.elapsed_s for earlier, later in itertools.pairwise(seen))
    assert seen[-1].fraction == 1.0
    assert all(progress.previews is None for progress in seen)


def test_previews_come_every_n_steps_for_every_image(engine: Engine) -> None:
    seen: list[StepProgress] = []
    engine.generate(
        [request(steps=4, count=2), request(steps=4, seed=5)], on_step=seen.append, preview_every=2
    )

    with_previews = [progress.step for progress in seen if progress.previews]
    assert with_previews == [2, 4]
    previews = seen[1].previews
    assert previews is not None and set(previews) == {(0, 0), (0, 1), (1, 0)}
    assert all(image.size == (8, 8) and image.mode == "RGB" for image in previews.values())
    assert seen[1].preview is previews[(0, 0)]


def test_cancel_after_step_two_stops_the_denoising(fresh_engine: Engine, unet_calls: list[int]) -> None:
    seen: list[StepProgress] = []

    with pytest.raises(Cancelled):
        fresh_engine.generate([request(steps=6)], on_step=seen.append, should_cancel=lambda: len(seen) >= 2)

    assert [progress.step for progress in seen] == [1, 2]
    assert len(unet_calls) == 2


def test_cancel_before_start_runs_nothing(fresh_engine: Engine, unet_calls: list[int]) -> None:
    with pytest.raises(Cancelled):
        fresh_engine.generate([request()], should_cancel=lambda: True)
    assert unet_calls == []


# -- img2img and upscale -------------------------------------------------------------------------


def test_img2img_makes_variations_at_the_requested_size(engine: Engine) -> None:
    sha, source = init_image(96, 80)
    variation = request(mode="img2img", init_image=sha, strength=0.6, steps=4, count=2)
    seen: list[StepProgress] = []

    [result] = engine.generate([variation], init_images={sha: source}, on_step=seen.append)

    assert [image.image.size for image in result.images] == [(64, 64), (64, 64)]
    assert len(seen) == 2 and seen[-1].total_steps == 2  # int(4 * 0.6) steps of 4
    again = engine.generate([variation], init_images={sha: source})[0]
    assert np.array_equal(pixels(result.images[1].image), pixels(again.images[1].image))
    [alone] = engine.generate(
        [request(mode="img2img", init_image=sha, strength=0.6, steps=4, seed=1235)], init_images={sha: source}
    )
    assert_close(result.images[1].image, alone.images[0].image)


def test_img2img_batches_requests_with_different_init_images(engine: Engine) -> None:
    first_sha, first = init_image(seed=1)
    second_sha, second = init_image(seed=2)
    requests = [
        request(mode="img2img", init_image=first_sha, strength=0.5, steps=4),
        request(mode="img2img", init_image=second_sha, strength=0.5, steps=4, seed=3),
    ]
    results = engine.generate(requests, init_images={first_sha: first, second_sha: second})
    alone = engine.generate(requests[1:], init_images={second_sha: second})
    assert_close(results[1].images[0].image, alone[0].images[0].image)


def test_upscale_resizes_then_runs_a_tiled_detail_pass(fresh_engine: Engine) -> None:
    vae = fresh_engine.pipe.vae
    vae.tile_sample_min_size, vae.tile_latent_min_size = 64, 8  # make the tiny VAE tile at 128 px
    fresh_engine.options = EngineOptions(tile_vae_above_pixels=64 * 64)
    sha, source = init_image(64, 64)

    [result] = fresh_engine.generate(
        [request(mode="upscale", init_image=sha, strength=0.3, steps=4, width=128, height=128)],
        init_images={sha: source},
    )

    assert result.images[0].image.size == (128, 128)
    assert vae.use_tiling
    fresh_engine.generate([request()])
    assert not vae.use_tiling  # small outputs are decoded whole again


def test_img2img_needs_its_init_image_and_one_step(engine: Engine) -> None:
    sha, source = init_image()
    with pytest.raises(ValueError, match=r"requests\[0\]\.init_image"):
        engine.generate([request(mode="img2img", init_image=sha, strength=0.5)], init_images={})
    with pytest.raises(InvalidRequest, match="strength"):
        engine.generate(
            [request(mode="img2img", init_image=sha, strength=0.2, steps=3)], init_images={sha: source}
        )


# -- samplers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_runs(engine: Engine, sampler: str) -> None:
    [result] = engine.generate([request(sampler=sampler, steps=2, cfg_scale=5.0)])
    image = pixels(result.images[0].image)
    assert image.shape == (64, 64, 3) and image.max() > 0


# -- input checks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("steps", 4), ("width", 128), ("sampler", "DDIM"), ("cfg_scale", 5.0), ("clip_skip", 2)],
)
def test_incompatible_requests_are_rejected_naming_the_field(engine: Engine, field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"requests\[1\]\.{field}"):
        engine.generate([request(), request(**{field: value})])


def test_requests_need_a_seed_and_must_not_be_empty(engine: Engine) -> None:
    with pytest.raises(InvalidRequest, match="seed"):
        engine.generate([request(seed=None)])
    with pytest.raises(ValueError, match="requests"):
        engine.generate([])
    with pytest.raises(ValueError, match="preview_every"):
        engine.generate([request()], preview_every=0)


def test_engine_refuses_half_precision_on_the_cpu(tiny_model_dir: Path) -> None:
    with pytest.raises(DeviceError, match="dtype"):
        Engine(TinyModel(_load(tiny_model_dir)), device="cpu", dtype=torch.float16)


def test_engine_checks_the_architecture(tiny_model_dir: Path) -> None:
    pipe = _load(tiny_model_dir)
    with pytest.raises(ValueError, match="architecture"):
        Engine(TinyModel(pipe, architecture="sdxl"))
    with pytest.raises(ValueError, match="architecture"):
        Engine(TinyModel(pipe, architecture="flux"))


# -- NaN / black guard ---------------------------------------------------------------------------


def _poison_decoder(engine: Engine, *, calls: int | None, value: float = float("nan")) -> list[int]:
    """Make the VAE decoder return ``value`` for its first ``calls`` calls (all calls if None)."""
    seen: list[int] = []

    def hook(module: Any, args: Any, output: torch.Tensor) -> torch.Tensor | None:
        seen.append(output.shape[0])
        if calls is None or len(seen) <= calls:
            return torch.full_like(output, value)
        return None

    engine.pipe.vae.decoder.register_forward_hook(hook)
    return seen


def test_nan_output_is_retried_in_float32(fresh_engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    expected = fresh_engine.generate([request(count=2)])[0]
    decoder_calls = _poison_decoder(fresh_engine, calls=1)

    with caplog.at_level(logging.WARNING, logger="pipeline.engine"):
        [result] = fresh_engine.generate([request(count=2)])

    assert result.nan_retry is True
    assert decoder_calls == [2, 2]
    assert "float32" in caplog.text
    for got, want in zip(result.images, expected.images, strict=True):
        assert np.array_equal(pixels(got.image), pixels(want.image))


def test_black_output_is_retried_too(fresh_engine: Engine) -> None:
    _poison_decoder(fresh_engine, calls=1, value=-1.0)  # -1 is black after denormalising
    [result] = fresh_engine.generate([request()])
    assert result.nan_retry is True and pixels(result.images[0].image).max() > 0


def test_nan_that_stays_raises_black_image_error(fresh_engine: Engine) -> None:
    _poison_decoder(fresh_engine, calls=None)
    with pytest.raises(BlackImageError, match="NANKE_DTYPE=fp32"):
        fresh_engine.generate([request()])


def test_nan_latents_from_the_unet_raise_without_a_vae_retry(fresh_engine: Engine) -> None:
    fresh_engine.pipe.unet.register_forward_hook(
        lambda module, args, output: (torch.full_like(output[0], float("nan")),)
    )
    decoder_calls = _poison_decoder(fresh_engine, calls=0)
    with pytest.raises(BlackImageError, match="denoising"):
        fresh_engine.generate([request()])
    # The one decode ran beside the latents' check (the host waits for the GPU once), no retry
    assert decoder_calls == [1]


# -- out of memory -------------------------------------------------------------------------------


def _oom_above(
    engine: Engine,
    rows: int,
    error: type[Exception] = torch.OutOfMemoryError,
    message: str = "CUDA out of memory. Tried to allocate 2.00 GiB",
) -> list[int]:
    """Make the UNet run out of memory whenever its batch has more than ``rows`` rows."""
    calls: list[int] = []

    def hook(module: Any, args: Any) -> None:
        calls.append(args[0].shape[0])
        if args[0].shape[0] > rows:
            raise error(message)

    engine.pipe.unet.register_forward_pre_hook(hook)
    return calls


def test_out_of_memory_turns_on_savers_then_splits_the_batch(fresh_engine: Engine, engine: Engine) -> None:
    requests = [request(count=3, steps=2), request(seed=77, steps=2)]
    expected = engine.generate(requests)
    calls = _oom_above(fresh_engine, rows=2)  # one image with CFG is 2 rows
    seen: list[StepProgress] = []

    results = fresh_engine.generate(requests, on_step=seen.append)

    # 8 rows (fails), again with savers (fails), 4 + 4 (fail), then 2 rows at a time.
    assert calls[:3] == [8, 8, 4] and set(calls[3:]) <= {2, 4}
    assert fresh_engine.pipe.vae.use_slicing and fresh_engine.pipe.vae.use_tiling
    assert seen[-1].part == seen[-1].parts == 4
    for got, want in zip(results, expected, strict=True):
        assert got.seeds == want.seeds
        for a, b in zip(got.images, want.images, strict=True):
            assert_close(a.image, b.image)


def test_mps_style_out_of_memory_is_handled_too(fresh_engine: Engine) -> None:
    class MPSError(RuntimeError):
        pass

    _oom_above(
        fresh_engine, rows=2, error=MPSError, message="MPS backend out of memory (MPS allocated: 9 GB)"
    )
    [result] = fresh_engine.generate([request(count=2, steps=2)])
    assert len(result.images) == 2


def test_out_of_memory_with_one_image_raises_a_clear_error(fresh_engine: Engine) -> None:
    _oom_above(fresh_engine, rows=0)
    with pytest.raises(OutOfMemory, match="smaller size"):
        fresh_engine.generate([request(count=2, steps=2)])


def test_other_errors_are_not_mistaken_for_out_of_memory(fresh_engine: Engine) -> None:
    def hook(module: Any, args: Any) -> None:
        raise RuntimeError("shape mismatch")

    fresh_engine.pipe.unet.register_forward_pre_hook(hook)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        fresh_engine.generate([request()])
    assert not fresh_engine.pipe.vae.use_slicing


# -- previews ------------------------------------------------------------------------------------


def test_latent_previews_are_small_rgb_images() -> None:
    latents = torch.randn(2, 4, 8, 12)
    previews = latents_to_previews(latents, "sdxl")
    assert previews is not None and [image.size for image in previews] == [(12, 8), (12, 8)]
    assert latents_to_previews(torch.randn(1, 16, 8, 8), "sd1") is None


# -- prompts -------------------------------------------------------------------------------------


def test_long_and_weighted_prompts_reach_the_model(engine: Engine) -> None:
    plain = engine.generate([request(prompt="a fox")])[0].images[0].image
    weighted = engine.generate([request(prompt="a (fox:1.6)")])[0].images[0].image
    long = engine.generate([request(prompt="a fox, " * 40)])[0].images[0].image  # > 75 tokens

    assert not np.array_equal(pixels(plain), pixels(weighted))
    assert long.size == (64, 64)


def test_engine_runs_a_model_from_the_loader(tiny_model_dir: Path, tmp_path: Path) -> None:
    from pipeline.domain.models.catalog import spec_for_path
    from pipeline.domain.models.loading import load_model

    spec = spec_for_path(tiny_model_dir)
    assert spec is not None
    loaded = load_model(spec, device=torch.device("cpu"), dtype=torch.float32, cache_dir=tmp_path)
    engine = Engine(loaded, device=torch.device("cpu"), dtype=torch.float32)

    [result] = engine.generate([request(steps=2)])

    assert result.model_name == loaded.name and result.model_hash == loaded.hash
    assert len(result.model_hash or "") == 10


# -- per-step noise drawn ahead -------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"sampler": "Euler a", "count": 3},
        {"sampler": "DPM2 a", "count": 2},
        {"sampler": "DPM++ 2M SDE Karras", "count": 2},
        {"sampler": "Euler a", "count": 2, "mode": "img2img", "strength": 0.6},
        {"sampler": "Euler a", "count": 2, "hires_scale": 1.5, "hires_steps": 2, "hires_denoise": 0.5},
    ],
    ids=["euler-a", "dpm2-a", "dpm-2m-sde", "img2img", "hires"],
)
def test_noise_drawn_ahead_makes_the_same_pixels(
    fresh_engine: Engine, changes: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-step noise drawn a step ahead in a thread (on by default on CUDA) gives the images
    of a run without it, also when the generators are used again after the loop (the hires pass)."""
    from pipeline.engine import noise

    ahead: list[int] = []
    real_close = noise.NoiseAhead.close

    def close(self: noise.NoiseAhead) -> None:
        real_close(self)
        ahead.append(self.ahead)

    monkeypatch.setattr(noise.NoiseAhead, "close", close)
    init: dict[str, Image.Image] = {}
    if changes.get("mode") == "img2img":
        sha, source = init_image(64, 64)
        changes = {**changes, "init_image": sha}
        init = {sha: source}
    asked = request(steps=4, **changes)

    fresh_engine.options = EngineOptions(noise_ahead=False)
    [plain] = fresh_engine.generate([asked], init_images=init)
    assert ahead == []
    fresh_engine.options = EngineOptions(noise_ahead=True)
    [drawn_ahead] = fresh_engine.generate([asked], init_images=init)

    assert ahead and sum(ahead) > 0, "the noise was drawn ahead"
    for one, other in zip(plain.images, drawn_ahead.images, strict=True):
        assert np.array_equal(np.asarray(one.image), np.asarray(other.image))
