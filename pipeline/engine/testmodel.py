"""Tiny random-weight Stable Diffusion pipelines (SD 1.x and SDXL), for tests and demos.

They have the real layouts (UNet with cross-attention, 8x VAE, CLIP text encoders and CLIP BPE
tokenizers with ``model_max_length=77``; SDXL adds a second, projecting text encoder and the
``text_time`` conditioning) at a few thousand parameters, so every code path of a real model runs
in seconds on a CPU. Their weights are random: their images are coloured noise.
The tokenizer is built locally (byte-level vocabulary, no merges), so nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TOKENIZER_MAX_LENGTH = 77
_VOCAB_SIZE = 1000
_SPECIAL = ("<|startoftext|>", "<|endoftext|>")
# write_tokenizer's ids: 256 byte symbols, the same 256 with "</w>", then the two special tokens.
BOS_TOKEN_ID = 2 * 256
EOS_TOKEN_ID = BOS_TOKEN_ID + 1

# What the SD 1.x and SDXL UNets share; each adds its own conditioning.
_UNET = {
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "norm_num_groups": 8,
}
# SD's noise schedule (both SD 1.x and SDXL train on it).
_SCHEDULE = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
}


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte → printable-character table (the same as GPT-2's)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def write_tokenizer(folder: Path) -> None:
    """Write a CLIP tokenizer with a byte-level vocabulary: every character is one token."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for symbol in symbols:
        vocab[symbol] = len(vocab)
    for symbol in symbols:
        vocab[symbol + "</w>"] = len(vocab)
    for special in _SPECIAL:
        vocab[special] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": TOKENIZER_MAX_LENGTH,
        "bos_token": _SPECIAL[0],
        "eos_token": _SPECIAL[1],
        "unk_token": _SPECIAL[1],
        "pad_token": _SPECIAL[1],
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": _SPECIAL[0],
                "eos_token": _SPECIAL[1],
                "unk_token": _SPECIAL[1],
                "pad_token": _SPECIAL[1],
            },
            indent=2,
        ),
        encoding="utf-8",
    )


def _unet(seed: int, **conditioning: Any) -> Any:
    """The tiny UNet, seeded, with ``conditioning`` (cross-attention and added embeddings) on top."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**{**_UNET, **conditioning})


def _vae(seed: int) -> Any:
    """The tiny 8x VAE (four levels, as in SD), seeded."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(8, 8, 16, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=512,
    )


