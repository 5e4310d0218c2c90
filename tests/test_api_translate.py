"""The WebUI dialect without a server: what a client's request becomes, what is reported as not
honoured, how keys are read and how the rate is kept."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import webuiapi
from PIL import Image

from pipeline.api.auth import RateLimiter, credentials
from pipeline.api.webui_schemas import Img2ImgRequest, Txt2ImgRequest
from pipeline.api.webui_translate import decode_image, sampler_of, translate, webui_field
from pipeline.errors import InvalidRequest


class Recorder:
    """Stands in for the client's HTTP session: keeps what it would have sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.auth = None

    def post(self, url: str, json: Any = None) -> Any:
        self.sent.append((url, json))
        raise RuntimeError("recorded")

    def get(self, url: str) -> Any:
        raise RuntimeError("recorded")


def payload_of(call: str, **arguments: Any) -> dict[str, Any]:
    """The JSON an unchanged webuiapi client sends for ``call`` with ``arguments``."""
    api = webuiapi.WebUIApi.__new__(webuiapi.WebUIApi)
    api.baseurl, api.default_sampler, api.default_scheduler, api.default_steps = (
        "http://x/sdapi/v1",
        "Euler a",
        "automatic",
        20,
    )
    api.session = Recorder()
    with pytest.raises(RuntimeError):
        getattr(api, call)(**arguments)
    return api.session.sent[0][1]


def test_an_unchanged_clients_defaults_are_not_reported_as_not_honoured() -> None:
    body = Txt2ImgRequest.model_validate(payload_of("txt2img", prompt="a fox", seed=3))
    translated = translate(body, model=None)
    assert translated.not_honoured == {}
    request = translated.request.validate()
    assert (request.prompt, request.seed, request.steps, request.sampler, request.count) == (
        "a fox",
        3,
        20,
        "Euler a",
        1,
    )
    body = Img2ImgRequest.model_validate(
        payload_of("img2img", images=[Image.new("RGB", (8, 8))], prompt="a fox")
    )
    assert translate(body, model=None, init_image="0" * 64).not_honoured == {}


@pytest.mark.parametrize(
    ("name", "scheduler", "runs", "reported"),
    [
        ("Euler a", "automatic", "Euler a", False),
        ("DPM++ 2M", "karras", "DPM++ 2M Karras", False),
        ("DPM++ 2M Karras", "Karras", "DPM++ 2M Karras", False),
        ("DPM++ 2M", None, "DPM++ 2M Karras", False),  # the WebUI 1.9+'s Automatic
        ("DPM++ 2M", "uniform", "DPM++ 2M", False),
        ("DPM++ 2M SDE", "automatic", "DPM++ 2M SDE Exponential", False),
        ("Euler a", "karras", "Euler a", True),  # no Karras variant
        ("DPM++ 2M", "exponential", "DPM++ 2M Karras", True),
        (None, "sgm_uniform", None, True),
    ],
)
def test_a_sampler_and_schedule_type_become_one_sampler(
    name: str | None, scheduler: str | None, runs: str | None, reported: bool
) -> None:
    sampler, not_honoured = sampler_of(name, scheduler)
    assert sampler == runs and bool(not_honoured) == reported


def test_errors_name_the_webuis_fields() -> None:
    assert [webui_field(name) for name in ("count", "sampler", "strength", "steps")] == [
        "batch_size",
        "sampler_name",
        "denoising_strength",
        "steps",
    ]
    with pytest.raises(InvalidRequest) as caught:
        decode_image("%%%", field_name="init_images")
    assert caught.value.field == "init_images"
    assert (
        decode_image("data:image/png;base64," + base64.b64encode(b"abc").decode(), field_name="x") == b"abc"
    )


def test_keys_are_read_from_bearer_and_basic() -> None:
    basic = base64.b64encode(b"alice:nk_secret").decode()
    assert credentials("Bearer nk_secret") == (None, "nk_secret")
    assert credentials(f"Basic {basic}") == ("alice", "nk_secret")
    for bad in (
        None,
        "",
        "Bearer",
        "Basic !!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Token x",
    ):
        assert credentials(bad) is None, bad


def test_the_rate_allows_a_burst_then_refills() -> None:
    limiter = RateLimiter(60)
    assert all(limiter.admit(1) == 0 for _ in range(60))
    wait = limiter.admit(1)
    assert 0 < wait <= 1.0
    assert limiter.admit(2) == 0, "each key has its own bucket"


def test_hires_fix_tiling_styles_and_the_vae_are_honoured() -> None:
    from pipeline.domain.prompt.styles import StyleBook

    book = StyleBook.from_csv('name,prompt,negative_prompt\nFilm,"{prompt}, film grain",blurry\n')
    body = Txt2ImgRequest.model_validate(
        payload_of(
            "txt2img",
            prompt="a fox <lora:detail:0.6>",
            negative_prompt="ugly",
            enable_hr=True,
            hr_scale=1.5,
            hr_upscaler="Latent (bicubic)",
            hr_second_pass_steps=7,
            denoising_strength=0.45,
            tiling=True,
            styles=["film"],
            override_settings={"sd_vae": "vae-ft-mse.safetensors"},
        )
    )
    translated = translate(body, model=None, styles=book)
    request = translated.request.with_seed(1).validate()
    assert translated.not_honoured == {}
    assert (request.hires_scale, request.hires_steps, request.hires_denoise) == (1.5, 7, 0.45)
    assert (request.hires_upscaler, request.tile, request.vae) == ("Latent (bicubic)", True, "vae-ft-mse")
    assert (
        request.prompt == "a fox <lora:detail:0.6>, film grain" and request.negative_prompt == "ugly, blurry"
    )
    assert request.styles == ("Film",) and request.loras == (("detail", 0.6),)
    # an upscaler model nanke lacks is reported, and the hires pass resizes with Lanczos
    esrgan = Txt2ImgRequest.model_validate(
        payload_of("txt2img", prompt="x", enable_hr=True, hr_upscaler="R-ESRGAN 4x+")
    )
    translated = translate(esrgan, model=None)
    assert translated.request.hires_upscaler == "Lanczos" and "hr_upscaler" in translated.not_honoured
    with pytest.raises(InvalidRequest) as unknown:
        translate(Txt2ImgRequest.model_validate({"prompt": "x", "styles": ["nope"]}), model=None, styles=book)
    assert webui_field(unknown.value.field) == "styles"
