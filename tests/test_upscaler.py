"""The dedicated upscaler (NANKE_UPSCALER) on a tiny random-weight x4 upscaler built here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from pipeline.app import App
from pipeline.engine.testmodel import write_tokenizer
from pipeline.engine.upscaler import UpscalerEngine
from pipeline.errors import ModelLoadError
from pipeline.queue.jobs import Requester
from pipeline.settings import load_settings
from tests.helpers_services import Recorder, Services, parameters_of, run_job, settings_env, small_request

LOCAL = Requester(name="local")


@pytest.fixture(scope="module")
def tiny_upscaler_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ``StableDiffusionUpscalePipeline`` (x4) with random weights, as a diffusers folder."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("models") / "tiny-x4-upscaler"
    write_tokenizer(folder / "tokenizer")
    torch.manual_seed(0)
    pipe = StableDiffusionUpscalePipeline(
        unet=UNet2DConditionModel(
            block_out_channels=(32, 32, 64),
            layers_per_block=1,
            sample_size=32,
            in_channels=7,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            use_linear_projection=True,
            only_cross_attention=(True, True, False),
            num_class_embeds=100,
        ),
        vae=AutoencoderKL(
            block_out_channels=(32, 32, 64),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            latent_channels=4,
        ),
        text_encoder=CLIPTextModel(
            CLIPTextConfig(
                hidden_size=32,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                vocab_size=1000,
            )
        ),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=350,
    )
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture
def services(tmp_path: Path, tiny_model_dir: Path, tiny_upscaler_dir: Path) -> Iterator[Services]:
    env = settings_env(tmp_path / "data", tiny_model_dir, NANKE_UPSCALER=str(tiny_upscaler_dir))
    built = Services(App(load_settings(env)).open())
    yield built
    built.close()


def test_upscales_go_through_the_dedicated_upscaler(services: Services, tiny_upscaler_dir: Path) -> None:
    parent = run_job(services, small_request(count=2))
    child = services.jobs.submit_child(parent.id, action="upscale", index=1, requester=LOCAL)
    recorder = Recorder()
    services.runner.run_and_save([child.id], events=recorder)

    done = services.jobs.get(child.id)
    assert done.status == "done", done.error
    [image] = done.images
    assert (image.width, image.height) == (128, 128)
    assert done.model_name == tiny_upscaler_dir.name
    assert f"Model: {tiny_upscaler_dir.name}" in parameters_of(services.store.read(image.path))
    assert recorder.steps_of(child.id) == list(range(1, done.request.steps + 1))
    # Everything else still runs on the main model.
    variation = services.jobs.submit_child(parent.id, action="variation", index=0, requester=LOCAL)
    services.runner.run_and_save([variation.id])
    assert services.jobs.get(variation.id).model_name == "tiny-sd"


def test_an_upscale_by_the_upscaler_reproduces(services: Services) -> None:
    from pipeline.queue.reproduce import reproduce_job

    parent = run_job(services, small_request())
    child = services.jobs.submit_child(parent.id, action="upscale", requester=LOCAL)
    services.runner.run_and_save([child.id])
    assert reproduce_job(services.jobs, services.engines, child.id).identical


def test_cancel_stops_the_upscaler(services: Services) -> None:
    parent = run_job(services, small_request())
    child = services.jobs.submit_child(parent.id, action="upscale", requester=LOCAL)

    class CancelAtFirstStep(Recorder):
        def progress(self, job_id: int, step: int, total: int, elapsed_s: float) -> None:
            super().progress(job_id, step, total, elapsed_s)
            services.jobs.cancel(job_id)

    services.runner.run_and_save([child.id], events=CancelAtFirstStep())
    assert services.jobs.get(child.id).status == "cancelled"


def test_a_model_that_is_not_an_upscaler_is_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="not an upscaler"):
        UpscalerEngine.load(str(tiny_model_dir), device=torch.device("cpu"), dtype=torch.float32)
