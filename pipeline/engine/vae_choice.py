"""Choosing the VAE a batch decodes with: the model's own, one per model, or a configured one.

A VAE comes as a single file (``.safetensors``, or ``.pt``/``.ckpt`` read tensors-only), in the
original LDM layout (``encoder.down.0.block.0...``, with or without ``first_stage_model.``) or the
diffusers one, or as a diffusers folder (``config.json`` + weights). A single file has no config:
it takes the model's own VAE config (the SD 1.x and SDXL VAEs share their shapes), so a VAE of
another shape is refused by name. A folder keeps its own config: the fp16-fixed SDXL VAE says there
that it needs no float32 upcast.

Swapping is a pointer change on the pipelines (text-to-image and image-to-image share it); the
last :data:`KEEP` chosen VAEs stay loaded. The engine's NaN guard works on whichever VAE is in
use (its float32 copy is made per VAE).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from pipeline.domain.models.resources import Resource
from pipeline.errors import ResourceMismatch

log = logging.getLogger(__name__)

KEEP = 2
_LDM_PREFIXES = ("first_stage_model.", "vae.")


def read_vae(resource: Resource, *, like: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Load the VAE of ``resource`` (file or diffusers folder), shaped like the VAE ``like``."""
    from diffusers import AutoencoderKL

    path = resource.path
    try:
        if path.is_dir():
            vae = AutoencoderKL.from_pretrained(str(path), torch_dtype=dtype)
        else:
            vae = AutoencoderKL.from_config(like.config)
            vae.load_state_dict(_diffusers_state(path, like.config), strict=True)
    except (RuntimeError, ValueError, KeyError, OSError) as error:
        log.warning("loading the VAE %s failed: %s", path, error)
        raise ResourceMismatch(
            f"The VAE “{resource.name}” does not fit this model (or cannot be read).",
            key="vae_mismatch",
            params={"name": resource.name},
        ) from None
    return vae.to(device=device, dtype=dtype).eval()


def _diffusers_state(path: Path, config: Any) -> dict[str, torch.Tensor]:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"holds a {type(state).__name__}, not a state dict")
    for prefix in _LDM_PREFIXES:
        if any(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    # Training leftovers some VAE files carry (the loss's discriminator and perceptual model)
    state = {key: value for key, value in state.items() if not key.startswith(("loss.", "model_ema."))}
    if any(".down_blocks." in key or key.startswith("down_blocks.") for key in state):
        return state
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    return convert_ldm_vae_checkpoint(state, dict(config))


class VaeChoice:
    """Which VAE a pipeline decodes with."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.own = pipe.vae
        self.current: Resource | None = None
        self._loaded: OrderedDict[tuple[str, int], Any] = OrderedDict()

    @property
    def all(self) -> list[Any]:
        """The model's own VAE and every loaded one."""
        return [self.own, *self._loaded.values()]

    def use(self, resource: Resource | None, *, pipes: list[Any]) -> Any:
        """Decode with ``resource`` (``None``: the model's own VAE) on ``pipes``; returns the VAE."""
        if resource is None:
            vae = self.own
        else:
            stamp = (str(resource.path), _mtime(resource.path))
            vae = self._loaded.get(stamp)
            if vae is None:
                vae = read_vae(resource, like=self.own, device=self.own.device, dtype=self.own.dtype)
                self._loaded[stamp] = vae
                log.info("loaded the VAE %s", resource.name)
                while len(self._loaded) > KEEP:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(stamp)
        self.current = resource
        for pipe in pipes:
            if pipe is not None and pipe.vae is not vae:
                pipe.register_modules(vae=vae)
        return vae


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
