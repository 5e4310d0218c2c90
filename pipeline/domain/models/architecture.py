"""Which Stable Diffusion family a checkpoint or diffusers folder is, from its keys and configs.

Single files in the original (LDM / A1111) layout are told apart by their text encoders:

- SDXL base: two text encoders, ``conditioner.embedders.0.transformer.*`` (OpenAI CLIP ViT-L) and
  ``conditioner.embedders.1.model.*`` (OpenCLIP ViT-bigG). A refiner has only
  ``conditioner.embedders.0.model.*`` and is refused (it is an img2img-only model).
- SD 2.x: an OpenCLIP ViT-H text encoder, ``cond_stage_model.model.*``.
- SD 1.x: an OpenAI CLIP ViT-L text encoder, ``cond_stage_model.transformer.*``.

Without text-encoder keys the UNet's cross-attention width decides: 768 is SD 1.x, 1024 SD 2.x,
2048 SDXL. Inpainting checkpoints (a 9-channel UNet input) and other model families are refused
with a clear message. Whether an SD 2.x model predicts ``v`` is decided at load time
(``pipeline.domain.models.prediction``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pipeline.domain.models import ldm
from pipeline.errors import ModelLoadError

log = logging.getLogger(__name__)

Architecture = Literal["sd1", "sd2", "sdxl"]
Shapes = Mapping[str, Sequence[int]]
"""A checkpoint's tensor names and shapes, read without loading the tensors."""

_CONTEXT_WIDTHS: dict[int, Architecture] = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


def read_checkpoint(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """The tensor shapes and the metadata (safetensors header; empty for ``.ckpt``) of a file."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
                return shapes, dict(handle.metadata() or {})
        state = _load_pickle(path)
    except Exception as exc:  # a truncated download, a pickle with foreign classes, ...
        hint = " (a .safetensors copy of it avoids pickle issues)" if path.suffix.lower() == ".ckpt" else ""
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(
            f"cannot read the checkpoint {path}: {first}; it may be truncated or not a checkpoint{hint}"
        ) from exc
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} holds no state dict (a {type(state).__name__})")
    return {key: tuple(value.shape) for key, value in state.items() if hasattr(value, "shape")}, {}


def _load_pickle(path: Path) -> Any:
    """A ``.ckpt``'s tensors only (``weights_only``), memory-mapped unless it predates torch's zip format."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        log.debug("no memory map for %s (%s); reading it whole", path, exc)
        return torch.load(path, map_location="cpu", weights_only=True)


def detect_architecture(shapes: Shapes, *, source: str = "the checkpoint") -> Architecture:
    """``sd1``, ``sd2`` or ``sdxl`` for a checkpoint in the original layout (see the module doc)."""
    keys = shapes.keys()
    if not any(key.startswith(ldm.UNET) for key in keys):
        raise ModelLoadError(
            f"{source} is not a Stable Diffusion checkpoint: it has no {ldm.UNET}* weights "
            "(nanke runs SD 1.x, SD 2.x and SDXL checkpoints; LoRAs, VAEs and other model families "
            "do not go in the models folder)"
        )
    conv_in = shapes.get(f"{ldm.UNET}input_blocks.0.0.weight")
    if conv_in is not None and len(conv_in) == 4 and conv_in[1] != 4:
        raise ModelLoadError(
            f"{source} is an inpainting (or other {conv_in[1]}-channel) model; nanke runs "
            "text-to-image models only"
        )
    if _has_prefix(keys, ldm.SDXL_OPEN_CLIP):
        return "sdxl"
    if _has_prefix(keys, "conditioner.embedders.0.model."):
        raise ModelLoadError(f"{source} is an SDXL refiner; nanke runs SDXL base models only")
    if _has_prefix(keys, ldm.SD2_OPEN_CLIP):
        return "sd2"
    if _has_prefix(keys, ldm.SD1_CLIP):
        return "sd1"
    width = context_width(shapes)
    if width in _CONTEXT_WIDTHS:
        return _CONTEXT_WIDTHS[width]
    raise ModelLoadError(
        f"{source} has no text encoder weights and a cross-attention width of {width}, "
        "so its family (SD 1.x, SD 2.x or SDXL) cannot be told"
    )


def context_width(shapes: Shapes) -> int | None:
    """The UNet's cross-attention input width (the text embedding width), if it has attention."""
    for key, shape in shapes.items():
        if key.startswith(ldm.UNET) and key.endswith("attn2.to_k.weight"):
            return int(shape[1])
    return None


def folder_architecture(folder: Path) -> Architecture:
    """The family of a diffusers folder, from ``model_index.json`` and the UNet config."""
    index = _read_json(folder / "model_index.json")
    class_name = str(index.get("_class_name", ""))
    if class_name.startswith("StableDiffusionXL"):
        return "sdxl"
    if not class_name.startswith("StableDiffusion"):
        raise ModelLoadError(
            f"{folder} holds a {class_name or 'pipeline without _class_name'}; nanke runs Stable "
            "Diffusion 1.x, 2.x and XL pipelines"
        )
    unet = _read_json(folder / "unet" / "config.json")
    if unet.get("cross_attention_dim") in _CONTEXT_WIDTHS:
        return _CONTEXT_WIDTHS[int(unet["cross_attention_dim"])]
    text_encoder = _read_json(folder / "text_encoder" / "config.json")
    return "sd2" if text_encoder.get("hidden_act") == "gelu" else "sd1"


def pipeline_architecture(pipe: Any) -> Architecture:
    """The family of a loaded pipeline (OpenCLIP text encoders use ``gelu``, OpenAI CLIP ``quick_gelu``)."""
    if getattr(pipe, "text_encoder_2", None) is not None:
        return "sdxl"
    width = pipe.unet.config.cross_attention_dim
    if width in _CONTEXT_WIDTHS:
        return _CONTEXT_WIDTHS[int(width)]
    return "sd2" if pipe.text_encoder.config.hidden_act == "gelu" else "sd1"


def _has_prefix(keys: Any, prefix: str) -> bool:
    return any(key.startswith(prefix) for key in keys)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}
