"""What people type for the civitai features, without a model: LoRA tags, the hires-fix, VAE,
tile and style flags, the request's canonical JSON, the folders' defaults and lookups."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.domain.models.catalog import ModelCatalog
from pipeline.domain.models.resources import ResourceFolder, default_folder
from pipeline.domain.prompt.flags import format_prompt, parse_prompt
from pipeline.domain.prompt.networks import lora_set, read_tags, strip_tags
from pipeline.domain.prompt.styles import StyleBook
from pipeline.domain.request import GenerationRequest
from pipeline.errors import InvalidRequest
from pipeline.settings import load_settings

STYLES = StyleBook.from_csv(
    "name,prompt,negative_prompt\n"
    'Cinematic,"cinematic still of {prompt}, film grain","cartoon, blurry"\n'
    "Neon,neon lights,\n"
)


@pytest.mark.parametrize(
    ("text", "tags", "stripped"),
    [
        ("a fox <lora:detail:0.8>", [("detail", 0.8)], "a fox"),
        ("<lora:Detail>, a fox, <LoRA:x_y:-1.5>", [("Detail", 1.0), ("x_y", -1.5)], "a fox"),
        ("a fox, <lyco:lo:0.5>, snow", [("lo", 0.5)], "a fox, snow"),
        ("a (fox:1.2) <lora:a b:+.5>", [("a b", 0.5)], "a (fox:1.2)"),
    ],
)
def test_lora_tags_are_read_and_kept_out_of_the_text(
    text: str, tags: list[tuple[str, float]], stripped: str
) -> None:
    assert [(tag.name, tag.weight) for tag in read_tags(text)] == tags
    assert strip_tags(text) == stripped


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("<lora:x:9>", "out of range"),
        ("<lora:x:abc>", "not a number"),
        ("<lora:x:0.5:0.5>", "extra arguments"),
        ("<lora::1>", "no LoRA name"),
        ("<hypernet:x:1>", "hypernetwork"),
        ("<lora:x:1> <lora:X:0.5>", "twice"),
        (" ".join(f"<lora:l{i}:1>" for i in range(9)), "too many"),
    ],
)
def test_bad_lora_tags_are_refused_naming_lora(text: str, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says) as refused:
        GenerationRequest(prompt=f"a fox {text}").validate()
    assert refused.value.field == "lora"


def test_weight_zero_and_case_do_not_change_the_lora_set() -> None:
    assert lora_set("a <lora:X:0>", "") == ()
    assert lora_set("a <lora:X:1>", "") == lora_set("b <lora:x>", "") == (("x", 1.0),)
    assert lora_set("a", "<lora:neg:0.5>") == (("neg", 0.5),)


def test_hires_vae_tile_and_style_flags() -> None:
    parsed = parse_prompt(
        "a fox --hires 1.5 --hires-steps 12 --denoise 0.4 --upscaler latent (antialiased) --vae my vae "
        "--tile --style cinematic --style neon --no dog",
        styles=STYLES,
    )
    request = parsed.request.validate()
    assert (request.hires_scale, request.hires_steps, request.hires_denoise) == (1.5, 12, 0.4)
    assert (request.hires_upscaler, request.vae, request.tile) == ("Latent (antialiased)", "my vae", True)
    assert request.prompt == "cinematic still of a fox, film grain, neon lights"
    assert request.negative_prompt == "dog, cartoon, blurry"
    assert request.styles == ("Cinematic", "Neon")
    assert request.output_size == (768, 768)
    again = parse_prompt(format_prompt(request, seed=True)).request.validate()
    assert again == replace(request, styles=())  # the styles are in the prompt already


@pytest.mark.parametrize(
    ("text", "field", "says"),
    [
        ("a --denoise 0.5", "--denoise", "needs --hires"),
        ("a --hires 1", "--hires", "larger"),
        ("a --hires 5", "--hires", "out of range"),
        ("a --hires 2 --upscaler ESRGAN_4x", "--upscaler", "not an upscaler"),
        ("a --style nope", "--style", "not a style"),
    ],
)
def test_bad_civitai_flags_name_the_flag(text: str, field: str, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says) as refused:
        parse_prompt(text, styles=STYLES)
    assert refused.value.field == field


def test_the_hires_size_must_fit_the_pixel_limit() -> None:
    request = GenerationRequest(prompt="a", width=512, height=768, hires_scale=2.0)
    with pytest.raises(InvalidRequest, match="1024x1536") as refused:
        request.validate(max_pixels=1024 * 1024)
    assert refused.value.field == "hires_scale"
    assert request.validate(max_pixels=1024 * 1536).output_size == (1024, 1536)


def test_old_stored_requests_keep_their_json_and_new_fields_round_trip() -> None:
    plain = GenerationRequest(prompt="a fox", seed=3)
    assert set(json.loads(plain.to_json())) == {
        "prompt", "negative_prompt", "width", "height", "steps", "cfg_scale", "sampler", "seed",
        "count", "model", "clip_skip", "mode", "init_image", "strength", "v",
    }  # fmt: skip
    full = replace(plain, vae="mse", tile=True, hires_scale=2.0, hires_steps=5, styles=("A",)).validate()
    assert GenerationRequest.from_json(full.to_json()) == full
    assert full.batch_key() != plain.batch_key()


def test_resource_folders_default_to_the_webui_layout(tmp_path: Path) -> None:
    webui = tmp_path / "webui"
    for folder in ("models/Stable-diffusion", "models/Lora", "models/VAE", "embeddings"):
        (webui / folder).mkdir(parents=True)
    checkpoints = webui / "models" / "Stable-diffusion"
    assert default_folder("lora", models_dir=checkpoints, data_dir=tmp_path) == webui / "models" / "Lora"
    assert default_folder("vae", models_dir=checkpoints, data_dir=tmp_path) == webui / "models" / "VAE"
    assert default_folder("embedding", models_dir=checkpoints, data_dir=tmp_path) == webui / "embeddings"
    settings = load_settings(
        {"NANKE_MODELS_DIR": str(checkpoints), "NANKE_DATA_DIR": str(tmp_path)}, dotenv=None
    )
    assert settings.lora_dir == webui / "models" / "Lora"
    with pytest.raises(Exception, match="NANKE_LORA_DIR"):
        load_settings(
            {"NANKE_LORA_DIR": str(tmp_path / "none"), "NANKE_DATA_DIR": str(tmp_path)}, dotenv=None
        )


def test_a_lora_folder_inside_the_models_folder_holds_no_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "Lora").mkdir()
    (tmp_path / "Lora" / "detail.safetensors").write_bytes(b"x")
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert ModelCatalog("model", tmp_path).names() == ["model"]
    folder = ResourceFolder("lora", tmp_path / "Lora")
    assert folder.names() == ["detail"] and folder.find("DETAIL.safetensors") is not None
    (tmp_path / "Lora" / "new.safetensors").write_bytes(b"x")
    assert folder.find("new") is not None  # an added file is found without a restart


def test_children_of_a_hires_job_start_from_its_image_without_the_hires_fix() -> None:
    from pipeline.queue.derive import reroll, upscale, variation

    parent = GenerationRequest(
        prompt="a fox <lora:detail:0.5>", hires_scale=2.0, vae="mse", tile=True, seed=1
    ).validate()
    child = variation(parent, image_sha256="0" * 64, width=1024, height=1024)
    assert (child.mode, child.hires_scale, child.width) == ("img2img", None, 1024)
    assert (child.vae, child.tile, child.loras) == ("mse", True, (("detail", 0.5),))
    assert upscale(parent, image_sha256="0" * 64, width=512, height=512).hires_scale is None
    assert reroll(parent).hires_scale == 2.0


def test_a_vae_setting_that_names_nothing_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "VAE").mkdir()
    (tmp_path / "VAE" / "mse.safetensors").write_bytes(b"x")
    base = {"NANKE_DATA_DIR": str(tmp_path)}
    assert load_settings({**base, "NANKE_VAE": "MSE"}, dotenv=None).vae == "MSE"
    with pytest.raises(Exception, match="NANKE_VAE: 'nope' is neither"):
        load_settings({**base, "NANKE_VAE": "nope"}, dotenv=None)


def test_the_default_models_name_resolves_before_the_default_was_loaded(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    checkpoint = tmp_path / "elsewhere" / "tiny-sd.safetensors"
    checkpoint.write_bytes(b"x")
    catalog = ModelCatalog(str(checkpoint), tmp_path / "models")
    assert catalog.resolve("tiny-sd").source == str(checkpoint)


def test_previews_are_on_unless_the_admin_turns_them_off(tmp_path: Path) -> None:
    base = {"NANKE_DATA_DIR": str(tmp_path)}
    assert load_settings(base, dotenv=None).previews is True
    assert load_settings({**base, "NANKE_PREVIEWS": "0"}, dotenv=None).previews is False
    with pytest.raises(Exception, match="NANKE_PREVIEWS"):
        load_settings({**base, "NANKE_PREVIEWS": "maybe"}, dotenv=None)


def test_a_vae_folder_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    from pipeline.settings import SettingsError

    with pytest.raises(SettingsError) as refused:
        load_settings({"NANKE_DATA_DIR": str(tmp_path), "NANKE_VAE_DIR": str(tmp_path / "none")}, dotenv=None)
    assert [line for line in refused.value.problems if "NANKE_VAE_DIR" in line] == [
        f"NANKE_VAE_DIR: {str(tmp_path / 'none')!r} is not a folder"
    ]
