"""The local diffusers config folder that ``from_single_file(path, config=...)`` needs offline.

A config set maps each config file's path in a diffusers folder (``unet/config.json``, ...) to its
content. A checkpoint's set is built in layers, each overriding the one before:

1. the shipped config of its architecture (``pipeline/domain/models/configs/<architecture>.json``), with
   ``prediction_type: v_prediction`` when the checkpoint has a ``v_pred`` marker key;
2. the configs that ``save_single_file`` embeds in a ``.safetensors`` header (``nanke.configs``);
3. what a ``<stem>.yaml`` beside the checkpoint states (``pipeline.domain.models.ldm_yaml``);
4. the ``*.json`` files of a ``<stem>.config/`` folder beside the checkpoint;
5. the facts the tensor shapes give (``pipeline.domain.models.shapes``): these always win, since a config
   that disagrees with the weights cannot load them.

When the shapes change a model's widths, the values the weights cannot tell (and no layer
states) are re-chosen by the families' conventions: group norms use 32 groups (or the most, up to
32, that divide every width), SD 1.x UNets have 8 attention heads, SD 2.x and SDXL UNets and all
text encoders have 64-wide heads (one head when the width is not a multiple of 64), and token ids
that fall outside a smaller vocabulary become its last two ids (CLIP's order). Such a model loads
with exactly its weights; its outputs match the original only if the original followed the same
conventions.

The folder (configs plus tokenizer files) is written once per distinct content, under
``<cache>/model-configs/<digest>/``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from pipeline.domain.models import ldm
from pipeline.domain.models.architecture import Architecture, Shapes
from pipeline.domain.models.shapes import clip_dims, open_clip_dims, unet_dims, vae_dims
from pipeline.domain.models.tokenizer import TOKENIZER_FILES, clip_tokenizer, missing_tokenizer_message
from pipeline.errors import ModelLoadError

log = logging.getLogger(__name__)

ConfigSet = dict[str, dict[str, Any]]
UNET = "unet/config.json"
VAE = "vae/config.json"
SCHEDULER = "scheduler/scheduler_config.json"
TEXT_ENCODERS: dict[Architecture, dict[str, tuple[str, bool]]] = {
    # config path -> (prefix in the checkpoint, whether it is an OpenCLIP encoder)
    "sd1": {"text_encoder/config.json": (ldm.SD1_CLIP, False)},
    "sd2": {"text_encoder/config.json": (ldm.SD2_OPEN_CLIP, True)},
    "sdxl": {
        "text_encoder/config.json": (ldm.SDXL_CLIP, False),
        "text_encoder_2/config.json": (ldm.SDXL_OPEN_CLIP, True),
    },
}
DEFAULT_GROUPS = 32
HEAD_WIDTH = 64
SD1_HEADS = 8


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/nanke`` (``~/.cache/nanke``), for callers that give no cache folder."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "nanke"


def shipped_configs(architecture: Architecture) -> ConfigSet:
    """The base model's configs (see ``pipeline/domain/models/configs``)."""
    text = (
        resources.files("pipeline.domain.models.configs").joinpath(f"{architecture}.json").read_text("utf-8")
    )
    return json.loads(text)


def _overlay(base: ConfigSet, *layers: Mapping[str, Mapping[str, Any]]) -> ConfigSet:
    """``base`` with each layer's files merged in, key by key (later layers win)."""
    merged = copy.deepcopy(base)
    for layer in layers:
        for path, config in layer.items():
            merged.setdefault(path, {}).update(copy.deepcopy(dict(config)))
    return merged


def read_config_folder(folder: Path) -> ConfigSet:
    """The ``*.json`` config files of a diffusers-layout folder, by relative path."""
    configs: ConfigSet = {}
    for path in sorted(folder.rglob("*.json")):
        relative = path.relative_to(folder).as_posix()
        if relative.endswith(("vocab.json", "tokenizer.json")):
            continue
        configs[relative] = json.loads(path.read_text(encoding="utf-8"))
    return configs


