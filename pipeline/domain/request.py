"""``GenerationRequest``: what a person asked for, validated up front and stored canonically."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Hashable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from pipeline.domain.canvas import parse_canvas
from pipeline.domain.prompt.networks import lora_set
from pipeline.domain.samplers import DEFAULT_SAMPLER, SAMPLER_NAMES, canonical_sampler
from pipeline.domain.text import clean_text
from pipeline.errors import InvalidRequest

Mode = Literal["txt2img", "img2img", "upscale", "inpaint"]

MODES: tuple[str, ...] = ("txt2img", "img2img", "upscale", "inpaint")
MAX_SEED = 2**32 - 1
MIN_SIDE = 64
MAX_SIDE = 2048
SIZE_MULTIPLE = 8
MAX_PIXELS = 2048 * 2048
MAX_PROMPT_CHARS = 2000
MIN_STEPS, MAX_STEPS = 1, 150
MIN_CFG, MAX_CFG = 1.0, 30.0
MIN_COUNT, MAX_COUNT = 1, 4
MAX_CLIP_SKIP = 12
MIN_HIRES_SCALE, MAX_HIRES_SCALE = 1.0, 4.0
DEFAULT_HIRES_DENOISE = 0.7
DEFAULT_HIRES_UPSCALER = "Latent"
HIRES_UPSCALERS: tuple[str, ...] = (
    "Latent",
    "Latent (antialiased)",
    "Latent (bicubic)",
    "Latent (bicubic antialiased)",
    "Latent (nearest)",
    "Latent (nearest-exact)",
    "Lanczos",
    "Nearest",
    "None",
)
"""The WebUI's hires-fix upscalers nanke has: latent interpolations, and image resizes ("None"
resizes with Lanczos, as the WebUI does). Model upscalers (ESRGAN and the like) are not here."""
MAX_STYLES = 8
CANONICAL_VERSION = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")
BATCH_FIELDS: tuple[str, ...] = (
    "model",
    "mode",
    "width",
    "height",
    "steps",
    "sampler",
    "cfg_scale",
    "clip_skip",
    "strength",
    "vae",
    "tile",
    "hires_scale",
    "hires_steps",
    "hires_denoise",
    "hires_upscaler",
    "canvas",
)
"""The fields requests must share to run in one diffusers call (prompts, seeds and counts may differ).

