"""Turning an infotext's prompt and settings into a request nanke can run, saying what it drops.

Decisions:
- LoRA and LyCORIS tags (``<lora:name:0.8>``) stay in the prompts; the files they name (and the
  embeddings and VAE of ``TI hashes``/``VAE hash``) are looked up by hash, then by name, where the
  request is imported (:mod:`pipeline.domain.metadata.imported`). Tags nanke cannot run
  (hypernetworks, extra LoRA arguments) are removed and reported.
- The hires fix (``Hires upscale``, ``Hires steps``, ``Hires upscaler``, ``Denoising strength``),
  ``Tiling`` and the ``Styles array`` are honoured; a model upscaler (ESRGAN and the like) is
  replaced by Lanczos and reported, as are the hires pass's own sampler, prompt or CFG.
- Values outside nanke's limits are brought inside them (steps, CFG, clip skip clamped; sizes
  rounded to a multiple of 8 and clamped) and reported; a value that is not a number keeps the
  default and is reported, and so does one longer than
  :data:`~pipeline.domain.text.MAX_NUMBER_CHARS` characters (it is not converted at all).
- An unknown sampler (or a schedule type nanke lacks) keeps the default sampler (or the plain
  sampler) and is reported.
- The request is always text-to-image: an img2img source's ``Denoising strength`` is reported and
  returned separately; with hires-fix keys it belongs to the hires pass.
- Settings that change the image but that nanke does not have are reported one note per topic;
  informational keys (``Version``, ``Hashes``, ...) are ignored silently; any other key is
  listed in one "ignored" note.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.domain.models.resources import vae_name
from pipeline.domain.prompt.networks import find_tags, runnable_tags, strip_tags
from pipeline.domain.request import (
    DEFAULT_HIRES_DENOISE,
    DEFAULT_HIRES_UPSCALER,
    MAX_CFG,
    MAX_CLIP_SKIP,
    MAX_HIRES_SCALE,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    MAX_STYLES,
    MIN_CFG,
    MIN_HIRES_SCALE,
    MIN_SIDE,
    MIN_STEPS,
    SIZE_MULTIPLE,
    GenerationRequest,
    hires_upscaler_named,
)
from pipeline.domain.samplers import DEFAULT_SAMPLER, automatic_sampler, canonical_sampler, means_automatic
from pipeline.domain.text import listing, too_long_for_a_number
from pipeline.domain.text import shorten as _shown
from pipeline.errors import InvalidRequest

log = logging.getLogger(__name__)

_SIZE = re.compile(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*")
# Commas with only whitespace between them, and the whitespace before them. The look-behind makes
# a match start only where a run of whitespace starts: without it, searching a long run of spaces
# that no comma follows would take time quadratic in its length.
_EMPTY_ITEMS = re.compile(r"(?<!\s)\s*,(?:\s*,)+")

_USED = frozenset(
    {
        "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model", "Model hash", "Clip skip",
        "Hires upscale", "Hires steps", "Hires upscaler", "Tiling", "Styles array", "VAE", "VAE hash",
        "Lora hashes", "TI hashes", "Hires resize",
    }
)  # fmt: skip
_STRENGTH = "Denoising strength"
_INFORMATIONAL = frozenset({"version", "hashes", "batch size", "batch pos", "app", "civitai resources"})


@dataclass(frozen=True)
class _Topic:
    """A group of A1111 settings nanke cannot honour, and what that means for the image."""

    label: str
    consequence: str
    keys: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    def covers(self, key: str) -> bool:
        folded = key.casefold()
        return folded in self.keys or folded.startswith(self.prefixes)


_HIRES = _Topic(
    "hires fix settings",
    "are not supported: the hires pass uses the main sampler, prompts and CFG",
    prefixes=("hires ",),
)
_TOPICS: tuple[_Topic, ...] = (
    _HIRES,
    _Topic(
        "SDXL refiner",
        "is not supported: only the main model runs",
        keys=frozenset({"refiner", "refiner switch at"}),
    ),
    _Topic(
        "ControlNet",
        "is not supported: the image is not guided by a control image",
        prefixes=("controlnet",),
    ),
    _Topic(
        "ADetailer",
        "is not supported: faces and hands are not re-detailed",
        prefixes=("adetailer",),
    ),
    _Topic(
        "variation seed",
        "is not supported: only the main seed is used",
        keys=frozenset({"variation seed", "variation seed strength", "seed resize from"}),
    ),
    _Topic(
        "sampler noise settings",
        "cannot be changed in nanke: ancestral and SDE samplers may differ",
        keys=frozenset(
            {
                "ensd",
                "eta",
                "eta ddim",
                "sigma churn",
                "sigma tmin",
                "sigma tmax",
                "sigma noise",
                "s_churn",
                "s_tmin",
                "s_tmax",
                "s_noise",
            }
        ),
    ),
    _Topic("face restoration", "is not supported", keys=frozenset({"face restoration"})),
    _Topic(
        "hypernetwork",
        "is not supported",
        keys=frozenset({"hypernet", "hypernet hash", "hypernet strength"}),
    ),
)


@dataclass(frozen=True)
class ImportedSettings:
    """What :func:`request_from_settings` made of an infotext."""

    request: GenerationRequest
    unsupported: list[str] = field(default_factory=list)
    model_hash: str | None = None
    denoising_strength: float | None = None
    lora_hashes: dict[str, str] = field(default_factory=dict)
    """``Lora hashes``: case-folded LoRA name → the WebUI's hash, to find the files by."""
    ti_hashes: dict[str, str] = field(default_factory=dict)
    """``TI hashes``: case-folded embedding name → hash."""
    vae_hash: str | None = None


