"""Single-file checkpoints: writing the original layout, deriving configs, loading offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pipeline.domain.models import (
    Architecture,
    ModelSpec,
    derive_config_folder,
    derive_configs,
    load_model,
    read_checkpoint,
    save_single_file,
    single_file,
    tokenizer,
)
from pipeline.domain.models.config_folder import SCHEDULER, shipped_configs
from pipeline.engine.testmodel import build_tiny_sdxl_components, tiny_sd_pipeline, tiny_sdxl_pipeline
from pipeline.errors import ModelLoadError

CPU = torch.device("cpu")
COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


def _load(path: Path, cache_dir: Path) -> Any:
    kind = "single_file" if path.is_file() else "diffusers"
    return load_model(
        ModelSpec(path.stem, str(path), kind), device=CPU, dtype=torch.float32, cache_dir=cache_dir
    )


def _image(pipe: Any, **extra: Any) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(7)
    return pipe(
        "a red fox",
        num_inference_steps=2,
        width=64,
        height=64,
        generator=generator,
        output_type="np",
        **extra,
    ).images[0]


def _assert_same_weights(expected: Any, actual: Any) -> None:
    for name in COMPONENTS:
        if getattr(expected, name, None) is None:
            continue
        want, got = getattr(expected, name).state_dict(), getattr(actual, name).state_dict()
        assert want.keys() == got.keys(), name
        for key in want:
            assert torch.equal(want[key], got[key]), f"{name}.{key}"


def _as_checkpoint(pipe: Any, folder: Path, tokenizers: Path, **options: Any) -> Path:
    """``pipe`` saved as ``<folder>/model.safetensors`` with the model's tokenizer folders beside it."""
    path = save_single_file(pipe, folder / "model.safetensors", **options)
    for name in ("tokenizer", "tokenizer_2"):
        if (tokenizers / name).is_dir():
            shutil.copytree(tokenizers / name, folder / name)
    return path


