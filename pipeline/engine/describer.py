"""``/describe``: an image becomes four suggested prompts, from an image-captioning model.

The model is any image-to-text model transformers' ``AutoModelForImageTextToText`` and
``AutoProcessor`` load, from a folder or a Hub id (``NANKE_DESCRIBE_MODEL``, for example
``Salesforce/blip-image-captioning-large``); it is loaded on first use, on the device the
engines use. The first suggestion is the model's most likely caption (beam search); the others
are sampled, each from its own seed drawn from the image's bytes, so one image always gives the
same four suggestions. A suggestion already given is sampled again (a few times at most). Each
ends with ``--ar W:H`` when the image is not square, as Midjourney's do.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pipeline.errors import ModelLoadError

log = logging.getLogger(__name__)

SUGGESTIONS = 4
MAX_NEW_TOKENS = 40
TRIES = 3
"""Samples drawn per suggestion before a repeated one is accepted as it is."""
MAX_RATIO = 4
"""An aspect ratio further from square than this is not suggested."""


def aspect_flag(width: int, height: int) -> str:
    """`` --ar W:H`` for a non-square image (in lowest terms, up to 16 a side), else ``""``."""
    if width == height or not width or not height:
        return ""
    divisor = math.gcd(width, height)
    wide, tall = width // divisor, height // divisor
    while max(wide, tall) > 16:  # 1000x1003 is about 1:1; 1920x1080 is 16:9
        best = min(
            ((w, t) for w in range(1, 17) for t in range(1, 17)),
            key=lambda pair: abs(pair[0] / pair[1] - width / height),
        )
        wide, tall = best
    if wide == tall or max(wide, tall) / min(wide, tall) > MAX_RATIO:
        return ""
    return f" --ar {wide}:{tall}"


class Describer:
    """A loaded captioning model that suggests prompts for images (one image at a time)."""

    def __init__(self, model: Any, processor: Any, *, device: torch.device, name: str) -> None:
        self.model = model
        self.processor = processor
        self.device = device
        self.name = name
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, source: str, *, device: torch.device, dtype: torch.dtype, cache_dir: Path | None = None
    ) -> Describer:
        """Load the captioning model at ``source`` (a folder or a Hub id)."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from pipeline.engine.quiet import quiet_transformers_loading

        try:
            with quiet_transformers_loading():
                processor = AutoProcessor.from_pretrained(source)
                model = AutoModelForImageTextToText.from_pretrained(source, torch_dtype=dtype)
        except Exception as error:  # a missing folder, no network for a Hub id, a foreign model
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ModelLoadError(
                f"NANKE_DESCRIBE_MODEL: {source!r} cannot be loaded as a captioning model: {first}"
            ) from None
        model.to(device).eval()
        log.info("describe model %s ready on %s", source, device)
        return cls(model, processor, device=device, name=source)

    def describe(self, image: Image.Image, *, count: int = SUGGESTIONS) -> list[str]:
        """``count`` different prompts suggested for ``image``, the likeliest first."""
        picture = image.convert("RGB")
        seed = int.from_bytes(hashlib.sha256(picture.tobytes()).digest()[:4], "big")
        flag = aspect_flag(*picture.size)
        with self._lock, torch.no_grad():
            inputs = self.processor(images=picture, return_tensors="pt").to(self.device)
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
            found: list[str] = []
            first = self._caption(inputs, num_beams=3, do_sample=False)
            if first:
                found.append(first)
            attempt = 0
            while len(found) < count and attempt < count * TRIES:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed + attempt)
                    caption = self._caption(inputs, do_sample=True, top_p=0.9)
                attempt += 1
                if caption and (caption not in found or attempt >= count * TRIES - (count - len(found))):
                    found.append(caption)
        return [f"{caption}{flag}" for caption in found[:count]]

    def _caption(self, inputs: Any, **options: Any) -> str:
        ids = self.model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, min_new_tokens=2, **options)
        text = self.processor.decode(ids[0], skip_special_tokens=True)
        return " ".join(text.split()).strip(" ,.")
