"""Writing a diffusers pipeline as one ``.safetensors`` file in the original (A1111) layout.

The file holds the UNet (``model.diffusion_model.*``), the VAE (``first_stage_model.*``) and the
text encoder(s) (``cond_stage_model.transformer.*`` for SD 1.x, ``cond_stage_model.model.*`` for
SD 2.x, ``conditioner.embedders.{0,1}.*`` for SDXL), as ``pipeline.domain.models.ldm`` maps them. A1111,
ComfyUI and diffusers' ``from_single_file`` read it.

Its header also records the components' diffusers configs and the tokenizers' special tokens
(``nanke.configs``), so that nanke loads it back exactly, including what the weights cannot tell
(group-norm groups, attention heads, the scheduler, the padding token); other tools ignore it.
An SD 2.x file lacks OpenCLIP's last layer and projection, which diffusers drops on import (SD 2.x
does not use them), as diffusers' own conversion script does. A v-prediction model gets the
``v_pred`` marker key.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.domain.models import ldm
from pipeline.domain.models.architecture import Architecture, pipeline_architecture
from pipeline.domain.models.config_folder import SCHEDULER, UNET, VAE, ConfigSet
from pipeline.domain.models.prediction import V_PREDICTION
from pipeline.domain.models.single_file import EMBEDDED_CONFIGS_KEY

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token")
_TEXT_ENCODERS: dict[Architecture, tuple[tuple[str, str, bool], ...]] = {
    # pipeline attribute, prefix in the file, whether it is stored in OpenCLIP's layout
    "sd1": (("text_encoder", ldm.SD1_CLIP, False),),
    "sd2": (("text_encoder", ldm.SD2_OPEN_CLIP, True),),
    "sdxl": (("text_encoder", ldm.SDXL_CLIP, False), ("text_encoder_2", ldm.SDXL_OPEN_CLIP, True)),
}


def to_original_state_dict(pipe: Any, architecture: Architecture | None = None) -> dict[str, torch.Tensor]:
    """The pipeline's weights under their original names (tensors shared with the pipeline)."""
    architecture = architecture or pipeline_architecture(pipe)
    state = ldm.unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config)
    state.update(ldm.vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config))
    for attribute, prefix, open_clip in _TEXT_ENCODERS[architecture]:
        encoder_state = getattr(pipe, attribute).state_dict()
        convert = ldm.open_clip_to_ldm if open_clip else ldm.clip_to_ldm
        state.update(convert(encoder_state, prefix))
    return state


def save_single_file(
    pipe: Any,
    path: str | Path,
    *,
    architecture: Architecture | None = None,
    dtype: torch.dtype | None = None,
    embed_configs: bool = True,
) -> Path:
    """Write ``pipe`` to ``path`` (``.safetensors``) in the original layout.

    ``architecture`` defaults to what the pipeline looks like, ``dtype`` casts the floating-point
    weights (``torch.float16`` halves the file), ``embed_configs`` records the components' configs
    in the header (without them a loader derives the configs from the shapes alone).
    """
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"path: {str(path)!r} (allowed: a .safetensors file)")
    architecture = architecture or pipeline_architecture(pipe)
    tensors = {}
    for key, value in to_original_state_dict(pipe, architecture).items():
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous().clone()
    configs = _configs(pipe, architecture)
    if configs[SCHEDULER].get("prediction_type") == V_PREDICTION:
        tensors[ldm.V_PREDICTION_MARKER] = torch.tensor([])
    metadata = {"format": "pt"}
    if embed_configs:
        metadata[EMBEDDED_CONFIGS_KEY] = json.dumps(configs, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    log.info("wrote %s (%s, %d tensors)", path, architecture, len(tensors))
    return path


def _configs(pipe: Any, architecture: Architecture) -> ConfigSet:
    """The component configs worth recording (plain JSON values, no private ``_`` keys)."""
    components = {UNET: pipe.unet, VAE: pipe.vae, SCHEDULER: pipe.scheduler}
    for attribute, _, _ in _TEXT_ENCODERS[architecture]:
        components[f"{attribute}/config.json"] = getattr(pipe, attribute)
    configs: ConfigSet = {}
    for path, component in components.items():
        config = component.config
        raw = (
            config.to_dict() if hasattr(config, "to_dict") and not isinstance(config, dict) else dict(config)
        )
        clean = {key: value for key, value in raw.items() if not key.startswith("_")}
        if path == SCHEDULER:
            clean["_class_name"] = type(component).__name__
        configs[path] = json.loads(json.dumps(clean, default=_jsonable))
    for name in ("tokenizer", "tokenizer_2"):
        if getattr(pipe, name, None) is not None:
            configs.update(_tokenizer_configs(name, getattr(pipe, name)))
    return configs


def _tokenizer_configs(name: str, tokenizer: Any) -> ConfigSet:
    """The special tokens and length of a tokenizer (its vocabulary is CLIP's, not recorded)."""
    special = {key: str(getattr(tokenizer, key)) for key in _SPECIAL_TOKENS if getattr(tokenizer, key, None)}
    return {
        f"{name}/tokenizer_config.json": {**special, "model_max_length": int(tokenizer.model_max_length)},
        f"{name}/special_tokens_map.json": special,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | set):
        return list(value)
    return str(value)