@pytest.fixture(scope="module")
def tiny_sd1(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _load(tiny_model_dir, tmp_path_factory.mktemp("cache")).pipe


# -- the original layout -------------------------------------------------------------------------


def test_saved_file_uses_the_original_key_layout(tiny_sd1: Any, tmp_path: Path) -> None:
    path = save_single_file(tiny_sd1, tmp_path / "tiny.safetensors")
    shapes, metadata = read_checkpoint(path)

    assert shapes["model.diffusion_model.input_blocks.0.0.weight"] == (32, 4, 3, 3)
    assert "model.diffusion_model.input_blocks.2.0.op.weight" in shapes  # block 0's downsampler
    assert "model.diffusion_model.input_blocks.3.1.transformer_blocks.0.attn2.to_k.weight" in shapes
    assert "model.diffusion_model.output_blocks.1.2.conv.weight" in shapes  # upsampler after attention
    assert "model.diffusion_model.middle_block.2.out_layers.3.weight" in shapes
    assert shapes["first_stage_model.encoder.mid.attn_1.q.weight"] == (16, 16, 1, 1)
    assert "first_stage_model.decoder.up.3.upsample.conv.weight" in shapes
    assert shapes["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] == (1000, 32)
    assert all(key.startswith(("model.", "first_stage_model.", "cond_stage_model.")) for key in shapes)
    assert json.loads(metadata[single_file.EMBEDDED_CONFIGS_KEY])["unet/config.json"]["norm_num_groups"] == 8


def test_diffusers_reads_the_saved_file_back(tiny_sd1: Any, tiny_model_dir: Path, tmp_path: Path) -> None:
    """The check the other way round: diffusers' own importer gives back the same tensors."""
    from diffusers import StableDiffusionPipeline

    path = save_single_file(tiny_sd1, tmp_path / "tiny.safetensors", embed_configs=False)
    shapes, _ = read_checkpoint(path)
    config = derive_config_folder(
        shapes, "sd1", cache_dir=tmp_path, tokenizers={"tokenizer": tiny_model_dir / "tokenizer"}
    )

    loaded = StableDiffusionPipeline.from_single_file(str(path), config=str(config), local_files_only=True)

    _assert_same_weights(tiny_sd1, loaded)


# -- SD 1.x round trips --------------------------------------------------------------------------


def test_sd1_single_file_loads_offline_and_generates_the_same_image(
    tiny_sd1: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from diffusers import StableDiffusionPipeline

    path = _as_checkpoint(tiny_sd1, tmp_path / "models", tiny_model_dir)

    loaded = _load(path, tmp_path / "cache")

    assert isinstance(loaded.pipe, StableDiffusionPipeline)
    assert (loaded.name, loaded.architecture, loaded.spec.kind) == ("model", "sd1", "single_file")
    assert loaded.hash is not None and len(loaded.hash) == 10
    assert type(loaded.pipe.scheduler) is type(tiny_sd1.scheduler)
    _assert_same_weights(tiny_sd1, loaded.pipe)
    np.testing.assert_array_equal(_image(loaded.pipe), _image(tiny_sd1))


def test_configs_are_derived_from_the_tensor_shapes(
    tiny_sd1: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    path = save_single_file(tiny_sd1, tmp_path / "tiny.safetensors", embed_configs=False)
    shapes, _ = read_checkpoint(path)

    configs = derive_configs(shapes, "sd1")

    unet, vae, text = (
        configs["unet/config.json"],
        configs["vae/config.json"],
        configs["text_encoder/config.json"],
    )
    assert unet["block_out_channels"] == [32, 64]
    assert unet["layers_per_block"] == 1
    assert unet["down_block_types"] == ["DownBlock2D", "CrossAttnDownBlock2D"]
    assert unet["up_block_types"] == ["CrossAttnUpBlock2D", "UpBlock2D"]
    assert (unet["cross_attention_dim"], unet["in_channels"], unet["out_channels"]) == (32, 4, 4)
    assert unet["use_linear_projection"] is False
    assert (vae["block_out_channels"], vae["layers_per_block"], vae["latent_channels"]) == (
        [8, 8, 16, 16],
        1,
        4,
    )
    assert (text["hidden_size"], text["num_hidden_layers"], text["intermediate_size"]) == (32, 4, 37)
    assert (text["vocab_size"], text["max_position_embeddings"]) == (1000, 77)
    folder = derive_config_folder(
        shapes, "sd1", cache_dir=tmp_path, tokenizers={"tokenizer": tiny_model_dir / "tokenizer"}
    )
    assert json.loads((folder / "unet" / "config.json").read_text()) == unet


def test_derived_configs_load_the_exact_weights(tiny_sd1: Any, tiny_model_dir: Path, tmp_path: Path) -> None:
    """Without embedded configs the tiny model's group norms and heads are guessed, its weights exact."""
    path = _as_checkpoint(tiny_sd1, tmp_path / "models", tiny_model_dir, embed_configs=False)

    loaded = _load(path, tmp_path / "cache")

    _assert_same_weights(tiny_sd1, loaded.pipe)
    assert loaded.pipe.unet.config.norm_num_groups == 32  # the tiny model's 8 is not in the weights
    assert _image(loaded.pipe).shape == (64, 64, 3)


def _tiny_sd(
    folder: Path,
    seed: int,
    scheduler: Any,
    *,
    unet: dict[str, Any],
    vae: dict[str, Any],
    text: dict[str, Any],
) -> Any:
    """A tiny SD 1.x/2.x pipeline (cross-attention in the first UNet block), seeded once.

    ``unet``, ``vae`` and ``text`` (the text encoder's) are the configs that differ between the
    variants. The tokenizer goes to ``folder/tokenizer``.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet_model = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        **unet,
    )
    vae_model = AutoencoderKL(**vae)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(vocab_size=1000, bos_token_id=0, eos_token_id=2, pad_token_id=1, **text)
    )
    components = {"unet": unet_model, "vae": vae_model, "text_encoder": text_encoder, "scheduler": scheduler}
    return tiny_sd_pipeline(folder, components)


def _conventional_tiny_sd1(folder: Path) -> Any:
    """A tiny SD 1.x pipeline that follows SD's conventions (32 groups, 8 heads, 64-wide text heads)."""
    from diffusers import PNDMScheduler

    return _tiny_sd(
        folder,
        3,
        PNDMScheduler.from_config(shipped_configs("sd1")[SCHEDULER]),
        unet={"cross_attention_dim": 64, "attention_head_dim": 8},
        vae={
            "block_out_channels": (32, 32, 64, 64),
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4,
            "layers_per_block": 1,
        },
        text={"hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 1, "num_hidden_layers": 2},
    )


def test_derived_configs_reproduce_a_conventional_model_exactly(tmp_path: Path) -> None:
    models = tmp_path / "models"
    pipe = _conventional_tiny_sd1(models)
    path = save_single_file(pipe, models / "conventional.safetensors", embed_configs=False)

    loaded = _load(path, tmp_path / "cache")

    _assert_same_weights(pipe, loaded.pipe)
    np.testing.assert_array_equal(_image(loaded.pipe), _image(pipe))


# -- per-checkpoint overrides --------------------------------------------------------------------


def test_config_folder_beside_the_checkpoint_overrides(
    tiny_sd1: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    path = _as_checkpoint(tiny_sd1, models, tiny_model_dir, embed_configs=False)
    override = models / "model.config"
    for name, config in (
        ("unet/config.json", {"norm_num_groups": 8}),
        ("vae/config.json", {"norm_num_groups": 4}),
        ("text_encoder/config.json", {"num_attention_heads": 4}),
        (SCHEDULER, {**tiny_sd1.scheduler.config, "_class_name": type(tiny_sd1.scheduler).__name__}),
    ):
        (override / name).parent.mkdir(parents=True, exist_ok=True)
        (override / name).write_text(json.dumps(config))

    loaded = _load(path, tmp_path / "cache")

    assert type(loaded.pipe.scheduler) is type(tiny_sd1.scheduler)
    np.testing.assert_array_equal(_image(loaded.pipe), _image(tiny_sd1))


def test_yaml_beside_the_checkpoint_sets_prediction_scale_and_heads(
    tiny_sd1: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    path = _as_checkpoint(tiny_sd1, models, tiny_model_dir)
    (models / "model.yaml").write_text(
        "model:\n"
        "  params:\n"
        '    parameterization: "v"\n'
        "    scale_factor: 0.5\n"
        "    unet_config:\n"
        "      params:\n"
        "        model_channels: 32\n"
        "        channel_mult: [1, 2]\n"
        "        num_head_channels: 16\n"
    )

    pipe = _load(path, tmp_path / "cache").pipe

    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.vae.config.scaling_factor == 0.5
    assert list(pipe.unet.config.attention_head_dim) == [2, 4]


def test_v_prediction_marker_is_written_and_read(tiny_sd1: Any, tiny_model_dir: Path, tmp_path: Path) -> None:
    v_model = type(tiny_sd1)(**{**tiny_sd1.components})
    v_model.scheduler = type(tiny_sd1.scheduler).from_config(
        tiny_sd1.scheduler.config, prediction_type="v_prediction"
    )
    path = _as_checkpoint(v_model, tmp_path / "models", tiny_model_dir, embed_configs=False)

    assert "v_pred" in read_checkpoint(path)[0]
    assert _load(path, tmp_path / "cache").pipe.scheduler.config.prediction_type == "v_prediction"


# -- tokenizers ----------------------------------------------------------------------------------


def test_missing_tokenizer_says_what_to_install_or_put_where(
    tiny_sd1: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_single_file(tiny_sd1, tmp_path / "models" / "model.safetensors")
    monkeypatch.setattr(tokenizer, "find_bpe_file", lambda: None)

    with pytest.raises(ModelLoadError) as caught:
        _load(path, tmp_path / "cache")

    message = str(caught.value)
    assert "pip install openai-clip" in message
    assert "tokenizer/ with vocab.json and merges.txt" in message
    assert str(path) in message


@pytest.mark.skipif(tokenizer.find_bpe_file() is None, reason="no package with CLIP's BPE file is installed")
def test_clip_tokenizer_is_built_from_the_bpe_file(tmp_path: Path) -> None:
    from transformers import CLIPTokenizer

    folder = tokenizer.clip_tokenizer(tmp_path)
    assert folder is not None
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).write_text(json.dumps(shipped_configs("sd1")[f"tokenizer/{name}"]))

    clip = CLIPTokenizer.from_pretrained(folder)

    assert len(clip) == 49408
    assert clip("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


@pytest.mark.skipif(tokenizer.find_bpe_file() is None, reason="no package with CLIP's BPE file is installed")
def test_a_tokenizer_larger_than_the_text_encoder_is_refused(tiny_sd1: Any, tmp_path: Path) -> None:
    path = save_single_file(tiny_sd1, tmp_path / "models" / "model.safetensors")

    with pytest.raises(ModelLoadError, match=r"49408 tokens but the text encoder .* only 1000"):
        _load(path, tmp_path / "cache")


# -- SD 2.x and SDXL -----------------------------------------------------------------------------


def _tiny_sd2(folder: Path) -> Any:
    from diffusers import DDIMScheduler

    return _tiny_sd(
        folder,
        1,
        DDIMScheduler(prediction_type="v_prediction", beta_schedule="scaled_linear"),
        unet={
            "cross_attention_dim": 32,
            "attention_head_dim": (2, 4),
            "use_linear_projection": True,
            "norm_num_groups": 8,
        },
        vae={"block_out_channels": (8, 16), "norm_num_groups": 4, **_two_level_vae()},
        text={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 3,
            "hidden_act": "gelu",
        },
    )


def _two_level_vae() -> dict[str, Any]:
    return {"down_block_types": ("DownEncoderBlock2D",) * 2, "up_block_types": ("UpDecoderBlock2D",) * 2}


def test_sd2_single_file_round_trip(tmp_path: Path) -> None:
    models = tmp_path / "models"
    pipe = _tiny_sd2(models)
    path = save_single_file(pipe, models / "tiny-sd2.safetensors")

    loaded = _load(path, tmp_path / "cache")

    assert read_checkpoint(path)[0]["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"] == (
        96,
        32,
    )
    assert loaded.architecture == "sd2"
    assert loaded.pipe.scheduler.config.prediction_type == "v_prediction"
    _assert_same_weights(pipe, loaded.pipe)
    np.testing.assert_array_equal(_image(loaded.pipe), _image(pipe))


def test_sd2_prediction_type_is_probed_when_nothing_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    pipe = _tiny_sd2(models)
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type="epsilon")
    path = save_single_file(pipe, models / "tiny-sd2.safetensors", embed_configs=False)
    probed: list[Any] = []
    monkeypatch.setattr(single_file, "probe_v_prediction", lambda unet: probed.append(unet) or False)

    loaded = _load(path, tmp_path / "cache")

    assert len(probed) == 1
    assert loaded.pipe.scheduler.config.prediction_type == "epsilon"


def _tiny_sdxl(folder: Path) -> Any:
    """SDXL's layout at toy size; the two text encoders differ in width, as in SDXL (768 / 1280)."""
    components = build_tiny_sdxl_components(
        2, text_widths=(32, 64), text_layers=(2, 3), projection_dim=48, transformer_layers_per_block=(1, 2)
    )
    return tiny_sdxl_pipeline(folder, components)


def test_sdxl_folder_and_single_file_round_trip(tmp_path: Path) -> None:
    from diffusers import StableDiffusionXLPipeline

    pipe = _tiny_sdxl(tmp_path / "tokenizers")
    pipe.save_pretrained(tmp_path / "tiny-sdxl")
    from_folder = _load(tmp_path / "tiny-sdxl", tmp_path / "cache")
    assert isinstance(from_folder.pipe, StableDiffusionXLPipeline)
    assert from_folder.architecture == "sdxl"
    path = _as_checkpoint(from_folder.pipe, tmp_path / "models", tmp_path / "tiny-sdxl")

    loaded = _load(path, tmp_path / "cache")

    shapes, _ = read_checkpoint(path)
    assert shapes["conditioner.embedders.1.model.text_projection"] == (64, 48)
    assert "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight" in shapes
    assert shapes["model.diffusion_model.label_emb.0.0.weight"] == (128, 96)
    assert isinstance(loaded.pipe, StableDiffusionXLPipeline)
    assert loaded.architecture == "sdxl"
    _assert_same_weights(pipe, loaded.pipe)
    np.testing.assert_array_equal(_image(loaded.pipe), _image(from_folder.pipe))


def test_sdxl_configs_are_derived_from_the_tensor_shapes(tmp_path: Path) -> None:
    pipe = _tiny_sdxl(tmp_path)
    path = save_single_file(pipe, tmp_path / "tiny-sdxl.safetensors", embed_configs=False)

    configs = derive_configs(read_checkpoint(path)[0], "sdxl")

    unet = configs["unet/config.json"]
    assert unet["transformer_layers_per_block"] == [1, 2]
    assert (unet["cross_attention_dim"], unet["addition_time_embed_dim"]) == (96, 8)
    assert unet["projection_class_embeddings_input_dim"] == 96
    assert configs["text_encoder_2/config.json"]["projection_dim"] == 48
    assert configs["text_encoder_2/config.json"]["num_hidden_layers"] == 3
    assert configs["text_encoder/config.json"]["num_hidden_layers"] == 2


def test_ckpt_files_load_too(tiny_sd1: Any, tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    safetensors = _as_checkpoint(tiny_sd1, tmp_path / "models", tiny_model_dir)
    ckpt = tmp_path / "models" / "legacy.ckpt"
    torch.save({"state_dict": load_file(safetensors), "global_step": 1}, ckpt)

    loaded = _load(ckpt, tmp_path / "cache")

    assert loaded.architecture == "sd1"
    _assert_same_weights(tiny_sd1, loaded.pipe)


def test_half_precision_load(tiny_sd1: Any, tiny_model_dir: Path, tmp_path: Path) -> None:
    path = _as_checkpoint(tiny_sd1, tmp_path / "models", tiny_model_dir, dtype=torch.float16)
    assert read_checkpoint(path)[0]["model.diffusion_model.out.2.weight"] == (4, 32, 3, 3)

    spec = ModelSpec("half", str(path), "single_file")
    loaded = load_model(spec, device=CPU, dtype=torch.bfloat16, cache_dir=tmp_path / "cache")

    assert {
        p.dtype for name in ("unet", "vae", "text_encoder") for p in getattr(loaded.pipe, name).parameters()
    } == {torch.bfloat16}


# -- full-size layouts (empty weights) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("architecture", "diffusers_name"), [("sd1", "v1"), ("sd2", "v2"), ("sdxl", "xl_base")]
)
def test_full_size_layouts_agree_with_diffusers(architecture: Architecture, diffusers_name: str) -> None:
    """At real SD sizes (on the meta device, no memory): the written layout is what diffusers
    recognises and imports back key for key, and the shapes derive the shipped configs."""
    from types import SimpleNamespace

    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        infer_diffusers_model_type,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from pipeline.domain.models.saving import to_original_state_dict

    shipped = shipped_configs(architecture)
    with init_empty_weights():
        parts: dict[str, Any] = {
            "unet": UNet2DConditionModel.from_config(shipped["unet/config.json"]),
            "vae": AutoencoderKL.from_config(shipped["vae/config.json"]),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**shipped["text_encoder/config.json"])),
            "text_encoder_2": None,
        }
        if architecture == "sdxl":
            config = CLIPTextConfig(**shipped["text_encoder_2/config.json"])
            parts["text_encoder_2"] = CLIPTextModelWithProjection(config)

    state = to_original_state_dict(SimpleNamespace(**parts), architecture)

    assert infer_diffusers_model_type(state) == diffusers_name
    assert (
        convert_ldm_unet_checkpoint(state, parts["unet"].config).keys() == parts["unet"].state_dict().keys()
    )
    assert convert_ldm_vae_checkpoint(state, parts["vae"].config).keys() == parts["vae"].state_dict().keys()
    derived = derive_configs({key: tuple(value.shape) for key, value in state.items()}, architecture)
    for path, config in shipped.items():
        assert {key: derived[path][key] for key in config} == config, path