The scheduler groups queued jobs by them (and by the LoRA set of the prompts, see
:meth:`GenerationRequest.batch_key`) and the engine refuses a batch that mixes them.
"""
_SINCE_V1: dict[str, object] = {
    "vae": None,
    "tile": False,
    "hires_scale": None,
    "hires_steps": 0,
    "hires_denoise": DEFAULT_HIRES_DENOISE,
    "hires_upscaler": DEFAULT_HIRES_UPSCALER,
    "styles": (),
    "canvas": None,
}
"""Fields added after the first stored requests: left out of the canonical JSON at their
defaults, so requests that do not use them keep the JSON they always had."""


@dataclass(frozen=True)
class GenerationRequest:
    """Everything needed to generate (and regenerate) one job's images.

    ``seed`` is the first image's seed; image ``i`` uses ``seed + i`` (A1111's convention).
    ``seed=None`` means "pick one": call :meth:`with_seed` before storing, so the stored row
    always reproduces. ``init_image`` is the sha256 of the source image in the image store, for
    ``img2img`` (variations) and ``upscale``; ``strength`` is the img2img denoising strength.
    ``model=None`` means the configured default model.

    LoRAs are ``<lora:name:weight>`` tags inside the prompts (see
    :mod:`pipeline.domain.prompt.networks`). ``vae`` names a VAE from the VAE folder (``None``: the
    model's own, or the configured one). ``tile`` makes seamless textures. ``hires_scale`` turns
    on the hires fix: the image is made at ``width``x``height``, upscaled by that factor with
    ``hires_upscaler`` and denoised again with ``hires_denoise`` over ``hires_steps`` steps (0: as
    many as ``steps``), as the WebUI does. ``styles`` names the styles already applied to the
    prompts (for the infotext; applying them is the prompt parser's job). ``canvas`` (mode
    ``inpaint``) says how the source image is laid out and which part is painted anew: Zoom Out,
    Pan, Make Square, Vary (Region) (see :mod:`pipeline.domain.canvas`).
    """

    prompt: str
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = DEFAULT_SAMPLER
    seed: int | None = None
    count: int = 1
    model: str | None = None
    clip_skip: int = 1
    mode: Mode = "txt2img"
    init_image: str | None = None
    strength: float | None = None
    vae: str | None = None
    tile: bool = False
    hires_scale: float | None = None
    hires_steps: int = 0
    hires_denoise: float = DEFAULT_HIRES_DENOISE
    hires_upscaler: str = DEFAULT_HIRES_UPSCALER
    styles: tuple[str, ...] = ()
    canvas: str | None = None

    # -- validation ---------------------------------------------------------------------------

    def validate(self, *, max_pixels: int = MAX_PIXELS) -> GenerationRequest:
        """Check every field and return the request with its text and sampler name made canonical.

        Text fields get Unix line breaks and Unicode NFC, and may not hold control characters
        (but tab and line feed) or lone surrogates (see :mod:`pipeline.domain.text`); the sampler
        gets its canonical name. Validating a validated request gives it back unchanged.
        Raises :class:`InvalidRequest` naming the first bad field, its value and what is allowed.
        """
        prompt = _text("prompt", self.prompt)
        if not prompt.strip():
            raise InvalidRequest(
                "prompt", prompt, "some text describing the image", reason="is empty", key="empty_prompt"
            )
        negative_prompt = _text("negative_prompt", self.negative_prompt)
        for name, value in (("width", self.width), ("height", self.height)):
            _check_int(name, value, MIN_SIDE, MAX_SIDE)
            if value % SIZE_MULTIPLE:
                raise InvalidRequest(
                    name,
                    value,
                    f"a multiple of {SIZE_MULTIPLE} from {MIN_SIDE} to {MAX_SIDE}",
                    reason=f"is not a multiple of {SIZE_MULTIPLE}",
                )
        if self.width * self.height > max_pixels:
            raise InvalidRequest(
                "size",
                f"{self.width}x{self.height}",
                f"at most {max_pixels:,} pixels",
                reason=f"has {self.width * self.height:,} pixels",
                key="too_many_pixels",
                params={"pixels": f"{self.width * self.height:,}", "max": f"{max_pixels:,}"},
            )
        _check_int("steps", self.steps, MIN_STEPS, MAX_STEPS)
        _check_float("cfg_scale", self.cfg_scale, MIN_CFG, MAX_CFG)
        if not isinstance(self.sampler, str):
            raise InvalidRequest("sampler", self.sampler, ", ".join(SAMPLER_NAMES))
        sampler = canonical_sampler(clean_text("sampler", self.sampler))
        if self.seed is not None:
            _check_int("seed", self.seed, 0, MAX_SEED)
        _check_int("count", self.count, MIN_COUNT, MAX_COUNT)
        _check_int("clip_skip", self.clip_skip, 1, MAX_CLIP_SKIP)
        model = self.model
        if model is not None:
            if not isinstance(model, str) or not model.strip():
                raise InvalidRequest("model", model, "a configured model name, or nothing for the default")
            model = clean_text("model", model)
        lora_set(prompt, negative_prompt)  # the tags are well formed
        vae = self.vae
        if vae is not None:
            if not isinstance(vae, str) or not vae.strip():
                raise InvalidRequest("vae", vae, "a VAE name, or nothing for the model's own")
            vae = clean_text("vae", vae).strip()
        if not isinstance(self.tile, bool):
            raise InvalidRequest("tile", self.tile, "true or false")
        hires_scale = self._checked_hires(max_pixels)
        styles = self.styles
        if isinstance(styles, list):
            styles = tuple(styles)
        if not isinstance(styles, tuple) or not all(isinstance(name, str) and name for name in styles):
            raise InvalidRequest("styles", styles, "a list of style names")
        if len(styles) > MAX_STYLES:
            raise InvalidRequest("styles", f"{len(styles)} styles", f"at most {MAX_STYLES}")
        if self.mode not in MODES:
            raise InvalidRequest("mode", self.mode, ", ".join(MODES))
        if (self.mode == "inpaint") != (self.canvas is not None):
            raise InvalidRequest(
                "canvas", self.canvas, "a canvas with mode inpaint only", reason="does not fit the mode"
            )
        if self.canvas is not None:
            parse_canvas(self.canvas)
        if self.mode == "txt2img":
            if self.init_image is not None or self.strength is not None:
                raise InvalidRequest(
                    "init_image",
                    self.init_image,
                    "none for txt2img",
                    reason="is only used by img2img/upscale",
                )
        else:
            if not isinstance(self.init_image, str) or not _SHA256.fullmatch(self.init_image):
                raise InvalidRequest("init_image", self.init_image, "the sha256 of a stored image")
            if self.strength is None:
                raise InvalidRequest("strength", None, "a number above 0 and at most 1", reason="is missing")
            _check_float("strength", self.strength, 0.0, 1.0)
            if self.strength <= 0:
                raise InvalidRequest("strength", self.strength, "a number above 0 and at most 1")
        return replace(
            self,
            prompt=prompt,
            negative_prompt=negative_prompt,
            model=model,
            sampler=sampler,
            cfg_scale=float(self.cfg_scale),
            strength=None if self.strength is None else float(self.strength),
            vae=vae,
            hires_scale=hires_scale,
            hires_denoise=float(self.hires_denoise),
            styles=styles,
        )

    def _checked_hires(self, max_pixels: int) -> float | None:
        """Check the hires-fix fields; return the scale as a float (``None``: no hires fix)."""
        _check_int("hires_steps", self.hires_steps, 0, MAX_STEPS)
        _check_float("hires_denoise", self.hires_denoise, 0.0, 1.0)
        if self.hires_upscaler not in HIRES_UPSCALERS:
            raise InvalidRequest("hires_upscaler", self.hires_upscaler, ", ".join(HIRES_UPSCALERS))
        if self.hires_scale is None:
            return None
        _check_float("hires_scale", self.hires_scale, MIN_HIRES_SCALE, MAX_HIRES_SCALE)
        if self.mode != "txt2img":
            raise InvalidRequest("hires_scale", self.hires_scale, "none for img2img/upscale",
                                 reason="is only used by txt2img")  # fmt: skip
        if self.hires_denoise <= 0:
            raise InvalidRequest("hires_denoise", self.hires_denoise, "a number above 0 and at most 1")
        steps = self.hires_steps or self.steps
        if int(steps * self.hires_denoise) < 1:
            raise InvalidRequest(
                "hires_denoise",
                self.hires_denoise,
                f"at least {1 / steps:.3g} with {steps} hires steps",
                reason=f"leaves no denoising step ({steps} steps x {self.hires_denoise:g} < 1)",
            )
        width, height = hires_size(self.width, self.height, float(self.hires_scale))
        if max(width, height) > MAX_SIDE or width * height > max_pixels:
            raise InvalidRequest(
                "hires_scale",
                self.hires_scale,
                f"a scale that keeps the image within {MAX_SIDE} a side and {max_pixels:,} pixels",
                reason=f"makes the image {width}x{height}",
                key="hires_too_big",
                params={"size": f"{width}x{height}", "max": f"{max_pixels:,}"},
            )
        return float(self.hires_scale)

    @property
    def output_size(self) -> tuple[int, int]:
        """The size of the images made: the hires-fix size when it is on, else width x height."""
        if self.hires_scale is None:
            return self.width, self.height
        return hires_size(self.width, self.height, self.hires_scale)

    @property
    def loras(self) -> tuple[tuple[str, float], ...]:
        """The LoRAs of the prompts that change the image (see :func:`lora_set`)."""
        return lora_set(self.prompt, self.negative_prompt)

    def with_seed(self, seed: int | None = None) -> GenerationRequest:
        """Return a copy whose seed is fixed: ``seed`` if given, else a random one when unset."""
        if seed is not None:
            return replace(self, seed=seed)
        if self.seed is not None:
            return self
        return replace(self, seed=secrets.randbelow(MAX_SEED + 1 - (MAX_COUNT - 1)))

    def batch_key(self) -> tuple[Hashable, ...]:
        """Requests with equal keys can share one diffusers call (see :data:`BATCH_FIELDS`)."""
        return (*(getattr(self, name) for name in BATCH_FIELDS), self.loras)

    @property
    def seeds(self) -> list[int]:
        """The seed of every image, wrapping past 2**32 - 1 as A1111 does not need to."""
        if self.seed is None:
            raise ValueError("the request has no seed yet: call with_seed() first")
        return [(self.seed + i) % (MAX_SEED + 1) for i in range(self.count)]

    # -- canonical JSON -----------------------------------------------------------------------

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace, with a format version."""
        data = asdict(self)
        for name, default in _SINCE_V1.items():
            if data[name] == default or (name == "styles" and not data[name]):
                del data[name]
        data["v"] = CANONICAL_VERSION
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> GenerationRequest:
        """Read a request written by :meth:`to_json`; unknown keys are an error, not ignored."""
        data: dict[str, Any] = json.loads(text)
        if not isinstance(data, dict):
            raise InvalidRequest("request", type(data).__name__, "a JSON object")
        version = data.pop("v", CANONICAL_VERSION)
        if version != CANONICAL_VERSION:
            raise InvalidRequest("v", version, f"format version {CANONICAL_VERSION}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequest(
                "request", ", ".join(unknown), ", ".join(sorted(known)), reason="has unknown keys"
            )
        if isinstance(data.get("styles"), list):
            data["styles"] = tuple(data["styles"])
        return cls(**data)


def hires_upscaler_named(name: str) -> str | None:
    """The upscaler of :data:`HIRES_UPSCALERS` called ``name`` (case and spacing aside), or ``None``."""
    wanted = " ".join(name.split()).casefold()
    return next((upscaler for upscaler in HIRES_UPSCALERS if upscaler.casefold() == wanted), None)


def hires_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The hires-fix size: each side times ``scale``, down to a multiple of 8 (the latent grid)."""
    return (
        int(width * scale) // SIZE_MULTIPLE * SIZE_MULTIPLE,
        int(height * scale) // SIZE_MULTIPLE * SIZE_MULTIPLE,
    )


def _text(name: str, value: object) -> str:
    """A prompt field, cleaned (:func:`~pipeline.domain.text.clean_text`) and of an allowed length."""
    if not isinstance(value, str):
        raise InvalidRequest(name, value, "text")
    text = clean_text(name, value)
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidRequest(
            name, f"{len(text)} characters", f"at most {MAX_PROMPT_CHARS} characters", reason="is too long"
        )
    return text


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(
            name,
            value,
            f"a whole number from {low} to {high}",
            reason="is not a whole number",
            key="not_whole_number",
            params={"low": low, "high": high},
        )
    if not low <= value <= high:
        raise InvalidRequest(
            name,
            value,
            f"{low} to {high}",
            reason="is out of range",
            key="out_of_range",
            params={"low": low, "high": high},
        )


def _check_float(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise InvalidRequest(
            name,
            value,
            f"a number from {low:g} to {high:g}",
            reason="is not a number",
            key="not_a_number",
            params={"low": f"{low:g}", "high": f"{high:g}"},
        )
    if not low <= value <= high:
        raise InvalidRequest(
            name,
            value,
            f"{low:g} to {high:g}",
            reason="is out of range",
            key="out_of_range",
            params={"low": f"{low:g}", "high": f"{high:g}"},
        )
