"""Textual-inversion embeddings on a loaded pipeline, used by name in prompts as in the WebUI.

Every file of the embeddings folder that fits the model becomes new tokens of its tokenizer(s),
named after the file (``easynegative.safetensors`` → ``easynegative``; matched without regard to
case, as CLIP lowercases what it reads). A prompt or negative prompt that contains the name uses
the embedding (``easynegative``, ``(bad-hands-5:1.2)``); a name with several vectors expands to
all of them (see :mod:`pipeline.domain.prompt.embeddings`).

Formats read: the WebUI's ``.pt`` (``string_to_param``), its ``.safetensors`` (``emb_params``),
SDXL's ``clip_l``/``clip_g`` pair (one part per text encoder), and diffusers' ``{token: vector}``.
``.pt`` and ``.bin`` files are read tensors-only (no pickled code runs). A file that does not fit
the model's text encoders (an SD 1.x embedding on SDXL) is skipped and logged once.

The folder is looked at before every batch; when its files change, all embeddings are unloaded
and the fitting ones loaded again (they are small).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pipeline.domain.models.resources import Resource, ResourceFolder

log = logging.getLogger(__name__)

MAX_VECTORS = 75
"""An embedding longer than one chunk cannot be used (the WebUI refuses those too)."""


def read_vectors(path: Path) -> dict[str, torch.Tensor]:
    """The vectors of an embedding file: ``{"clip_l": ..., "clip_g": ...}`` for SDXL, else ``{"": ...}``.

    Each value is ``(vectors, width)``. Raises ``ValueError`` for a file that holds no embedding.
    """
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        data: Any = load_file(str(path))
    else:
        data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict):
        raise ValueError(f"holds a {type(data).__name__}, not an embedding")
    if "clip_l" in data and "clip_g" in data:
        return {"clip_l": _matrix(data["clip_l"]), "clip_g": _matrix(data["clip_g"])}
    if isinstance(data.get("string_to_param"), dict) and data["string_to_param"]:
        return {"": _matrix(next(iter(data["string_to_param"].values())))}
    if "emb_params" in data:
        return {"": _matrix(data["emb_params"])}
    tensors = [value for value in data.values() if isinstance(value, torch.Tensor)]
    if len(tensors) == 1:
        return {"": _matrix(tensors[0])}
    raise ValueError("holds no embedding vectors this reader knows")


def _matrix(value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.ndim not in (1, 2):
        raise ValueError("holds something that is not a vector or a matrix of vectors")
    matrix = value.detach().float().reshape(-1, value.shape[-1])
    if not 1 <= matrix.shape[0] <= MAX_VECTORS:
        raise ValueError(f"has {matrix.shape[0]} vectors (at most {MAX_VECTORS})")
    return matrix


class Embeddings:
    """The embeddings loaded into one pipeline's tokenizers and text encoders."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self._state: tuple[tuple[str, int, int], ...] = ()
        self._loaded: dict[str, Resource] = {}
        self._refused: set[tuple[str, int]] = set()
        self._pattern: re.Pattern[str] | None = None

    @property
    def names(self) -> list[str]:
        return sorted(self._loaded)

    @property
    def state(self) -> tuple[tuple[str, int, int], ...]:
        """The files loaded (name, size and time stamp): it changes when the loaded set does."""
        return self._state

    def refresh(self, folder: ResourceFolder) -> None:
        """Load what the folder holds now, if it changed since the last call."""
        resources = folder.all()
        state = tuple(sorted(_stamp(resource) for resource in resources))
        if state == self._state:
            return
        self._state = state
        if self._loaded:
            self._unload()
        for resource in resources:
            self._load(resource)
        names = sorted(self._loaded, key=len, reverse=True)
        self._pattern = (
            re.compile("|".join(re.escape(name) for name in names), re.IGNORECASE) if names else None
        )
        if resources:
            log.info("embeddings ready: %s", ", ".join(sorted(self._loaded)) or "none fit this model")

    def used(self, texts: Sequence[str]) -> list[Resource]:
        """The embeddings ``texts`` call on, in name order (for the ``TI hashes`` of the infotext)."""
        if self._pattern is None:
            return []
        found = {match[0].casefold() for text in texts for match in self._pattern.finditer(text)}
        return [self._loaded[name] for name in sorted(found) if name in self._loaded]

    # -- internals ------------------------------------------------------------------------------

    def _encoders(self) -> list[tuple[str, Any, Any]]:
        pairs = [("clip_l", self.pipe.tokenizer, self.pipe.text_encoder)]
        if getattr(self.pipe, "text_encoder_2", None) is not None:
            pairs.append(("clip_g", self.pipe.tokenizer_2, self.pipe.text_encoder_2))
        return pairs

    def _load(self, resource: Resource) -> None:
        token = resource.path.stem.casefold()
        stamp = (str(resource.path), resource.path.stat().st_mtime_ns)
        if stamp in self._refused:
            return
        if not token or any(c.isspace() for c in token) or len(token) < 2:
            self._refuse(stamp, resource, "its name cannot be a prompt word")
            return
        try:
            vectors = read_vectors(resource.path)
        except Exception as error:  # a truncated file, a foreign pickle, ...
            self._refuse(stamp, resource, f"it cannot be read ({error})")
            return
        encoders = self._encoders()
        parts = []
        for part, tokenizer, encoder in encoders:
            matrix = vectors.get(part) if len(encoders) > 1 else vectors.get("", vectors.get("clip_l"))
            width = encoder.get_input_embeddings().weight.shape[1]
            if matrix is None or matrix.shape[1] != width:
                shown = (
                    "an SDXL embedding"
                    if "clip_g" in vectors
                    else f"{next(iter(vectors.values())).shape[1]} wide"
                )
                self._refuse(stamp, resource, f"it does not fit this model ({shown})")
                return
            if token in tokenizer.get_vocab():
                self._refuse(stamp, resource, "its name is already a word of the tokenizer")
                return
            parts.append((tokenizer, encoder, matrix))
        from pipeline.engine.quiet import quiet_transformers_loading

        with quiet_transformers_loading():
            for tokenizer, encoder, matrix in parts:
                self.pipe.load_textual_inversion(
                    {token: matrix.to(encoder.dtype)}, token=token, tokenizer=tokenizer, text_encoder=encoder
                )
        self._loaded[token] = resource

    def _unload(self) -> None:
        for _, tokenizer, encoder in self._encoders():
            self.pipe.unload_textual_inversion(tokenizer=tokenizer, text_encoder=encoder)
        self._loaded.clear()

    def _refuse(self, stamp: tuple[str, int], resource: Resource, why: str) -> None:
        self._refused.add(stamp)
        log.warning("the embedding %s is not used: %s", resource.path.name, why)


def _stamp(resource: Resource) -> tuple[str, int, int]:
    try:
        stat = resource.path.stat()
    except OSError:
        return (str(resource.path), 0, 0)
    return (str(resource.path), stat.st_mtime_ns, stat.st_size)
