"""A checkpoint's original LDM ``.yaml`` config (A1111's ``name.yaml`` beside ``name.safetensors``).

The yaml says what the weights cannot: whether the model predicts ``v`` (``parameterization``),
the VAE's latent scale (``scale_factor``) and the UNet's attention heads (``num_heads``, or
``num_head_channels`` per head, for the widths ``model_channels × channel_mult``). Those become a
config layer (see ``pipeline.domain.models.config_folder``); everything else still comes from the tensor
shapes, so nanke does not hand the yaml to diffusers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.domain.models.config_folder import SCHEDULER, UNET, VAE, ConfigSet
from pipeline.domain.models.prediction import EPSILON, V_PREDICTION
from pipeline.errors import ModelLoadError

log = logging.getLogger(__name__)

_PARAMETERIZATIONS = {"v": V_PREDICTION, "eps": EPSILON}


def yaml_configs(path: Path) -> ConfigSet:
    """The config values an LDM yaml states, as a partial config set."""
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    params = _section(_section(document, "model"), "params")
    configs: ConfigSet = {}
    parameterization = params.get("parameterization")
    if parameterization in _PARAMETERIZATIONS:
        configs[SCHEDULER] = {"prediction_type": _PARAMETERIZATIONS[parameterization]}
    if isinstance(params.get("scale_factor"), int | float):
        configs[VAE] = {"scaling_factor": float(params["scale_factor"])}
    unet = _section(_section(params, "unet_config") or _section(params, "network_config"), "params")
    unet_config = _unet_heads(unet)
    if unet_config:
        configs[UNET] = unet_config
    log.debug("configs from %s: %s", path, configs)
    return configs


def _unet_heads(unet: dict[str, Any]) -> dict[str, Any]:
    channels, multipliers = unet.get("model_channels"), unet.get("channel_mult")
    if not isinstance(channels, int) or not isinstance(multipliers, list):
        return {}
    widths = [channels * int(multiplier) for multiplier in multipliers]
    per_head, heads = unet.get("num_head_channels", -1), unet.get("num_heads", -1)
    if isinstance(per_head, int) and per_head > 0:
        return {"block_out_channels": widths, "attention_head_dim": [width // per_head for width in widths]}
    if isinstance(heads, int) and heads > 0:
        return {"block_out_channels": widths, "attention_head_dim": heads}
    return {}


def _section(document: Any, key: str) -> dict[str, Any]:
    value = document.get(key) if isinstance(document, dict) else None
    return value if isinstance(value, dict) else {}
