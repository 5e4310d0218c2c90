"""LoRAs, embeddings, VAEs, hires fix and seamless tiles on the tiny SD 1.x and SDXL pipelines.

Every file is made here with random weights in the layouts people share (kohya/WebUI and
diffusers/PEFT LoRAs, WebUI embeddings, an LDM-layout VAE file and a diffusers VAE folder), and
goes through the real loading code: the resource folders, diffusers' LoRA and textual-inversion
loaders, and the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.domain.models import ModelCatalog, load_model
from pipeline.domain.models.resources import Resources, trigger_words
from pipeline.domain.prompt.embeddings import encode_prompt_batch
from pipeline.domain.request import GenerationRequest
from pipeline.engine.core import Engine
from pipeline.engine.testmodel import make_test_embedding, make_test_lora, make_test_vae
from pipeline.errors import InvalidRequest, ResourceMismatch, ResourceNotFound

pytest_plugins = ["tests.fixtures_models"]


@dataclass
class Setup:
    engine: Engine
    root: Path
    resources: Resources


def _setup(model_dir: Path, root: Path) -> Setup:
    spec = ModelCatalog(str(model_dir)).resolve(None)
    model = load_model(spec, device=torch.device("cpu"), dtype=torch.float32)
    pipe = model.pipe
    make_test_lora(root / "Lora" / "detail.safetensors", pipe, layout="kohya", seed=5)
    make_test_lora(root / "Lora" / "sub" / "style-peft.safetensors", pipe, layout="peft", seed=6)
    make_test_embedding(root / "embeddings" / "EasyNeg.safetensors", pipe, vectors=2)
    make_test_embedding(root / "embeddings" / "badhands.pt", pipe, vectors=1, seed=4)
    make_test_vae(root / "VAE" / "mse.safetensors", pipe, layout="ldm")
    make_test_vae(root / "VAE" / "fixed", pipe, layout="diffusers", seed=7)
    resources = Resources.of(
        lora_dir=root / "Lora",
        embeddings_dir=root / "embeddings",
        vae_dir=root / "VAE",
        cache_dir=root / "cache",
    )
    return Setup(Engine(model, resources=resources), root, resources)


@pytest.fixture(scope="module")
def sd1(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return _setup(tiny_model_dir, tmp_path_factory.mktemp("sd1-resources"))


@pytest.fixture(scope="module")
def sdxl(tiny_sdxl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return _setup(tiny_sdxl_dir, tmp_path_factory.mktemp("sdxl-resources"))


def _request(prompt: str = "a red fox", **fields: object) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, width=64, height=64, steps=3, seed=11, **fields)  # type: ignore[arg-type]


def _run(setup: Setup, request: GenerationRequest) -> tuple[np.ndarray, dict[str, str]]:
    result = setup.engine.generate([request])[0]
    return np.asarray(result.images[0].image).astype(np.int16), result.resources


# -- LoRA ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
def test_loras_of_both_layouts_change_the_image_and_weight_zero_is_no_lora(
    arch: str, request: pytest.FixtureRequest
) -> None:
    setup: Setup = request.getfixturevalue(arch)
    plain, plain_resources = _run(setup, _request())
    assert plain_resources == {}
    kohya, kohya_resources = _run(setup, _request("a red fox, <lora:detail:0.9>"))
    peft, _ = _run(setup, _request("a red fox <lora:style-peft>"))
    zero, zero_resources = _run(setup, _request("a red fox, <lora:detail:0>"))
    assert np.abs(kohya - plain).max() > 10 and np.abs(peft - plain).max() > 10
    assert np.array_equal(zero, plain) and zero_resources == {}
    assert kohya_resources["Lora hashes"].startswith("detail: ")
    assert len(kohya_resources["Lora hashes"].split(": ")[1]) == 12
    # Both LoRAs at once: neither one alone, and off again gives the plain image back
    both, both_resources = _run(setup, _request("a red fox, <lora:detail:0.9> <lora:STYLE-PEFT:1>"))
    assert not np.array_equal(both, kohya) and not np.array_equal(both, peft)
    assert both_resources["Lora hashes"].count(":") == 2
    assert np.array_equal(_run(setup, _request())[0], plain)
    if arch == "sdxl":
        assert "unet" in setup.engine.pipe.get_list_adapters()


def test_the_cache_switches_loras_without_loading_them_or_the_checkpoint_again(sd1: Setup) -> None:
    pipe, unet = sd1.engine.pipe, sd1.engine.pipe.unet
    _run(sd1, _request("<lora:detail:1> a fox"))
    loads = sd1.engine.choices.loras.loads
    first, _ = _run(sd1, _request("<lora:style-peft:1> a fox"))
    _run(sd1, _request("<lora:detail:1> a fox"))
    again, _ = _run(sd1, _request("<lora:style-peft:1> a fox"))
    assert sd1.engine.choices.loras.loads <= loads + 1
    assert np.array_equal(first, again)
    assert sd1.engine.pipe is pipe and sd1.engine.pipe.unet is unet


def test_a_lora_for_another_architecture_is_refused_by_name(sd1: Setup, sdxl: Setup) -> None:
    make_test_lora(sd1.root / "Lora" / "xl-only.safetensors", sdxl.engine.pipe, layout="kohya")
    make_test_lora(sdxl.root / "Lora" / "sd1-only.safetensors", sd1.engine.pipe, layout="peft")
    with pytest.raises(ResourceMismatch, match="sd1-only"):
        sdxl.engine.generate([_request("<lora:sd1-only:1> a fox")])
    with pytest.raises(ResourceMismatch) as refused:
        sd1.engine.generate([_request("<lora:xl-only:1> a fox")])
    assert "xl-only" in str(refused.value) and "made for" in str(refused.value)
    assert np.array_equal(_run(sd1, _request())[0], _run(sd1, _request())[0])


def test_a_missing_lora_is_named_before_anything_runs(sd1: Setup) -> None:
    with pytest.raises(ResourceNotFound, match="nothere"):
        sd1.resources.check(_request("a fox <lora:nothere:0.5>"))
    sd1.resources.check(_request("a fox <lora:nothere:0>"))  # weight 0 needs no file


def test_a_batch_never_mixes_lora_sets(sd1: Setup) -> None:
    plain, with_lora = _request(), _request("a red fox <lora:detail:0.5>")
    assert plain.batch_key() != with_lora.batch_key()
    assert _request("x <lora:detail:0.5>").batch_key() == _request("y <lora:DETAIL:0.5>").batch_key()
    assert _request("x <lora:detail:0>").batch_key() == plain.batch_key()
    with pytest.raises(ValueError, match="LoRA"):
        sd1.engine.generate([plain, with_lora])


def test_trigger_words_come_from_the_file(sd1: Setup) -> None:
    detail = sd1.resources.loras.find("DETAIL")
    assert detail is not None and trigger_words(detail)[:2] == ["tinytrigger", "glowing"]
    assert sd1.resources.loras.find("sub/style-peft") is not None
    assert {"detail", "style-peft"} <= set(sd1.resources.loras.names())


# -- embeddings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
def test_an_embedding_is_used_by_name_in_either_prompt(arch: str, request: pytest.FixtureRequest) -> None:
    setup: Setup = request.getfixturevalue(arch)
    setup.engine.choices.embeddings.refresh(setup.resources.embeddings)
    pipe = setup.engine.pipe

    def encoded(prompt: str, negative: str = "") -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = encode_prompt_batch(pipe, [(prompt, negative)])
        return embeddings.prompt_embeds, embeddings.negative_prompt_embeds

    plain, plain_negative = encoded("a fox, blurry", "blurry")
    with_name, _ = encoded("a fox, EasyNeg")
    _, negative_name = encoded("a fox, blurry", "(badhands:1.2)")
    assert not torch.equal(plain, with_name)
    assert not torch.equal(plain_negative, negative_name)
    assert torch.equal(encoded("a fox, easyneg")[0], with_name)  # names ignore case
    _, resources = _run(setup, _request("a fox", negative_prompt="easyneg, badhands"))
    assert set(resources["TI hashes"].casefold().replace(",", "").split()) >= {"easyneg:", "badhands:"}


# -- VAE ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
def test_a_chosen_vae_changes_the_decode_and_is_named_in_the_infotext(
    arch: str, request: pytest.FixtureRequest
) -> None:
    setup: Setup = request.getfixturevalue(arch)
    plain, _ = _run(setup, _request())
    single, single_resources = _run(setup, _request(vae="mse"))
    folder, folder_resources = _run(setup, _request(vae="fixed"))
    assert np.abs(single - plain).max() > 10 and np.abs(folder - single).max() > 10
    assert single_resources["VAE"] == "mse.safetensors" and len(single_resources["VAE hash"]) == 10
    assert folder_resources["VAE"] == "fixed"
    assert np.array_equal(_run(setup, _request())[0], plain)
    assert np.array_equal(_run(setup, _request(vae="mse"))[0], single)


def test_the_nan_guard_decodes_again_with_the_chosen_vae(sd1: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.engine.core as core

    chosen, _ = _run(sd1, _request(vae="mse"))
    checks = iter([[0], []])  # the first decode "comes out black", the float32 retry is fine
    monkeypatch.setattr(core, "bad_image_indices", lambda images, black_level: next(checks))
    result = sd1.engine.generate([_request(vae="mse")])[0]
    assert result.nan_retry
    assert np.array_equal(np.asarray(result.images[0].image).astype(np.int16), chosen)
    assert sd1.engine.pipe.vae is not sd1.engine.choices.vaes.own


# -- hires fix and tiles --------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos"])
def test_hires_fix_gives_the_target_size_and_reproduces(
    arch: str, upscaler: str, request: pytest.FixtureRequest
) -> None:
    setup: Setup = request.getfixturevalue(arch)
    hires = _request(hires_scale=1.5, hires_steps=4, hires_denoise=0.6, hires_upscaler=upscaler)
    first, _ = _run(setup, hires)
    assert first.shape == (96, 96, 3)
    assert np.array_equal(_run(setup, hires)[0], first)
    assert not np.array_equal(_run(setup, replace(hires, hires_denoise=0.9))[0], first)
    with pytest.raises(InvalidRequest, match="hires_denoise"):  # 4 steps x 0.2 is no step at all
        replace(hires, hires_denoise=0.2).validate()


def _seams(image: np.ndarray) -> tuple[float, float, float, float]:
    """Mean differences: left vs right column, column 0 vs 1, top vs bottom row, row 0 vs 1."""
    return (
        float(np.abs(image[:, 0] - image[:, -1]).mean()),
        float(np.abs(image[:, 0] - image[:, 1]).mean()),
        float(np.abs(image[0] - image[-1]).mean()),
        float(np.abs(image[0] - image[1]).mean()),
    )


def test_tiled_images_wrap_at_the_edges(sd1: Setup) -> None:
    tiled_seams, plain_seams = [], []
    for seed in (1, 2, 3):
        tiled, _ = _run(sd1, replace(_request(tile=True), seed=seed))
        plain, _ = _run(sd1, replace(_request(), seed=seed))
        across, beside, down, below = _seams(tiled)
        # the left column continues the right one as any column continues its neighbour
        assert across <= 1.6 * beside + 2 and down <= 1.6 * below + 2
        tiled_seams.append(across + down)
        plain_seams.append(_seams(plain)[0] + _seams(plain)[2])
    assert sum(tiled_seams) < 0.8 * sum(plain_seams)
    again, _ = _run(sd1, replace(_request(tile=True), seed=1))
    assert np.array_equal(again, _run(sd1, replace(_request(tile=True), seed=1))[0])
    # and off again, the convolutions pad with zeros
    _run(sd1, _request())
    assert all(
        layer.padding_mode == "zeros"
        for layer in sd1.engine.pipe.unet.modules()
        if isinstance(layer, torch.nn.Conv2d)
    )


# -- infotext in and out ------------------------------------------------------------------------


def _civitai_text(setup: Setup, model: str) -> str:
    """A WebUI infotext whose files are here under other names: found by hash."""
    cache = setup.resources.cache_dir
    lora = setup.resources.loras.find("detail")
    embedding = setup.resources.embeddings.find("EasyNeg")
    vae = setup.resources.vaes.find("mse")
    assert lora is not None and embedding is not None and vae is not None
    return (
        "a red fox, <lora:add_detail_v2:0.8>, glowing\n"
        "Negative prompt: easynegative_civitai, blurry\n"
        "Steps: 3, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 11, Size: 64x64, "
        f"Model hash: 0123456789, Model: {model}, Denoising strength: 0.6, "
        "Hires upscale: 1.5, Hires steps: 4, "
        f'Hires upscaler: Latent, Lora hashes: "add_detail_v2: {lora.short_hash(cache)}", '
        f'TI hashes: "easynegative_civitai: {embedding.short_hash(cache)}", '
        f"VAE hash: {vae.short_hash(cache)}, VAE: vae-ft-mse-840000.safetensors, Tiling: True, "
        "Version: v1.10.1"
    )


def test_a_civitai_infotext_imports_with_everything_honoured(sd1: Setup, tiny_model_dir: Path) -> None:
    from pipeline.domain.metadata import format_infotext, parse_infotext
    from pipeline.domain.metadata.imported import import_request

    imported = import_request(
        _civitai_text(sd1, tiny_model_dir.name),
        catalog=ModelCatalog(str(tiny_model_dir)),
        resources=sd1.resources,
    )
    assert imported.notes == ()
    request = imported.request
    assert request.prompt == "a red fox, <lora:detail:0.8>, glowing"
    assert request.negative_prompt == "easyneg, blurry"
    assert (request.vae, request.tile) == ("mse", True)
    assert (request.hires_scale, request.hires_steps, request.hires_denoise) == (1.5, 4, 0.6)
    made = sd1.engine.generate([request.validate()])[0]
    assert made.images[0].image.size == (96, 96)
    assert set(made.resources) == {"Lora hashes", "TI hashes", "VAE hash", "VAE"}
    # each file changes the result: leave one out at a time
    image = np.asarray(made.images[0].image).astype(np.int16)
    for without in (
        replace(request, prompt="a red fox, glowing"),
        replace(request, negative_prompt="blurry"),
        replace(request, vae=None),
    ):
        assert not np.array_equal(_run(sd1, without.validate())[0], image)
    # written back the WebUI way, and read back to the same request
    text = format_infotext(
        request, seed=11, model_name=tiny_model_dir.name, model_hash=None, extra=made.resources
    )
    written = ('Lora hashes: "detail: ', 'TI hashes: "EasyNeg: ', "VAE hash: ", "Hires upscale: 1.5")
    written += ("Hires steps: 4", "Hires upscaler: Latent", "Denoising strength: 0.6", "Tiling: True")
    for pair in written:
        assert pair in text
    again = import_request(text, catalog=ModelCatalog(str(tiny_model_dir)), resources=sd1.resources)
    assert again.notes == () and again.request == request
    assert parse_infotext(text).request.hires_upscaler == "Latent"


def test_missing_files_are_named_with_their_hash(sd1: Setup, tiny_model_dir: Path) -> None:
    from pipeline.domain.metadata.imported import import_request

    text = (
        "a fox <lora:gone_lora:0.7>, nothere_ti\n"
        'Steps: 3, Sampler: Euler, Seed: 1, Size: 64x64, Lora hashes: "gone_lora: 1234567890ab", '
        'TI hashes: "nothere_ti: ba0987654321", VAE hash: abcdef0123, VAE: gone-vae.pt'
    )
    imported = import_request(text, catalog=ModelCatalog(str(tiny_model_dir)), resources=sd1.resources)
    lora, embedding, vae = imported.notes
    assert "gone_lora" in lora and "1234567890ab" in lora
    assert "nothere_ti" in embedding and "ba0987654321" in embedding
    assert "gone-vae" in vae and "abcdef0123" in vae
    assert imported.request.loras == () and imported.request.vae is None
    imported.request.validate()


def test_a_canvas_job_paints_with_the_models_inpainting_version(tmp_path: Path) -> None:
    from PIL import Image

    from pipeline.domain.canvas import canvas_size, parse_canvas
    from pipeline.engine.pool import EnginePool
    from pipeline.engine.testmodel import make_test_model

    models = tmp_path / "models"
    make_test_model(models / "tiny")
    make_test_model(models / "tiny-inpainting", seed=3, inpainting=True)
    pool = EnginePool(catalog=ModelCatalog("tiny", models), device="cpu", keep=2)
    source = Image.new("RGB", (128, 128), (90, 120, 200))
    width, height = canvas_size(parse_canvas("pan:right"), 128, 128, max_pixels=1024 * 1024)
    request = GenerationRequest(
        prompt="a fox", width=width, height=height, steps=3, seed=4, mode="inpaint", canvas="pan:right",
        init_image="0" * 64, strength=1.0, model="tiny",
    )  # fmt: skip
    engine = pool.for_request(request)
    assert engine.model.name == "tiny-inpainting" and engine.pipe.unet.config.in_channels == 9
    result = engine.generate([request], init_images={"0" * 64: source})[0]
    made = np.asarray(result.images[0].image).astype(np.int16)
    assert made.shape == (128, 192, 3)
    assert np.abs(made[:, :100] - np.asarray(source).astype(np.int16)[:, :100]).max() <= 1
    assert (
        pool.for_request(
            replace(request, mode="txt2img", canvas=None, init_image=None, strength=None)
        ).model.name
        == "tiny"
    )