def request_from_settings(prompt: str, negative_prompt: str, settings: Mapping[str, str]) -> ImportedSettings:
    """Map an infotext's prompts and settings pairs to a text-to-image request and notes."""
    notes: list[str] = []
    prompt, removed = _runnable(prompt)
    negative_prompt, removed_negative = _runnable(negative_prompt)
    if removed or removed_negative:
        notes.append(
            f"removed {listing(removed + removed_negative)} from the prompt: nanke cannot load "
            "hypernetworks or run LoRA tags with extra arguments (or the same LoRA twice)"
        )
    values = _Reader(settings, notes)
    width, height = _size(settings.get("Size"), notes)
    hires_scale = _hires_scale(values, width, height)
    hires = hires_scale is not None
    strength = values.number(_STRENGTH, int_only=False)
    if strength is not None and not hires:
        notes.append(
            f"{_STRENGTH}: {settings[_STRENGTH]} comes from an img2img image; "
            "nanke imports it as text-to-image (use Variation on an image to change it)"
        )
    notes.extend(_topic_notes(settings, hires=hires))
    request = GenerationRequest(
        prompt=prompt,
        negative_prompt=negative_prompt,
        width=width,
        height=height,
        steps=int(values.clamped("Steps", 20, MIN_STEPS, MAX_STEPS)),
        cfg_scale=float(values.clamped("CFG scale", 7.0, MIN_CFG, MAX_CFG, int_only=False)),
        sampler=_sampler(settings, notes),
        seed=_seed(values),
        model=(settings.get("Model") or "").strip() or None,
        clip_skip=int(values.clamped("Clip skip", 1, 1, MAX_CLIP_SKIP)),
        vae=vae_name(settings.get("VAE")),
        tile=(settings.get("Tiling") or "").strip().casefold() == "true",
        hires_scale=hires_scale,
        hires_steps=int(values.clamped("Hires steps", 0, 0, MAX_STEPS)) if hires else 0,
        hires_denoise=_hires_denoise(strength, notes) if hires else DEFAULT_HIRES_DENOISE,
        hires_upscaler=_hires_upscaler(settings.get("Hires upscaler"), notes)
        if hires
        else DEFAULT_HIRES_UPSCALER,
        styles=_styles(settings.get("Styles array")),
    )
    return ImportedSettings(
        request=request,
        unsupported=notes,
        model_hash=(settings.get("Model hash") or "").strip() or None,
        denoising_strength=strength if strength is not None and not hires and 0 < strength <= 1 else None,
        lora_hashes=hash_pairs(settings.get("Lora hashes")),
        ti_hashes=hash_pairs(settings.get("TI hashes")),
        vae_hash=(settings.get("VAE hash") or "").strip() or None,
    )