def _text_config(
    *, bos: int, eos: int, hidden_size: int = 32, num_hidden_layers: int = 4, **extra: Any
) -> Any:
    """A tiny CLIP text encoder's config over the tiny tokenizer's vocabulary."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
        hidden_size=hidden_size,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=num_hidden_layers,
        vocab_size=_VOCAB_SIZE,
        max_position_embeddings=TOKENIZER_MAX_LENGTH,
        **extra,
    )


def build_tiny_components(seed: int = 0, *, inpainting: bool = False) -> dict[str, object]:
    """Return the components of a tiny SD 1.x pipeline with deterministic random weights; with
    ``inpainting``, its UNet takes the 9 channels of an inpainting model (latents, mask, masked image)."""
    import torch
    from diffusers import EulerAncestralDiscreteScheduler
    from transformers import CLIPTextModel

    unet = _unet(
        seed, cross_attention_dim=32, attention_head_dim=8, **({"in_channels": 9} if inpainting else {})
    )
    vae = _vae(seed)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_text_config(bos=_VOCAB_SIZE - 2, eos=_VOCAB_SIZE - 1))
    scheduler = EulerAncestralDiscreteScheduler(**_SCHEDULE)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "scheduler": scheduler}


def build_tiny_sdxl_components(
    seed: int = 0,
    *,
    text_widths: tuple[int, int] = (32, 32),
    text_layers: tuple[int, int] = (4, 4),
    projection_dim: int = 32,
    transformer_layers_per_block: tuple[int, int] = (1, 1),
) -> dict[str, object]:
    """Return the components of a tiny SDXL pipeline with deterministic random weights.

    As in SDXL, the UNet cross-attends to both text encoders' hidden states side by side
    (``sum(text_widths)`` wide) and adds the ``text_time`` embedding of the second encoder's
    projected pooled output (``projection_dim`` wide) and six size/crop numbers; the second
    encoder uses GELU like OpenCLIP. ``text_widths``/``text_layers`` are per encoder; making
    them differ (SDXL's are 768/1280 wide) exercises code that must not mix the two up.
    """
    import torch
    from diffusers import EulerDiscreteScheduler
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    time_embed_dim = 8
    unet = _unet(
        seed,
        cross_attention_dim=sum(text_widths),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        transformer_layers_per_block=transformer_layers_per_block,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        projection_class_embeddings_input_dim=6 * time_embed_dim + projection_dim,
    )
    vae = _vae(seed)
    ids = {"bos": BOS_TOKEN_ID, "eos": EOS_TOKEN_ID}
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        _text_config(hidden_size=text_widths[0], num_hidden_layers=text_layers[0], **ids)
    )
    text_encoder_2 = CLIPTextModelWithProjection(
        _text_config(
            hidden_size=text_widths[1],
            num_hidden_layers=text_layers[1],
            projection_dim=projection_dim,
            hidden_act="gelu",
            **ids,
        )
    )
    scheduler = EulerDiscreteScheduler(**_SCHEDULE, timestep_spacing="leading")
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "scheduler": scheduler,
    }


def tiny_sd_pipeline(folder: str | Path, components: dict[str, Any]) -> Any:
    """An SD 1.x/2.x pipeline of ``components`` with the tiny tokenizer, written to ``folder/tokenizer``."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    tokenizer_dir = Path(folder) / "tokenizer"
    write_tokenizer(tokenizer_dir)
    return StableDiffusionPipeline(
        **components,
        tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_sdxl_pipeline(folder: str | Path, components: dict[str, Any], *, pad_token_2: str = "!") -> Any:
    """An SDXL pipeline of ``components`` with the tiny tokenizer (written to ``folder/tokenizer``).

    The second tokenizer is the same vocabulary padding with ``pad_token_2``: "!" as SDXL's does.
    """
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPTokenizer

    tokenizer_dir = Path(folder) / "tokenizer"
    write_tokenizer(tokenizer_dir)
    return StableDiffusionXLPipeline(
        **components,
        tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir),
        tokenizer_2=CLIPTokenizer.from_pretrained(tokenizer_dir, pad_token=pad_token_2),
        add_watermarker=False,
    )


def _save(pipe: Any, folder: Path) -> Path:
    pipe.save_pretrained(folder, safe_serialization=True)
    log.info("wrote a tiny random-weight test model to %s", folder)
    return folder


def make_test_model(folder: str | Path, *, seed: int = 0, inpainting: bool = False) -> Path:
    """Write a tiny random-weight SD 1.x pipeline as a diffusers folder and return its path (an
    inpainting model's, with a 9-channel UNet, with ``inpainting``)."""
    folder = Path(folder)
    return _save(tiny_sd_pipeline(folder, build_tiny_components(seed, inpainting=inpainting)), folder)


def make_test_sdxl_model(folder: str | Path, *, seed: int = 0, **variant: Any) -> Path:
    """Write a tiny random-weight SDXL pipeline as a diffusers folder and return its path.

    ``variant`` takes ``build_tiny_sdxl_components``' keyword arguments.
    """
    folder = Path(folder)
    return _save(tiny_sdxl_pipeline(folder, build_tiny_sdxl_components(seed, **variant)), folder)


def _tiny_vision(**extra: Any) -> dict[str, Any]:
    return {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "image_size": 32,
        "patch_size": 8,
        **extra,
    }


def _save_processor(folder: Path) -> None:
    from transformers import CLIPImageProcessor

    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folder
    )


