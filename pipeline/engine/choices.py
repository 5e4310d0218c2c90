"""What a batch runs with beside the checkpoint: its LoRAs, the embeddings, its VAE and tiling.

:meth:`Choices.apply` sets them on the pipeline before the batch (a batch shares them all, see
``GenerationRequest.batch_key``) and returns the infotext pairs that name the files by the
WebUI's hashes, so a civitai reader finds the same files:
``Lora hashes: "name: 0123456789ab"``, ``TI hashes: "easynegative: c74b4e810b03"``,
``VAE hash: 63aeecb90f``, ``VAE: vae-ft-mse-840000.safetensors``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.domain.models.resources import Resources
from pipeline.domain.prompt.networks import read_tags
from pipeline.domain.request import GenerationRequest
from pipeline.domain.text import shorten
from pipeline.engine.inversions import Embeddings
from pipeline.engine.networks import LoraAdapters
from pipeline.engine.tiling import set_tiling
from pipeline.engine.vae_choice import VaeChoice
from pipeline.errors import ResourceNotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chosen:
    """What :meth:`Choices.apply` set: one dict of infotext pairs per request, and whether the
    VAE differs from the previous batch's."""

    infotext: list[dict[str, str]]
    vae_changed: bool


def hash_list(pairs: Sequence[tuple[str, str]]) -> str:
    """``name: hash, name: hash`` (the value of ``Lora hashes`` and ``TI hashes``)."""
    return ", ".join(f"{name.replace(',', ' ').replace(':', ' ')}: {digest}" for name, digest in pairs)


class Choices:
    """The LoRA adapters, embeddings, VAE and tiling of one pipeline, set per batch.

    After each :meth:`apply`, ``unet_state`` and ``text_state`` sum up what it set that the UNet
    and the text encoders compute with (the adapters on with their weights, how many files were
    loaded so far, tiling; the embeddings loaded): equal states compute the same. A CUDA graph of
    the UNet and text embeddings made ahead are kept only while their state holds.
    """

    def __init__(self, pipe: Any, model: Any, resources: Resources) -> None:
        self.pipe = pipe
        self.resources = resources
        spec = getattr(model, "spec", None)
        self.checkpoint: Path | None = getattr(spec, "path", None)
        self.loras = LoraAdapters(pipe)
        self.embeddings = Embeddings(pipe)
        self.vaes = VaeChoice(pipe)
        self._tiled = False
        self.unet_state: tuple[object, ...] = ()
        self.text_state: tuple[object, ...] = ()

    def apply(self, batch: Sequence[GenerationRequest], *, pipes: list[Any]) -> Chosen:
        head = batch[0]
        cache = self.resources.cache_dir

        # a. LoRAs: every name must be in the folder (weight 0 counts as none)
        self.resources.check(head)
        loras = [
            (found, tag.weight)
            for tag in read_tags(head.prompt, head.negative_prompt)
            if tag.weight != 0 and (found := self.resources.loras.find(tag.name)) is not None
        ]
        loras.sort(key=lambda pair: pair[0].name.casefold())
        adapters = self.loras.activate(loras)

        # b. The VAE: the request's, else the configured one, else the model's own
        try:
            vae = self.resources.vae_for(head.vae, self.checkpoint)
        except LookupError as missing:  # NANKE_VAE names nothing (a request's VAE was checked above)
            name = shorten(Path(str(missing)).name)
            raise ResourceNotFound(
                f"There is no VAE called “{name}” here.", key="vae_not_found", params={"name": name}
            ) from None
        before = self.vaes.current
        decoder = self.vaes.use(vae, pipes=pipes)
        changed = (before.path if before else None) != (vae.path if vae else None)

        # c. Embeddings the folder holds now; tiling on or off
        self.embeddings.refresh(self.resources.embeddings)
        if head.tile or self._tiled:
            set_tiling([self.pipe.unet, decoder, *self.vaes.all], on=head.tile)
            self._tiled = head.tile

        # d. The infotext pairs naming the files
        shared: dict[str, str] = {}
        if loras:
            shared["Lora hashes"] = hash_list([(r.name, r.short_hash(cache)) for r, _ in loras])
        if vae is not None:
            shared["VAE hash"] = vae.short_hash(cache)
            shared["VAE"] = vae.file_name
        infotext = []
        for request in batch:
            pairs = dict(shared)
            used = self.embeddings.used([request.prompt, request.negative_prompt])
            if used:
                pairs["TI hashes"] = hash_list([(r.path.stem, r.short_hash(cache)) for r in used])
            infotext.append(pairs)
        # e. What the UNet and the text encoders now compute with
        on = tuple(zip(adapters, (float(weight) for _, weight in loras), strict=True))
        self.unet_state = (on, self.loras.loads, head.tile)
        self.text_state = (on, self.loras.loads, self.embeddings.state)
        return Chosen(infotext=infotext, vae_changed=changed)

    def tile_float32_copy(self, vae: Any) -> None:
        """Give the engine's float32 VAE copy the padding of the VAE in use."""
        set_tiling([vae], on=self._tiled)
