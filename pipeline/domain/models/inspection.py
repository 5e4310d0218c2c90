"""Whether a model can be used, found out cheaply (headers and config files, no weights loaded).

``main.py models`` and ``main.py doctor`` say per model whether it is usable and why not; the
real proof is loading it, which ``main.py run`` does for the default model at start.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.domain.models.architecture import detect_architecture, folder_architecture, read_checkpoint
from pipeline.domain.models.catalog import ModelSpec
from pipeline.domain.models.hashing import folder_weights_file
from pipeline.errors import ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelState:
    usable: bool
    detail: str
    """What was found: the architecture, or why it cannot be used and what to do."""


def inspect_model(spec: ModelSpec) -> ModelState:
    """Read what ``spec`` points at just far enough to tell whether it can load."""
    try:
        if spec.kind == "hub":
            return _hub(spec.source)
        path = Path(spec.source)
        if not path.exists():
            return ModelState(False, "missing: nothing at that path")
        if spec.kind == "single_file":
            return _single_file(path)
        return _folder(path)
    except ModelError as error:
        return ModelState(False, _first_line(str(error)))
    except OSError as error:
        return ModelState(False, f"unreadable: {error.strerror or error}")


def _single_file(path: Path) -> ModelState:
    if path.suffix.lower() == ".ckpt" and not zipfile.is_zipfile(path):
        return ModelState(False, "not a PyTorch checkpoint (a .ckpt is a zip archive)")
    shapes, _ = read_checkpoint(path)
    return ModelState(True, f"{detect_architecture(shapes, source=path.name)} checkpoint")


def _folder(folder: Path) -> ModelState:
    architecture = folder_architecture(folder)
    if folder_weights_file(folder) is None:
        return ModelState(False, "a diffusers folder without UNet weights (unet/*.safetensors)")
    return ModelState(True, f"{architecture} diffusers folder")


def _hub(repo_id: str) -> ModelState:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "model_index.json")
    if isinstance(cached, str):
        return ModelState(True, "Hub model, downloaded")
    return ModelState(
        False, "Hub model, not downloaded yet: needs internet at start, or `main.py models fetch` it now"
    )


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else "cannot be used"
