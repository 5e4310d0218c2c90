"""The model catalog, model hashes, architecture detection and loading diffusers folders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from pipeline.domain.models import (
    ModelCatalog,
    ModelSpec,
    detect_architecture,
    hashing,
    load_model,
    model_hash,
)
from pipeline.errors import ModelLoadError, ModelNotFound

CPU = torch.device("cpu")


def _checkpoint(path: Path, content: bytes = b"weights") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _diffusers_folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return path


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    _checkpoint(root / "alpha.safetensors")
    _checkpoint(root / "Beta.ckpt")
    _diffusers_folder(root / "gamma")
    _checkpoint(root / "sub" / "delta.safetensors")
    _diffusers_folder(root / "sub" / "epsilon")
    _checkpoint(root / "sub" / "alpha.safetensors")  # same name as a top-level model
    _checkpoint(root / "sub" / "deeper" / "too-deep.safetensors")  # two levels down: not scanned
    _checkpoint(root / "notes.txt")
    _diffusers_folder(root / "alpha.config")  # a per-checkpoint override, not a model
    (root / "tokenizer").mkdir()
    return root


# -- catalog -------------------------------------------------------------------------------------


def test_catalog_scans_files_and_diffusers_folders(models_dir: Path) -> None:
    catalog = ModelCatalog(default="gamma", models_dir=models_dir)

    assert catalog.names() == ["gamma", "alpha", "Beta", "delta", "epsilon", "sub/alpha.safetensors"]
    assert catalog.resolve("delta") == ModelSpec(
        "delta", str(models_dir / "sub" / "delta.safetensors"), "single_file"
    )
    assert catalog.resolve("epsilon").kind == "diffusers"
    assert catalog.resolve("sub/alpha.safetensors").source == str(models_dir / "sub" / "alpha.safetensors")


def test_resolve_ignores_case_and_checkpoint_suffix(models_dir: Path) -> None:
    catalog = ModelCatalog(default="alpha", models_dir=models_dir)

    assert catalog.resolve("beta").name == "Beta"
    assert catalog.resolve("BETA.ckpt").source == str(models_dir / "Beta.ckpt")
    assert catalog.resolve("ALPHA.safetensors").source == str(models_dir / "alpha.safetensors")
    assert catalog.resolve(None) == catalog.resolve("alpha")
    assert catalog.resolve("  ") == catalog.resolve("alpha")


def test_rescan_finds_new_models(models_dir: Path) -> None:
    catalog = ModelCatalog(default="alpha", models_dir=models_dir)
    _checkpoint(models_dir / "zeta.safetensors")
    assert "zeta" not in catalog.names()

    catalog.rescan()

    assert catalog.resolve("Zeta").kind == "single_file"


def test_default_can_be_a_path_and_its_name_resolves_again(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path / "elsewhere" / "mine.safetensors")
    catalog = ModelCatalog(default=str(checkpoint))

    assert catalog.resolve(None) == ModelSpec("mine", str(checkpoint), "single_file")
    assert catalog.names() == ["mine"]
    assert catalog.resolve("MINE").source == str(checkpoint)


def test_a_path_whose_stem_is_taken_is_named_by_its_path(models_dir: Path, tmp_path: Path) -> None:
    other = _checkpoint(tmp_path / "other" / "alpha.safetensors")
    catalog = ModelCatalog(default="alpha", models_dir=models_dir)

    spec = catalog.resolve(str(other))

    assert spec.name == str(other)
    assert catalog.resolve(spec.name) == spec
    assert catalog.resolve("alpha").source == str(models_dir / "alpha.safetensors")


def test_unknown_name_says_what_was_looked_for_and_where(models_dir: Path) -> None:
    catalog = ModelCatalog(default="alpha", models_dir=models_dir)

    with pytest.raises(ModelNotFound) as caught:
        catalog.resolve("nonexistent")

    message = str(caught.value)
    assert "'nonexistent'" in message
    assert str(models_dir) in message
    assert "available: alpha, Beta, delta, epsilon, gamma" in message


def test_unknown_default_names_the_setting(tmp_path: Path) -> None:
    catalog = ModelCatalog(default="missing-model")

    with pytest.raises(ModelNotFound, match=r"'missing-model' \(from NANKE_MODEL\).*NANKE_MODELS_DIR"):
        catalog.resolve(None)
    assert catalog.names() == []


def test_missing_path_explains_what_to_put_there(tmp_path: Path) -> None:
    catalog = ModelCatalog(default=str(tmp_path / "models" / "sd15.safetensors"))

    with pytest.raises(ModelNotFound) as caught:
        catalog.resolve(None)

    assert str(caught.value) == (
        f"no checkpoint found at {tmp_path / 'models' / 'sd15.safetensors'}: put a .safetensors file "
        "or a diffusers folder there, or set NANKE_MODEL"
    )


def test_existing_path_that_is_no_model_is_refused(tmp_path: Path) -> None:
    text = _checkpoint(tmp_path / "readme.txt")

    with pytest.raises(ModelNotFound, match="is not a model"):
        ModelCatalog(default=str(text)).resolve(None)


def test_hub_id_is_only_tried_when_no_local_path_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = ModelCatalog(default="stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert catalog.resolve(None) == ModelSpec(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", "stable-diffusion-v1-5/stable-diffusion-v1-5", "hub"
    )

    local = _diffusers_folder(tmp_path / "owner" / "name")
    monkeypatch.chdir(tmp_path)
    assert catalog.resolve("owner/name") == ModelSpec("name", str(Path("owner/name")), "diffusers")
    assert local.is_dir()
    with pytest.raises(ModelNotFound, match="no checkpoint found"):
        catalog.resolve("owner/name/model.safetensors")


def test_hub_model_without_network_is_a_clear_error(tmp_path: Path) -> None:
    spec = ModelCatalog(default="nanke-test/no-such-model").resolve(None)

    with pytest.raises(ModelLoadError) as caught:
        load_model(spec, device=CPU, dtype=torch.float32, cache_dir=tmp_path, local_files_only=True)

    message = str(caught.value)
    assert "'nanke-test/no-such-model'" in message
    assert "needs internet access" in message
    assert "local copy" in message


# -- hashes --------------------------------------------------------------------------------------


def test_model_hash_is_sha256_prefix_and_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    content = bytes(range(256)) * 9000  # a little over 2 MiB: several blocks
    checkpoint = _checkpoint(tmp_path / "model.safetensors", content)
    expected = hashlib.sha256(content).hexdigest()[:10]

    assert model_hash(checkpoint, tmp_path / "cache") == expected
    assert (
        json.loads((tmp_path / "cache" / "model-hashes.json").read_text())[str(checkpoint.resolve())][
            "sha256"
        ]
        == hashlib.sha256(content).hexdigest()
    )

    def no_hashing(path: Path) -> str:
        raise AssertionError("the cached hash should have been used")

    monkeypatch.setattr(hashing, "sha256_file", no_hashing)
    assert model_hash(checkpoint, tmp_path / "cache") == expected

    monkeypatch.undo()
    checkpoint.write_bytes(content + b"changed")
    assert model_hash(checkpoint, tmp_path / "cache") == hashlib.sha256(content + b"changed").hexdigest()[:10]


def test_folder_hash_is_the_unet_weights_hash(tiny_model_dir: Path) -> None:
    weights = tiny_model_dir / "unet" / "diffusion_pytorch_model.safetensors"

    assert model_hash(tiny_model_dir) == hashlib.sha256(weights.read_bytes()).hexdigest()[:10]
    assert model_hash(tiny_model_dir.parent) is None


# -- architecture --------------------------------------------------------------------------------

_UNET = {
    "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
}


def _keys(**overrides: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    return {**_UNET, **{key.replace("__", "."): shape for key, shape in overrides.items()}}


@pytest.mark.parametrize(
    ("shapes", "expected"),
    [
        (_keys(cond_stage_model__transformer__text_model__final_layer_norm__weight=(768,)), "sd1"),
        (_keys(cond_stage_model__model__ln_final__weight=(1024,)), "sd2"),
        (
            _keys(
                conditioner__embedders__0__transformer__text_model__final_layer_norm__weight=(768,),
                conditioner__embedders__1__model__ln_final__weight=(1280,),
            ),
            "sdxl",
        ),
        (_UNET, "sd1"),
        (
            {
                "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
                "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (640, 2048),
            },
            "sdxl",
        ),
    ],
)
def test_detect_architecture(shapes: dict[str, tuple[int, ...]], expected: str) -> None:
    assert detect_architecture(shapes) == expected


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"lora_unet_down.weight": (4, 4)}, "not a Stable Diffusion checkpoint"),
        (_keys(model__diffusion_model__input_blocks__0__0__weight=(320, 9, 3, 3)), "inpainting"),
        (_keys(conditioner__embedders__0__model__ln_final__weight=(1280,)), "SDXL refiner"),
        ({"model.diffusion_model.out.2.weight": (4, 320, 3, 3)}, "cannot be told"),
    ],
)
def test_detect_architecture_refuses_what_nanke_cannot_run(
    shapes: dict[str, tuple[int, ...]], message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        detect_architecture(shapes)


# -- loading diffusers folders -------------------------------------------------------------------


def test_load_diffusers_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    spec = ModelCatalog(default=str(tiny_model_dir)).resolve(None)

    loaded = load_model(spec, device=CPU, dtype=torch.float32, cache_dir=tmp_path)

    assert isinstance(loaded.pipe, StableDiffusionPipeline)
    assert loaded.pipe.safety_checker is None
    assert (loaded.name, loaded.architecture, loaded.source, loaded.spec) == (
        "tiny-sd",
        "sd1",
        str(tiny_model_dir),
        spec,
    )
    assert loaded.hash == model_hash(tiny_model_dir)
    assert loaded.pipe.unet.dtype == torch.float32


def test_load_refuses_other_pipelines(tmp_path: Path) -> None:
    folder = tmp_path / "flux"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))

    with pytest.raises(ModelLoadError, match="holds a FluxPipeline"):
        load_model(
            ModelSpec("flux", str(folder), "diffusers"), device=CPU, dtype=torch.float32, cache_dir=tmp_path
        )


def test_load_missing_path_is_model_not_found(tmp_path: Path) -> None:
    spec = ModelSpec("gone", str(tmp_path / "gone.safetensors"), "single_file")

    with pytest.raises(ModelNotFound, match="no checkpoint found at"):
        load_model(spec, device=CPU, dtype=torch.float32, cache_dir=tmp_path)


def test_resolve_can_be_limited_to_catalog_names(models_dir: Path, tmp_path: Path) -> None:
    catalog = ModelCatalog(default=str(models_dir / "gamma"), models_dir=models_dir)
    outside = _checkpoint(tmp_path / "outside.safetensors")

    assert catalog.resolve("GAMMA", allow_paths=False).kind == "diffusers"
    assert catalog.resolve("delta", allow_paths=False).name == "delta"
    for value in (str(outside), "owner/some-model"):
        with pytest.raises(ModelNotFound, match="available: gamma, alpha"):
            catalog.resolve(value, allow_paths=False)


# -- names the system refuses as paths, and short messages ---------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "m" * 300,  # one path component past the 255-byte limit: was OSError "File name too long"
        "m/" * 3000,  # past the whole-path limit
        "bad\x00name",
        "~no-such-user-of-nanke/model.safetensors",  # pathlib raises RuntimeError for it
    ],
    ids=["long-name", "long-path", "nul", "unknown-user"],
)
@pytest.mark.parametrize("allow_paths", [True, False])
def test_names_that_cannot_be_files_are_not_found_shortly(
    name: str, allow_paths: bool, models_dir: Path
) -> None:
    catalog = ModelCatalog(default="alpha", models_dir=models_dir)

    with pytest.raises(ModelNotFound) as caught:
        catalog.resolve(name, allow_paths=allow_paths)

    message = str(caught.value)
    assert "m" * 61 not in message and "m/" * 31 not in message
    assert len(message) < 400 + len(str(models_dir))


def test_a_default_that_cannot_be_a_file_is_not_found(tmp_path: Path) -> None:
    catalog = ModelCatalog(default="m" * 300, models_dir=tmp_path)

    assert catalog.names() == []
    with pytest.raises(ModelNotFound, match="File name too long"):
        catalog.resolve(None)


def test_the_list_of_available_models_is_cut(tmp_path: Path) -> None:
    for number in range(30):
        _checkpoint(tmp_path / f"model-{number:02d}-{'x' * 100}.safetensors")
    catalog = ModelCatalog(default="", models_dir=tmp_path)

    with pytest.raises(ModelNotFound) as caught:
        catalog.resolve("missing")

    message = str(caught.value)
    assert "model-05" in message and "model-06" not in message and "and 24 more" in message
    assert len(message) < 1000


def test_names_match_however_accents_are_encoded(tmp_path: Path) -> None:
    _checkpoint(tmp_path / "cafe\u0301.safetensors")  # decomposed, as macOS names files
    catalog = ModelCatalog(default="", models_dir=tmp_path)

    assert catalog.resolve("CAFÉ", allow_paths=False).name == "cafe\u0301"
    assert catalog.resolve("cafe\u0301").source == str(tmp_path / "cafe\u0301.safetensors")
