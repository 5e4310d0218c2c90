"""Turning a :class:`ModelSpec` into a ready diffusers pipeline: :func:`load_model`.

- A diffusers folder loads with the pipeline class its ``model_index.json`` names
  (``StableDiffusionPipeline`` or ``StableDiffusionXLPipeline``), without the safety checker,
  from local files only. A folder holding only ``fp16`` variant weights loads that variant.
- A single file loads offline through ``pipeline.domain.models.single_file``.
- A Hub id is fetched into the Hugging Face cache (``DiffusionPipeline.download``, skipping the
  safety checker) and then loads as a diffusers folder. Offline (``local_files_only``, which
  defaults to ``HF_HUB_OFFLINE``), only an already cached copy can be used.

The model's hash is A1111's AutoV2 (``pipeline.domain.models.hashing``), cached in ``cache_dir``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.domain.models.architecture import Architecture, folder_architecture
from pipeline.domain.models.catalog import ModelSpec
from pipeline.domain.models.config_folder import default_cache_dir
from pipeline.domain.models.hashing import folder_weights_file, model_hash
from pipeline.domain.models.single_file import load_single_file
from pipeline.errors import ModelError, ModelLoadError, ModelNotFound

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_TRUE = {"1", "on", "yes", "true"}


@dataclass
class LoadedModel:
    """A loaded text-to-image pipeline and what the engine and the metadata need to know of it."""

    pipe: Any
    """``StableDiffusionPipeline`` or ``StableDiffusionXLPipeline``."""
    name: str
    hash: str | None
    """A1111's AutoV2 hash (first 10 hex digits of the weights file's sha256), when known."""
    architecture: Architecture
    source: str
    spec: ModelSpec


def load_model(
    spec: ModelSpec,
    *,
    device: torch.device,
    dtype: torch.dtype,
    cache_dir: Path | None = None,
    local_files_only: bool | None = None,
) -> LoadedModel:
    """Load ``spec`` in ``dtype`` onto ``device``; :class:`ModelLoadError` says what went wrong."""
    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    if local_files_only is None:
        local_files_only = hub_offline()
    if spec.kind == "hub":
        folder = download_hub_model(spec.source, local_files_only=local_files_only)
    else:
        folder = Path(spec.source)
        if not folder.exists():
            raise ModelNotFound(
                f"no checkpoint found at {folder}: put a .safetensors file or a diffusers folder there, "
                "or set NANKE_MODEL"
            )
    if spec.kind == "single_file":
        pipe, architecture = load_single_file(folder, dtype=dtype, cache_dir=cache_dir)
    else:
        pipe, architecture = load_diffusers_folder(folder, dtype=dtype)
    pipe.to(device)
    if device.type == "cpu":
        align_weights(pipe)
    digest = model_hash(folder, cache_dir)
    log.info("loaded model %s (%s, hash %s) from %s", spec.name, architecture, digest, spec.source)
    return LoadedModel(
        pipe=pipe, name=spec.name, hash=digest, architecture=architecture, source=spec.source, spec=spec
    )


CPU_ALIGNMENT = 64
"""Bytes: where torch's own CPU allocations start."""


def align_weights(pipe: Any) -> int:
    """Copy every weight that does not start on a :data:`CPU_ALIGNMENT` boundary into memory that does.

    Weights read from a file can lie anywhere the file put them, and CPU matrix kernels take
    other paths for unaligned operands, which round differently: the same weights loaded from a
    diffusers folder and from a single file would then give images that differ in the last bit.
    Aligned, the images depend on the weights alone. Returns how many tensors were copied.
    """
    import torch

    copied = 0
    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        for tensor in (*component.parameters(), *component.buffers()):
            if tensor.device.type == "cpu" and tensor.data_ptr() % CPU_ALIGNMENT:
                tensor.data = tensor.data.clone()
                copied += 1
    if copied:
        log.debug("copied %d weight tensors into aligned memory", copied)
    return copied


def load_diffusers_folder(folder: Path, *, dtype: Any) -> tuple[Any, Architecture]:
    """The pipeline in a diffusers folder (on the CPU, in ``dtype``) and its architecture."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    architecture = folder_architecture(folder)
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    if architecture == "sdxl":
        cls: Any = StableDiffusionXLPipeline
    else:
        cls = StableDiffusionPipeline
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    weights = folder_weights_file(folder)
    if weights is not None and ".fp16." in weights.name:
        kwargs["variant"] = "fp16"
    try:
        pipe = cls.from_pretrained(str(folder), **kwargs)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load the diffusers folder {folder}: {exc}") from exc
    return pipe, architecture


def download_hub_model(repo_id: str, *, local_files_only: bool) -> Path:
    """The local snapshot folder of a Hub pipeline, downloaded unless ``local_files_only``."""
    from diffusers import DiffusionPipeline

    try:
        return Path(
            DiffusionPipeline.download(repo_id, local_files_only=local_files_only, safety_checker=None)
        )
    except Exception as exc:
        offline = " (offline mode is on: HF_HUB_OFFLINE)" if local_files_only else ""
        raise ModelLoadError(
            f"cannot get {repo_id!r} from the Hugging Face Hub{offline}: a Hub model needs internet "
            "access once to download it (it is then cached); without internet, put a local copy (a "
            "diffusers folder or a .safetensors file) in the models folder or set NANKE_MODEL to "
            f"its path. Cause: {type(exc).__name__}: {exc}"
        ) from exc


def hub_offline() -> bool:
    """Whether the Hugging Face Hub must not be contacted (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
