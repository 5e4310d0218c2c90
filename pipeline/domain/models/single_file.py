"""Loading ``.safetensors``/``.ckpt`` checkpoints in the original layout, fully offline.

diffusers' ``from_single_file`` downloads the base model's configs from the Hub unless it is
given a local diffusers config folder; nanke builds that folder from the checkpoint itself (see
``pipeline.domain.models.config_folder``), so no network is needed.

Per-checkpoint overrides, beside ``name.safetensors``:

- ``name.config/``: diffusers-layout config files (``unet/config.json``,
  ``scheduler/scheduler_config.json``, ``tokenizer/``, ...) that replace the shipped values, key
  by key; missing files and keys keep the shipped values;
- ``name.yaml``: the model's original LDM config (A1111's convention), read by
  ``pipeline.domain.models.ldm_yaml`` for the prediction type, the VAE scale and the attention heads.

The config layers are, later ones winning: shipped, embedded by ``save_single_file``, the yaml,
the ``.config`` folder, then the tensor shapes (see ``pipeline.domain.models.config_folder``).

The prediction type is decided as ``pipeline.domain.models.prediction`` describes; the tokenizer as
``pipeline.domain.models.tokenizer`` describes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pipeline.domain.models import ldm
from pipeline.domain.models.architecture import Architecture, detect_architecture, read_checkpoint
from pipeline.domain.models.catalog import CONFIG_FOLDER_SUFFIX
from pipeline.domain.models.config_folder import (
    SCHEDULER,
    ConfigSet,
    derive_config_folder,
    read_config_folder,
)
from pipeline.domain.models.ldm_yaml import yaml_configs
from pipeline.domain.models.prediction import EPSILON, V_PREDICTION, probe_v_prediction, set_prediction_type
from pipeline.domain.models.tokenizer import find_tokenizers
from pipeline.errors import ModelError, ModelLoadError

log = logging.getLogger(__name__)

EMBEDDED_CONFIGS_KEY = "nanke.configs"
"""The safetensors metadata entry where ``save_single_file`` records the components' configs."""
YAML_SUFFIXES = (".yaml", ".yml")


def config_folder_of(checkpoint: Path) -> Path | None:
    folder = checkpoint.with_name(checkpoint.stem + CONFIG_FOLDER_SUFFIX)
    return folder if folder.is_dir() else None


def yaml_of(checkpoint: Path) -> Path | None:
    return next((p for s in YAML_SUFFIXES if (p := checkpoint.with_suffix(s)).is_file()), None)


def embedded_configs(metadata: dict[str, str]) -> ConfigSet:
    """The configs ``save_single_file`` stored in a safetensors header (empty when none)."""
    text = metadata.get(EMBEDDED_CONFIGS_KEY)
    if not text:
        return {}
    try:
        configs = json.loads(text)
    except ValueError:
        log.warning("ignoring unreadable %s metadata", EMBEDDED_CONFIGS_KEY)
        return {}
    return configs if isinstance(configs, dict) else {}


def load_single_file(path: Path, *, dtype: Any, cache_dir: Path) -> tuple[Any, Architecture]:
    """The pipeline of a checkpoint file (on the CPU, in ``dtype``) and its architecture."""
    shapes, metadata = read_checkpoint(path)
    architecture = detect_architecture(shapes, source=str(path))
    override_folder = config_folder_of(path)
    yaml_file = yaml_of(path)
    layers = [
        {SCHEDULER: {"prediction_type": V_PREDICTION}} if ldm.V_PREDICTION_MARKER in shapes else {},
        embedded_configs(metadata),
        yaml_configs(yaml_file) if yaml_file else {},
        read_config_folder(override_folder) if override_folder else {},
    ]
    prediction = next((p for layer in reversed(layers) if (p := _prediction_in(layer))), None)
    components = ["tokenizer", "tokenizer_2"] if architecture == "sdxl" else ["tokenizer"]
    tokenizers = find_tokenizers(components, checkpoint=path, override=override_folder, cache_dir=cache_dir)
    folder = derive_config_folder(
        shapes, architecture, cache_dir=cache_dir, layers=layers, tokenizers=tokenizers
    )
    log.info("loading %s (%s) with the configs in %s", path, architecture, folder)
    pipe = _from_single_file(path, architecture, folder=folder, dtype=dtype)
    if architecture == "sd2" and prediction is None:
        set_prediction_type(pipe, V_PREDICTION if probe_v_prediction(pipe.unet) else EPSILON)
    return pipe, architecture


def _from_single_file(path: Path, architecture: Architecture, *, folder: Path, dtype: Any) -> Any:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    cls = StableDiffusionXLPipeline if architecture == "sdxl" else StableDiffusionPipeline
    try:
        pipe = cls.from_single_file(str(path), config=str(folder), local_files_only=True, dtype=dtype)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load {path} as an {architecture} checkpoint: {exc}") from exc
    _check_complete(pipe, path)
    return pipe


def _check_complete(pipe: Any, path: Path) -> None:
    """Refuse a pipeline with weights the checkpoint did not fill, or a tokenizer that overflows."""
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        if module is None:
            continue
        empty = [key for key, value in module.state_dict().items() if value.is_meta]
        if empty:
            raise ModelLoadError(f"{path} lacks {len(empty)} {name} weight(s), e.g. {empty[0]}")
    for tokenizer, encoder in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")):
        if getattr(pipe, tokenizer, None) is None or getattr(pipe, encoder, None) is None:
            continue
        tokens, vocab = len(getattr(pipe, tokenizer)), getattr(pipe, encoder).config.vocab_size
        if tokens > vocab:
            raise ModelLoadError(
                f"the {tokenizer} has {tokens} tokens but the text encoder of {path} only {vocab}: "
                f"put the model's own tokenizer folder beside the checkpoint"
            )


def _prediction_in(configs: ConfigSet) -> str | None:
    value = configs.get(SCHEDULER, {}).get("prediction_type")
    return str(value) if value else None