def strip_network_tags(text: str) -> tuple[str, list[str]]:
    """``text`` without ``<lora:...>``/``<lyco:...>``/``<hypernet:...>`` tags, and the tags removed.

    Lines that lost a tag are tidied: empty comma-separated items and doubled spaces collapse.
    """
    return strip_tags(text).strip(), find_tags(text)


def hash_pairs(value: str | None) -> dict[str, str]:
    """``"name: hash, name: hash"`` (``Lora hashes``, ``TI hashes``) as ``{case-folded name: hash}``."""
    pairs: dict[str, str] = {}
    for item in (value or "").split(","):
        name, _, digest = item.rpartition(":")
        if name.strip() and digest.strip():
            pairs[name.strip().casefold()] = digest.strip().casefold()
    return pairs


def _runnable(text: str) -> tuple[str, list[str]]:
    _, refused = runnable_tags(text)
    return (strip_tags(text, only=set(refused)).strip() if refused else text), refused


def _hires_scale(values: _Reader, width: int, height: int) -> float | None:
    """``Hires upscale`` (or a ``Hires resize`` of the same aspect), brought into nanke's range."""
    settings = values.settings
    if "Hires upscale" in settings:
        scale = values.clamped("Hires upscale", 2.0, MIN_HIRES_SCALE, MAX_HIRES_SCALE, int_only=False)
        return scale if scale > MIN_HIRES_SCALE else None
    resize = settings.get("Hires resize")
    match = None if resize is None or too_long_for_a_number(resize) else _SIZE.fullmatch(resize)
    if match is None:
        return None
    target_w, target_h = int(match.group(1)), int(match.group(2))
    scale = round(target_w / width, 4)
    if abs(target_h / height - scale) > 0.01 or not MIN_HIRES_SCALE < scale <= MAX_HIRES_SCALE:
        values.notes.append(
            f"Hires resize: {_shown(resize)} is not {width}x{height} scaled evenly; the hires fix is off"
        )
        return None
    return scale


def _hires_denoise(strength: float | None, notes: list[str]) -> float:
    if strength is None:
        return DEFAULT_HIRES_DENOISE
    if not 0 < strength <= 1:
        notes.append(f"{_STRENGTH}: {strength:g} is outside above 0 to 1; using {DEFAULT_HIRES_DENOISE:g}")
        return DEFAULT_HIRES_DENOISE
    return strength


def _hires_upscaler(name: str | None, notes: list[str]) -> str:
    if name is None or not name.strip():
        return DEFAULT_HIRES_UPSCALER
    found = hires_upscaler_named(name)
    if found is None:
        notes.append(
            f"Hires upscaler: {_shown(name)} is an upscaler model nanke does not have; using Lanczos "
            "(the hires pass then redraws the details)"
        )
        return "Lanczos"
    return found


def _styles(value: str | None) -> tuple[str, ...]:
    try:
        names = json.loads(value) if value else []
    except ValueError:
        return ()
    if not isinstance(names, list):
        return ()
    return tuple(str(name) for name in names if isinstance(name, str) and name.strip())[:MAX_STYLES]


class _Reader:
    """Numeric settings, with notes for values that are not numbers or out of range."""

    def __init__(self, settings: Mapping[str, str], notes: list[str]) -> None:
        self.settings = settings
        self.notes = notes

    def number(self, key: str, *, int_only: bool = True) -> float | None:
        raw = self.settings.get(key)
        if raw is None or not raw.strip():
            return None
        if too_long_for_a_number(raw):
            self.notes.append(f"{key}: {_shown(raw)} is too long to be a number; it was ignored")
            return None
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if value != value or (int_only and not value.is_integer()):
            kind = "a whole number" if int_only else "a number"
            self.notes.append(f"{key}: {_shown(raw)} is not {kind}; it was ignored")
            return None
        return value

    def clamped(self, key: str, default: float, low: float, high: float, *, int_only: bool = True) -> float:
        value = self.number(key, int_only=int_only)
        if value is None:
            return default
        inside = min(max(value, low), high)
        if inside != value:
            self.notes.append(
                f"{key}: {_shown(self.settings[key])} is outside {low:g} to {high:g}; using {inside:g}"
            )
        return inside