def derive_configs(
    shapes: Shapes, architecture: Architecture, layers: Sequence[Mapping[str, Mapping[str, Any]]] = ()
) -> ConfigSet:
    """The shipped configs, then ``layers`` (later ones win), then what the tensor shapes determine.

    Values the weights cannot tell are re-chosen by convention (see the module doc) when the
    shapes' widths differ from the shipped model's, unless one of the ``layers`` states them.
    """
    shipped = shipped_configs(architecture)
    configs = _overlay(shipped, *layers)
    given = {path: {key for layer in layers for key in layer.get(path, {})} for path in configs}

    def settle(path: str, dims: dict[str, Any], width: str, conventions: dict[str, Any]) -> None:
        configs[path].update(dims)
        if dims[width] != shipped[path].get(width):
            configs[path].update({k: v for k, v in conventions.items() if k not in given[path]})

    unet = unet_dims(shapes)
    widths = unet["block_out_channels"]
    sd1_heads = architecture == "sd1" and all(w % SD1_HEADS == 0 for w in widths)
    heads = SD1_HEADS if sd1_heads else [_heads(w) for w in widths]
    settle(
        UNET, unet, "block_out_channels", {"norm_num_groups": _groups(widths), "attention_head_dim": heads}
    )
    vae = vae_dims(shapes)
    settle(VAE, vae, "block_out_channels", {"norm_num_groups": _groups(vae["block_out_channels"])})
    for path, (prefix, open_clip) in TEXT_ENCODERS[architecture].items():
        text = open_clip_dims(shapes, prefix) if open_clip else clip_dims(shapes, prefix)
        settle(path, text, "hidden_size", {"num_attention_heads": _heads(text["hidden_size"])})
        _fit_token_ids(configs[path])
    scheduler_class = configs[SCHEDULER].get("_class_name")
    if scheduler_class:
        configs["model_index.json"]["scheduler"] = ["diffusers", scheduler_class]
    if architecture == "sdxl":
        pooled = configs["text_encoder_2/config.json"]["projection_dim"]
        time_ids = configs[UNET]["projection_class_embeddings_input_dim"] - pooled
        configs[UNET]["addition_time_embed_dim"] = time_ids // 6
    return configs


def derive_config_folder(
    shapes: Shapes,
    architecture: Architecture,
    *,
    cache_dir: Path | None = None,
    layers: Sequence[Mapping[str, Mapping[str, Any]]] = (),
    tokenizers: Mapping[str, Path] | None = None,
) -> Path:
    """Write (once) and return a diffusers config folder for a checkpoint with these ``shapes``.

    ``layers`` are config sets laid over the shipped one (see :func:`derive_configs`);
    ``tokenizers`` maps each tokenizer component to a folder with its vocabulary files (default:
    CLIP's, built from the BPE file of an installed package; see ``pipeline.domain.models.tokenizer``).
    """
    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    configs = derive_configs(shapes, architecture, layers)
    components = sorted({path.split("/")[0] for path in configs if path.startswith("tokenizer")})
    if tokenizers is None:
        clip = clip_tokenizer(cache_dir)
        if clip is None:
            raise ModelLoadError(missing_tokenizer_message(None))
        tokenizers = dict.fromkeys(components, clip)
    files: dict[str, bytes] = {
        path: (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
        for path, config in configs.items()
    }
    for component in components:
        for name in TOKENIZER_FILES:
            if (tokenizers[component] / name).is_file():
                files[f"{component}/{name}"] = (tokenizers[component] / name).read_bytes()
    return _write_once(cache_dir / "model-configs", files)


def _fit_token_ids(config: dict[str, Any]) -> None:
    """Token ids outside a smaller vocabulary become its last ids (CLIP puts its specials last)."""
    vocab = config["vocab_size"]
    if any(int(config.get(name) or 0) >= vocab for name in ("bos_token_id", "eos_token_id", "pad_token_id")):
        config.update(bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1)


def _groups(widths: list[int]) -> int:
    """32 groups, or the most (up to 32) that divide every width."""
    common = math.gcd(*widths)
    return max(g for g in range(1, DEFAULT_GROUPS + 1) if common % g == 0)


def _heads(width: int) -> int:
    return width // HEAD_WIDTH if width % HEAD_WIDTH == 0 else 1


def _write_once(root: Path, files: Mapping[str, bytes]) -> Path:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    folder = root / digest.hexdigest()[:16]
    if (folder / "model_index.json").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    for path, content in files.items():
        target = staging / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    try:
        staging.replace(folder)
    except OSError:  # another process wrote the same folder first
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote the diffusers config folder %s", folder)
    return folder