def make_test_safety_checker(folder: str | Path, *, flags_everything: bool, seed: int = 0) -> Path:
    """Write a tiny random-weight Stable Diffusion safety checker (with its image processor).

    Its concept thresholds are set so that it flags every image (``flags_everything``) or none:
    with random weights there is no other way to know what it will say.
    """
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    folder = Path(folder)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=_text_config(bos=_VOCAB_SIZE - 2, eos=_VOCAB_SIZE - 1).to_dict(),
        vision_config=_tiny_vision(),
        projection_dim=16,
    )
    checker = StableDiffusionSafetyChecker(config)
    threshold = -2.0 if flags_everything else 2.0  # a cosine is within [-1, 1]
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(threshold)
        checker.special_care_embeds_weights.fill_(2.0)
    checker.save_pretrained(folder, safe_serialization=True)
    _save_processor(folder)
    return folder


def make_test_image_classifier(folder: str | Path, *, flags_everything: bool, seed: int = 0) -> Path:
    """Write a tiny random-weight ViT image classifier with the labels ``normal`` and ``nsfw``,
    biased so that it calls every image ``nsfw`` (``flags_everything``) or ``normal``."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    folder = Path(folder)
    torch.manual_seed(seed)
    config = ViTConfig(
        **_tiny_vision(), num_labels=2, id2label={0: "normal", 1: "nsfw"}, label2id={"normal": 0, "nsfw": 1}
    )
    model = ViTForImageClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 10.0] if flags_everything else [10.0, 0.0]))
    model.save_pretrained(folder, safe_serialization=True)
    _save_processor(folder)
    return folder


# -- tiny LoRAs, embeddings and VAEs for the tiny models --------------------------------------------

_LORA_UNET = re.compile(r"attn[12]\.(to_q|to_k|to_v|to_out\.0)$")
_LORA_TEXT = re.compile(r"self_attn\.(q_proj|k_proj|v_proj|out_proj)$")


def make_test_lora(
    path: str | Path, pipe: Any, *, layout: str = "kohya", seed: int = 1, rank: int = 4, scale: float = 0.5
) -> Path:
    """Write a random LoRA for ``pipe``'s UNet attention and text encoders to ``path`` (.safetensors).

    ``layout="kohya"``: the WebUI/kohya names (``lora_unet_...lora_down.weight`` with ``.alpha``;
    SDXL UNet blocks in the original ``input_blocks`` numbering, text encoders ``lora_te1_``/
    ``lora_te2_``), as civitai LoRAs come. ``layout="peft"``: diffusers' own (``unet.<module>.lora_A``).
    """
    import torch
    from safetensors.torch import save_file

    from pipeline.domain.models.ldm import unet_to_ldm

    if layout not in ("kohya", "peft"):
        raise ValueError(f"layout: {layout!r} (allowed: kohya, peft)")
    generator = torch.Generator().manual_seed(seed)
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    parts = [("unet", pipe.unet, _LORA_UNET), ("text_encoder", pipe.text_encoder, _LORA_TEXT)]
    if sdxl:
        parts.append(("text_encoder_2", pipe.text_encoder_2, _LORA_TEXT))
    kohya_prefix = {
        "unet": "lora_unet_",
        "text_encoder": "lora_te1_" if sdxl else "lora_te_",
        "text_encoder_2": "lora_te2_",
    }
    state: dict[str, Any] = {}
    for part, module, pattern in parts:
        for name, layer in module.named_modules():
            name = name.removesuffix(".base_layer")  # a layer a loaded LoRA already wraps
            if not isinstance(layer, torch.nn.Linear) or "lora_" in name or not pattern.search(name):
                continue
            down = torch.randn(rank, layer.in_features, generator=generator) * scale
            up = torch.randn(layer.out_features, rank, generator=generator) * scale
            if layout == "peft":
                state[f"{part}.{name}.lora_A.weight"] = down
                state[f"{part}.{name}.lora_B.weight"] = up
                continue
            module_path = name
            if part == "unet" and sdxl:
                module_path = next(iter(unet_to_ldm({f"{name}.weight": down}, pipe.unet.config)))
                module_path = module_path.removeprefix("model.diffusion_model.").removesuffix(".weight")
            if part != "unet":
                module_path = (
                    module_path if module_path.startswith("text_model.") else f"text_model.{module_path}"
                )
            key = kohya_prefix[part] + module_path.replace(".", "_")
            state[f"{key}.lora_down.weight"] = down
            state[f"{key}.lora_up.weight"] = up
            state[f"{key}.alpha"] = torch.tensor(float(rank))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"ss_tag_frequency": '{"data": {"tinytrigger": 9, "glowing": 3}}'} if layout == "kohya" else {}
    save_file(state, str(path), metadata=metadata)
    return path


def make_test_embedding(path: str | Path, pipe: Any, *, vectors: int = 2, seed: int = 2) -> Path:
    """Write a random textual-inversion embedding for ``pipe`` to ``path``: the WebUI's format
    (``emb_params`` in ``.safetensors``, ``string_to_param`` in ``.pt``; ``clip_l``/``clip_g`` for SDXL)."""
    import torch

    generator = torch.Generator().manual_seed(seed)

    def matrix(encoder: Any) -> Any:
        width = encoder.get_input_embeddings().weight.shape[1]
        return torch.randn(vectors, width, generator=generator)

    if getattr(pipe, "text_encoder_2", None) is not None:
        data = {"clip_l": matrix(pipe.text_encoder), "clip_g": matrix(pipe.text_encoder_2)}
    else:
        data = {"emb_params": matrix(pipe.text_encoder)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pt":
        sdxl = "clip_g" in data
        torch.save(data if sdxl else {"string_to_param": {"*": data["emb_params"]}, "name": path.stem}, path)
    else:
        from safetensors.torch import save_file

        save_file(data, str(path))
    return path


def make_test_vae(path: str | Path, pipe: Any, *, layout: str = "ldm", seed: int = 3) -> Path:
    """Write a VAE shaped like ``pipe``'s with other random weights: a single ``.safetensors`` in
    the original layout (``layout="ldm"``, as VAE files are shared) or a diffusers folder."""
    import torch

    from pipeline.domain.models.ldm import vae_to_ldm

    torch.manual_seed(seed)
    vae = type(pipe.vae).from_config(pipe.vae.config)
    path = Path(path)
    if layout == "diffusers":
        vae.save_pretrained(path, safe_serialization=True)
        return path
    if layout != "ldm":
        raise ValueError(f"layout: {layout!r} (allowed: ldm, diffusers)")
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = vae_to_ldm(vae.state_dict(), vae.config)
    save_file({k.removeprefix("first_stage_model."): v.contiguous() for k, v in state.items()}, str(path))
    return path


CAPTION_WORDS = (
    "a", "an", "the", "red", "fox", "cat", "dog", "in", "on", "snow", "forest", "painting", "photo", "of",
    "with", "at", "night", "sky", "city", "lighthouse", "blue", "green", "tree", "mountain", "river",
    "portrait", "golden", "light",
)  # fmt: skip
"""The tiny captioner's vocabulary (beside BERT's special tokens)."""


def make_test_captioner(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight BLIP image-captioning model (and its processor) to ``folder``:
    what ``NANKE_DESCRIBE_MODEL`` loads, with a vocabulary of a few prompt words."""
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,
        BlipProcessor,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    words = [*special, *CAPTION_WORDS]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]")
    processor = BlipProcessor(
        image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    text = {
        "vocab_size": len(words), "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 37, "encoder_hidden_size": 32, "bos_token_id": words.index("[DEC]"),
        "pad_token_id": 0, "sep_token_id": words.index("[SEP]"), "eos_token_id": words.index("[SEP]"),
        "max_position_embeddings": 64,
    }  # fmt: skip
    vision = {"hidden_size": 32, "image_size": 32, "patch_size": 8, "num_hidden_layers": 2,
              "num_attention_heads": 4, "intermediate_size": 37}  # fmt: skip
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(
        BlipConfig(text_config=text, vision_config=vision, projection_dim=32)
    )
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    return folder
