"""LoRAs on a loaded pipeline: loaded once, kept while memory allows, switched per batch.

diffusers (through peft) reads both layouts people share: the kohya/WebUI one
(``lora_unet_..._to_q.lora_down.weight`` with ``.alpha``; LDM block names for SDXL) and the
diffusers/PEFT one (``unet....to_q.lora_A.weight``). Each file becomes a named adapter on the UNet
and text encoders; a batch turns on exactly its set with its weights, or turns LoRAs off
altogether (the layers then run their original weights, so a request without LoRAs makes the image
it made before any LoRA was loaded). Switching never reloads the checkpoint.

Adapters stay loaded up to :data:`DEFAULT_BUDGET_BYTES` of LoRA files; past that the least
recently used ones not needed now are deleted. Before loading, a file's tensor shapes are read
(without its tensors) to refuse a LoRA made for another architecture with a clear message.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.domain.models.architecture import read_checkpoint
from pipeline.domain.models.resources import Resource
from pipeline.errors import ModelLoadError, ResourceMismatch

log = logging.getLogger(__name__)

DEFAULT_BUDGET_BYTES = 2 * 1024**3
ARCHITECTURE_NAMES = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}
_DOWN_SUFFIXES = ("attn2_to_k.lora_down.weight", "attn2.to_k.lora_A.weight", "attn2.to_k.lora.down.weight")
_WEIGHT_SUFFIXES = ("lora_down.weight", "lora_A.weight", "lora.down.weight", "hada_w1_a", "lokr_w1")
_LYCORIS_MARKERS = ("hada_w1_a", "lokr_w1", "lokr_w1_a", ".oft_", "boft_")


@dataclass
class _Adapter:
    name: str
    size: int
    mtime_ns: int


def width_name(width: int) -> str:
    """A text-embedding width in words (``SDXL``), for messages."""
    return ARCHITECTURE_NAMES.get(width, f"a model with {width}-wide text embeddings")


def check_lora(path: Path, display: str, *, context_width: int, sdxl: bool) -> None:
    """Refuse a LoRA that cannot fit a model with ``context_width``-wide cross-attention.

    Raises :class:`ResourceMismatch` naming the LoRA and both architectures, or for a LyCORIS
    variant (LoHa, LoKr, OFT) diffusers cannot load.
    """
    try:
        shapes, _ = read_checkpoint(path)
    except ModelLoadError as error:
        log.warning("cannot read the LoRA %s: %s", path, error)
        raise ResourceMismatch(
            f"The LoRA “{display}” cannot be read (it may be truncated).", key="lora_unreadable",
            params={"name": display},
        ) from None  # fmt: skip
    if not any(key.endswith(_WEIGHT_SUFFIXES) for key in shapes):
        raise ResourceMismatch(
            f"The LoRA “{display}” could not be loaded: its layout is not one nanke reads.",
            key="lora_layout",
            params={"name": display},
        )
    if any(marker in key for key in shapes for marker in _LYCORIS_MARKERS):
        raise ResourceMismatch(
            f"The LoRA “{display}” is a LyCORIS LoHa/LoKr/OFT file, which nanke cannot load.",
            key="lora_lycoris",
            params={"name": display},
        )
    model = width_name(context_width)
    for key, shape in shapes.items():
        if key.endswith(_DOWN_SUFFIXES) and len(shape) == 2 and int(shape[1]) != context_width:
            made_for = width_name(int(shape[1]))
            raise ResourceMismatch(
                f"The LoRA “{display}” is made for {made_for}, and this model is {model}.",
                key="lora_architecture",
                params={"name": display, "made_for": made_for, "model": model},
            )
    second_encoder = any(key.startswith(("lora_te2_", "text_encoder_2.")) for key in shapes)
    if second_encoder and not sdxl:
        raise ResourceMismatch(
            f"The LoRA “{display}” is made for SDXL, and this model is {model}.",
            key="lora_architecture",
            params={"name": display, "made_for": "SDXL", "model": model},
        )


class LoraAdapters:
    """The LoRA adapters loaded on one pipeline, and which of them are on."""

    def __init__(self, pipe: Any, *, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.pipe = pipe
        self.budget_bytes = budget_bytes
        self.loads = 0
        """How many files were loaded so far (a cached LoRA is not loaded again)."""
        self._adapters: OrderedDict[Path, _Adapter] = OrderedDict()
        self._counter = 0
        self._enabled = False
        self._lock = threading.Lock()

    @property
    def loaded(self) -> list[Path]:
        return list(self._adapters)

    def activate(self, loras: Sequence[tuple[Resource, float]]) -> list[str]:
        """Turn on exactly ``loras`` (file, weight) for the next diffusers call; none: LoRAs off.
        Returns the names of the adapters now on (a file loaded again gets a new name)."""
        with self._lock:
            if not loras:
                if self._enabled:
                    self.pipe.disable_lora()
                    self._enabled = False
                return []
            names = [self._adapter(resource, keep={r.path for r, _ in loras}) for resource, _ in loras]
            self.pipe.enable_lora()
            self.pipe.set_adapters(names, adapter_weights=[float(weight) for _, weight in loras])
            self._enabled = True
            log.debug("LoRAs on: %s", ", ".join(f"{r.name}:{w:g}" for r, w in loras))
            return names

    def _adapter(self, resource: Resource, *, keep: set[Path]) -> str:
        path = resource.path
        stat = path.stat()
        known = self._adapters.get(path)
        if known is not None and known.mtime_ns == stat.st_mtime_ns and known.size == stat.st_size:
            self._adapters.move_to_end(path)
            return known.name
        if known is not None:
            self._delete(path)
        self._make_room(stat.st_size, keep=keep)
        unet = self.pipe.unet.config
        check_lora(
            path,
            resource.name,
            context_width=int(unet.cross_attention_dim),
            sdxl=getattr(self.pipe, "text_encoder_2", None) is not None,
        )
        self._counter += 1
        name = f"lora_{self._counter}"
        from pipeline.engine.quiet import quiet_transformers_loading

        try:
            with quiet_transformers_loading(), warnings.catch_warnings():
                # peft warns that a model with one adapter gets another: that is the point here
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                self.pipe.load_lora_weights(str(path), adapter_name=name)
        except Exception as error:
            log.warning("loading the LoRA %s failed: %s", path, error)
            raise ResourceMismatch(
                f"The LoRA “{resource.name}” could not be loaded: its layout is not one nanke reads.",
                key="lora_layout",
                params={"name": resource.name},
            ) from None
        self.loads += 1
        self._adapters[path] = _Adapter(name, stat.st_size, stat.st_mtime_ns)
        log.info("loaded the LoRA %s (%.1f MB)", resource.name, stat.st_size / 1e6)
        return name

    def _make_room(self, size: int, *, keep: set[Path]) -> None:
        used = sum(adapter.size for adapter in self._adapters.values())
        for path in list(self._adapters):
            if used + size <= self.budget_bytes:
                break
            if path in keep:
                continue
            used -= self._adapters[path].size
            self._delete(path)

    def _delete(self, path: Path) -> None:
        adapter = self._adapters.pop(path)
        self.pipe.delete_adapters(adapter.name)
        log.info("unloaded the LoRA adapter of %s to make room", path.name)