def _seed(values: _Reader) -> int | None:
    seed = values.number("Seed")
    if seed is None or seed == -1:
        return None
    if not 0 <= seed <= MAX_SEED:
        wrapped = int(seed) % (MAX_SEED + 1)
        values.notes.append(f"Seed: {_shown(str(int(seed)))} is outside 0 to {MAX_SEED}; using {wrapped}")
        return wrapped
    return int(seed)


def _size(raw: str | None, notes: list[str]) -> tuple[int, int]:
    default = (512, 512)
    if raw is None or not raw.strip():
        return default
    match = None if too_long_for_a_number(raw) else _SIZE.fullmatch(raw)
    if match is None:
        notes.append(f"Size: {_shown(raw)} is not WIDTHxHEIGHT; using {default[0]}x{default[1]}")
        return default
    asked = (int(match.group(1)), int(match.group(2)))
    width, height = (_fit_side(side) for side in asked)
    if (width, height) != asked:
        notes.append(
            f"Size: {asked[0]}x{asked[1]} is not a multiple of {SIZE_MULTIPLE} "
            f"from {MIN_SIDE} to {MAX_SIDE}; using {width}x{height}"
        )
    return width, height


def _fit_side(side: int) -> int:
    rounded = (side + SIZE_MULTIPLE // 2) // SIZE_MULTIPLE * SIZE_MULTIPLE
    return min(max(rounded, MIN_SIDE), MAX_SIDE)


def _sampler(settings: Mapping[str, str], notes: list[str]) -> str:
    """The sampler of ``Sampler`` and ``Schedule type``, as the text's writer ran it.

    Where the schedule type stands for the WebUI's Automatic (:func:`means_automatic`: written so,
    or missing in a WebUI 1.9+ text), the sampler gets the WebUI's Automatic schedule, so DPM++ 2M
    becomes DPM++ 2M Karras; otherwise the schedule is folded into the name as written.
    """
    name = settings.get("Sampler")
    schedule = settings.get("Schedule type")
    if name is None or not name.strip():
        return DEFAULT_SAMPLER
    automatic = means_automatic(schedule, settings.get("Version"))
    try:
        sampler = canonical_sampler(name, schedule)
    except InvalidRequest:
        pass
    else:
        return automatic_sampler(sampler) if automatic else sampler
    try:
        sampler = canonical_sampler(name)
    except InvalidRequest:
        shown = f"{name} ({schedule})" if schedule else name
        notes.append(f"Sampler: {_shown(shown)} is not available in nanke; using {DEFAULT_SAMPLER}")
        return DEFAULT_SAMPLER
    notes.append(f"Schedule type: {_shown(str(schedule))} is not available for {sampler}; using {sampler}")
    return sampler


def _topic_notes(settings: Mapping[str, str], *, hires: bool) -> list[str]:
    grouped: dict[_Topic | None, list[str]] = {}
    for key, value in settings.items():
        if key in _USED or key == _STRENGTH or key.casefold() in _INFORMATIONAL:
            continue
        topic = next((candidate for candidate in _TOPICS if candidate.covers(key)), None)
        grouped.setdefault(topic, []).append(f"{key}: {value}")
    notes = [
        f"{topic.label} ({listing(pairs)}) {topic.consequence}"
        for topic, pairs in grouped.items()
        if topic is not None
    ]
    if None in grouped:
        notes.append(f"ignored settings nanke does not have: {listing(grouped[None])}")
    log.debug("infotext import notes: %s", notes)
    return notes
