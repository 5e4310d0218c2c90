"""The optional image safety check (``NANKE_SAFETY_CHECKER``): which finished images are adult content.

Two kinds of classifier load from a folder or a Hub id:

- diffusers' **Stable Diffusion safety checker** (``StableDiffusionSafetyChecker``, e.g.
  ``CompVis/stable-diffusion-safety-checker``, or the ``safety_checker`` folder of a Stable
  Diffusion 1.x pipeline, whose ``feature_extractor`` folder holds its image processor). It
  compares the image's CLIP embedding with its concept embeddings; an image is flagged when any
  concept's score passes its threshold, with the small extra margin the checker adds once a
  "special care" concept is seen (its vectorised rule).
- any other **image classifier** of ``transformers`` (a ViT or CLIP fine-tuned for NSFW
  detection, e.g. ``Falconsai/nsfw_image_detection``): an image is flagged when the labels that
  name adult content (:data:`ADULT_LABELS`) together score over one half.

Unlike a diffusers pipeline's own checker, nothing is blacked out here: the images are kept as
they are and only flagged, and what is shown where is the guild's policy (withheld, or posted
as a spoiler, outside age-restricted channels).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pipeline.domain.models.catalog import looks_like_hub_id
from pipeline.errors import ModelLoadError, ModelNotFound

log = logging.getLogger(__name__)

SETTING = "NANKE_SAFETY_CHECKER"
ADULT_LABELS = frozenset({"nsfw", "porn", "hentai", "sexy", "explicit", "unsafe", "nude", "nudity"})
"""Label names (case-insensitive) an image classifier uses for adult content."""
SPECIAL_CARE_MARGIN = 0.01
"""What the Stable Diffusion checker adds to every concept score once a special-care concept is seen."""
CONFIG = "config.json"
PROCESSOR_CONFIG = "preprocessor_config.json"


@dataclass(frozen=True)
class Where:
    """Where the classifier's weights and its image processor are."""

    model: str
    processor: str
    local: bool


def locate(source: str) -> Where:
    """The model and processor locations of ``source``: a classifier folder, a pipeline folder
    with ``safety_checker`` and ``feature_extractor`` folders, or a Hub id."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        model = folder / "safety_checker" if (folder / "safety_checker" / CONFIG).is_file() else folder
        if not (model / CONFIG).is_file():
            raise ModelNotFound(
                f"{SETTING}: {source!r} has no {CONFIG}: point it at a safety checker or image "
                "classifier folder (or a Stable Diffusion folder with a safety_checker folder)"
            )
        candidates = (folder / "feature_extractor", model, folder)
        processor = next((c for c in candidates if (c / PROCESSOR_CONFIG).is_file()), None)
        if processor is None:
            raise ModelNotFound(
                f"{SETTING}: {source!r} has no {PROCESSOR_CONFIG} (beside the model, or in a "
                "feature_extractor folder)"
            )
        return Where(str(model), str(processor), local=True)
    if looks_like_hub_id(source) and not folder.exists():
        return Where(source, source, local=False)
    raise ModelNotFound(f"{SETTING}: {source!r} is not a folder or a Hugging Face Hub id (owner/name)")


class SafetyChecker:
    """Flags adult images with a loaded classifier; thread-safe (one check at a time)."""

    def __init__(
        self, model: Any, processor: Any, *, kind: str, name: str, device: torch.device, dtype: torch.dtype
    ) -> None:
        self.model = model.to(device=device, dtype=dtype).eval()
        self.processor = processor
        self.kind = kind
        """``sd`` (the Stable Diffusion safety checker) or ``classifier``."""
        self.name = name
        self.device = device
        self.dtype = dtype
        self._adult = _adult_label_ids(model) if kind == "classifier" else []
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, source: str, *, device: torch.device, dtype: torch.dtype, cache_dir: Path | None = None
    ) -> SafetyChecker:
        """Load the classifier at ``source`` (see :func:`locate`); one clear line when it cannot."""
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        where = locate(source)
        kwargs: dict[str, Any] = {} if where.local else {"cache_dir": cache_dir}
        try:
            architectures = _architectures(where, kwargs)
            processor = AutoImageProcessor.from_pretrained(where.processor, **kwargs)
            if "StableDiffusionSafetyChecker" in architectures:
                from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

                model, kind = StableDiffusionSafetyChecker.from_pretrained(where.model, **kwargs), "sd"
            else:
                model, kind = (
                    AutoModelForImageClassification.from_pretrained(where.model, **kwargs),
                    "classifier",
                )
        except (OSError, ValueError, KeyError) as error:
            raise ModelLoadError(
                f"{SETTING}: {source!r} could not be loaded as an image safety classifier "
                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
            ) from error
        checker = cls(
            model, processor, kind=kind, name=Path(source).name or source, device=device, dtype=dtype
        )
        if kind == "classifier" and not checker._adult:
            raise ModelLoadError(
                f"{SETTING}: {source!r} is an image classifier without an adult-content label "
                f"(its labels: {', '.join(_labels(model)) or 'none'}; expected one of "
                f"{', '.join(sorted(ADULT_LABELS))})"
            )
        log.info("image safety check %s loaded (%s) on %s", checker.name, kind, device)
        return checker

    @torch.inference_mode()
    def flags(self, images: Sequence[Image.Image]) -> list[bool]:
        """For each image, whether it is adult content."""
        if not images:
            return []
        with self._lock:
            inputs = self.processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
            pixels = inputs["pixel_values"].to(device=self.device, dtype=self.dtype)
            flagged = self._sd_flags(pixels) if self.kind == "sd" else self._classifier_flags(pixels)
        return [bool(value) for value in flagged.tolist()]

    def _sd_flags(self, pixels: torch.Tensor) -> torch.Tensor:
        model = self.model
        embeds = model.visual_projection(model.vision_model(pixels)[1]).float()
        special = (
            _cosine(embeds, model.special_care_embeds.float()) - model.special_care_embeds_weights.float()
        )
        margin = (special > 0).any(dim=1, keepdim=True).float() * SPECIAL_CARE_MARGIN
        concepts = (
            _cosine(embeds, model.concept_embeds.float()) - model.concept_embeds_weights.float() + margin
        )
        return (concepts > 0).any(dim=1)

    def _classifier_flags(self, pixels: torch.Tensor) -> torch.Tensor:
        probabilities = self.model(pixel_values=pixels).logits.float().softmax(dim=-1)
        return probabilities[:, self._adult].sum(dim=1) > 0.5


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(a) @ torch.nn.functional.normalize(b).T


def _architectures(where: Where, kwargs: dict[str, Any]) -> list[str]:
    if where.local:
        return list(
            json.loads((Path(where.model) / CONFIG).read_text(encoding="utf-8")).get("architectures") or []
        )
    from transformers import AutoConfig

    return list(getattr(AutoConfig.from_pretrained(where.model, **kwargs), "architectures", None) or [])


def _labels(model: Any) -> list[str]:
    return [str(label) for label in (getattr(model.config, "id2label", None) or {}).values()]


def _adult_label_ids(model: Any) -> list[int]:
    id2label = getattr(model.config, "id2label", None) or {}
    return sorted(
        int(index) for index, label in id2label.items() if str(label).strip().lower() in ADULT_LABELS
    )
