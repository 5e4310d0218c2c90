"""Models: the catalog of available checkpoints, loading them (offline) and their hashes.

- :class:`ModelCatalog` / :class:`ModelSpec`: which models exist, by display name.
- :func:`load_model` → :class:`LoadedModel`: a diffusers pipeline from a diffusers folder, a
  single ``.safetensors``/``.ckpt`` file (offline, with configs derived from the file) or a Hub id.
- :func:`model_hash`: A1111's AutoV2 hash, cached.
- :func:`save_single_file`: a pipeline as one file in the original (A1111) layout.
- :func:`detect_architecture` / :func:`derive_config_folder`: the pieces single-file loading uses.
"""

from __future__ import annotations

from pipeline.domain.models.architecture import Architecture, detect_architecture, read_checkpoint
from pipeline.domain.models.catalog import ModelCatalog, ModelKind, ModelSpec
from pipeline.domain.models.config_folder import derive_config_folder, derive_configs
from pipeline.domain.models.hashing import model_hash
from pipeline.domain.models.loading import LoadedModel, load_model
from pipeline.domain.models.saving import save_single_file

__all__ = [
    "Architecture",
    "LoadedModel",
    "ModelCatalog",
    "ModelKind",
    "ModelSpec",
    "derive_config_folder",
    "derive_configs",
    "detect_architecture",
    "load_model",
    "model_hash",
    "read_checkpoint",
    "save_single_file",
]
