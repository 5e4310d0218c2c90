"""Midjourney-style flags inside ``/imagine`` text, turned into a :class:`GenerationRequest`.

``a lighthouse at dusk --ar 16:9 --no people, boats --seed 7 --sampler DPM++ 2M Karras``

How the text is read:

- The text is split on whitespace. A *flag* is a whole word made of ``--`` (or the em-dash
  ``—`` that phones auto-correct ``--`` into, as Midjourney accepts) and a name; names are
  case-insensitive. Anything else (``(word:1.2)``, ``[word]``, ``-1``, a lone ``—``) is prompt
  text and passes through unchanged; the prompt is the remaining words joined by single spaces.
- ``--no``, ``--sampler``, ``--model``, ``--vae``, ``--upscaler`` and ``--style`` take every word
  up to the next flag (so
  ``--sampler DPM++ 2M Karras`` works unquoted). The other flags take one word; words after it
  go back to the prompt, so flags may also come first (``--ar 3:2 a red fox``).
- A value may be wrapped in double quotes (``--sampler "DPM++ 2M Karras" a fox``): the quoted
  words are the value and the words after the closing quote go back to the prompt.
- ``--no`` may be given several times (the parts join with ``", "``), and so may ``--style``
  (styles apply in the order given, after ``--no``, from the WebUI ``styles.csv`` nanke was given);
  every other flag at most once (aliases count as the same flag). Flags override ``defaults``;
  ``defaults.prompt`` is not used.
- ``--hires 2`` turns on the hires fix (``--hires-steps``, ``--denoise`` and ``--upscaler`` tune
  it and need it); ``--tile`` makes a seamless texture; ``--vae`` picks a VAE by name.

Only flag *syntax* and each value's own range are checked here (errors name the flag, its value
and the allowed form); call sites still call :meth:`GenerationRequest.validate` on the result.
A numeric value longer than :data:`~pipeline.domain.text.MAX_NUMBER_CHARS` characters is refused
before anything converts it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from pipeline.domain.prompt.styles import StyleBook
from pipeline.domain.request import (
    HIRES_UPSCALERS,
    MAX_CFG,
    MAX_CLIP_SKIP,
    MAX_COUNT,
    MAX_HIRES_SCALE,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    MIN_CFG,
    MIN_COUNT,
    MIN_HIRES_SCALE,
    MIN_SIDE,
    MIN_STEPS,
    SIZE_MULTIPLE,
    GenerationRequest,
    hires_upscaler_named,
)
from pipeline.domain.samplers import canonical_sampler
from pipeline.domain.text import MAX_NUMBER_CHARS, shorten, too_long_for_a_number
from pipeline.errors import InvalidRequest

log = logging.getLogger(__name__)

Arity = Literal["none", "word", "words"]
"""How many words a flag takes: none (a switch), one word, or every word up to the next flag."""


@dataclass(frozen=True)
class ParsedPrompt:
    """The outcome of :func:`parse_prompt`.

    ``request`` is not validated yet; ``private`` is the ``--private`` switch (deliver the result
    only to the person who asked), which is a delivery choice and so not part of the request.
    ``image_weight`` is ``--iw`` (how much an image prompt counts, see
    :func:`strength_for_image_weight`) and ``sized`` whether ``--ar`` or ``--size`` chose the size
    (else an image prompt gives its own aspect).
    """

    request: GenerationRequest
    private: bool = False
    image_weight: float | None = None
    sized: bool = False


MIN_IMAGE_WEIGHT, MAX_IMAGE_WEIGHT = 0.0, 2.0
DEFAULT_IMAGE_WEIGHT = 1.0


def strength_for_image_weight(weight: float) -> float:
    """The img2img denoising strength of an image prompt with ``--iw weight``.

    ``strength = 1 - 0.4 x weight``, kept within 0.2 and 0.95: the default ``--iw 1`` keeps the
    image's composition and colours (0.6), ``--iw 2`` stays close to it (0.2), ``--iw 0`` keeps
    little more than its rough layout (0.95). Midjourney's ``--iw`` also runs from 0 to 2 (its
    default is 1).
    """
    return round(min(0.95, max(0.2, 1.0 - 0.4 * weight)), 4)


@dataclass(frozen=True)
class _FlagSpec:
    name: str
    arity: Arity
    apply: Callable[[str, str, GenerationRequest], dict[str, Any]] | None = None
    """``apply(flag_as_typed, value, defaults)`` returns the request fields the flag sets;
    ``--no`` (joined across repeats) and ``--private`` (not a request field) have none."""


_FLAG_RE = re.compile(r"(?:--|—)([A-Za-z][A-Za-z0-9_-]*)")
_INT_RE = re.compile(r"\+?[0-9]+")
_NEGATIVE_INT_RE = re.compile(r"-[0-9]+")
_FLOAT_RE = re.compile(r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_RATIO_RE = re.compile(r"([0-9]+):([0-9]+)")
_SIZE_RE = re.compile(r"([0-9]+)[xX×]([0-9]+)")
_QUOTES = {'"': '"', "“": "”", "”": "”", "„": "“"}
_RANDOM_SEED = "-1"


# -- value readers ------------------------------------------------------------------------------


def _check_length(flag: str, value: str, allowed: str) -> None:
    """Refuse a numeric value too long to be meant, before anything converts it."""
    if too_long_for_a_number(value):
        reason = f"is too long ({len(value):,} characters, at most {MAX_NUMBER_CHARS})"
        raise InvalidRequest(flag, value, allowed, reason=reason)


def _whole_number(flag: str, value: str, low: int, high: int) -> int:
    allowed = f"a whole number from {low} to {high}"
    bounds = {"low": low, "high": high}
    _check_length(flag, value, allowed)
    if _NEGATIVE_INT_RE.fullmatch(value):
        raise InvalidRequest(
            flag, value, allowed, reason="is out of range", key="whole_number_out_of_range", params=bounds
        )
    if not _INT_RE.fullmatch(value):
        raise InvalidRequest(
            flag, value, allowed, reason="is not a whole number", key="not_whole_number", params=bounds
        )
    number = int(value)
    if not low <= number <= high:
        raise InvalidRequest(
            flag, value, allowed, reason="is out of range", key="whole_number_out_of_range", params=bounds
        )
    return number


def _number(flag: str, value: str, low: float, high: float) -> float:
    allowed = f"a number from {low:g} to {high:g}"
    bounds = {"low": f"{low:g}", "high": f"{high:g}"}
    _check_length(flag, value, allowed)
    if not _FLOAT_RE.fullmatch(value):
        raise InvalidRequest(
            flag, value, allowed, reason="is not a number", key="not_a_number", params=bounds
        )
    number = float(value)
    if not low <= number <= high:
        raise InvalidRequest(
            flag, value, allowed, reason="is out of range", key="number_out_of_range", params=bounds
        )
    return number


def _side(flag: str, value: str, number: int) -> None:
    allowed = f"WxH, each side a multiple of {SIZE_MULTIPLE} from {MIN_SIDE} to {MAX_SIDE}"
    if not MIN_SIDE <= number <= MAX_SIDE:
        raise InvalidRequest(flag, value, allowed, reason="has a side out of range")
    if number % SIZE_MULTIPLE:
        raise InvalidRequest(
            flag, value, allowed, reason=f"has a side that is not a multiple of {SIZE_MULTIPLE}"
        )


def size_for_aspect(ratio_w: int, ratio_h: int, *, short_side: int) -> tuple[int, int]:
    """Width and height for the aspect ratio ``ratio_w:ratio_h``, as ``--ar`` picks them.

    The rule: the shorter side keeps ``short_side`` (the default size's shorter side, 512 for
    SD 1.x defaults: the resolution the model was trained at) and the longer side is
    ``short_side * ratio``, rounded to the nearest multiple of 8 (halves round up), computed in
    integers so it is exactly reproducible. ``3:2`` → 768x512, ``16:9`` → 912x512, ``2:3`` →
    512x768, ``1:1`` → 512x512. The pixel area therefore grows with the ratio, as Midjourney and
    the usual SD practice of "512 on the short side" do.
    """
    if ratio_w <= 0 or ratio_h <= 0:
        raise ValueError("aspect ratio terms must be positive")
    wide = ratio_w >= ratio_h
    big, small = (ratio_w, ratio_h) if wide else (ratio_h, ratio_w)
    unit = SIZE_MULTIPLE * small
    steps, remainder = divmod(short_side * big, unit)
    long_side = (steps + (2 * remainder >= unit)) * SIZE_MULTIPLE
    return (long_side, short_side) if wide else (short_side, long_side)


# -- flags ----------------------------------------------------------------------------------------


def _aspect(flag: str, value: str, defaults: GenerationRequest) -> dict[str, Any]:
    short_side = min(defaults.width, defaults.height)
    widest = MAX_SIDE / short_side
    allowed = f"W:H in whole numbers such as 16:9, 3:2 or 2:3, from 1:{widest:g} to {widest:g}:1"
    _check_length(flag, value, allowed)
    match = _RATIO_RE.fullmatch(value)
    widest_ratio = {"widest": f"{widest:g}"}
    if match is None or not int(match[1]) or not int(match[2]):
        raise InvalidRequest(
            flag, value, allowed, reason="is not an aspect ratio", key="not_an_aspect", params=widest_ratio
        )
    ratio_w, ratio_h = int(match[1]), int(match[2])
    if max(ratio_w, ratio_h) / min(ratio_w, ratio_h) > widest:
        raise InvalidRequest(
            flag, value, allowed, reason="is too wide or too tall", key="aspect_too_far", params=widest_ratio
        )
    width, height = size_for_aspect(ratio_w, ratio_h, short_side=short_side)
    return {"width": width, "height": height}


def _size(flag: str, value: str, defaults: GenerationRequest) -> dict[str, Any]:
    allowed = "WxH in pixels, such as 768x512"
    _check_length(flag, value, allowed)
    match = _SIZE_RE.fullmatch(value)
    if match is None:
        raise InvalidRequest(flag, value, allowed, reason="is not a size", key="not_a_size")
    width, height = int(match[1]), int(match[2])
    _side(flag, value, width)
    _side(flag, value, height)
    return {"width": width, "height": height}


def _seed(flag: str, value: str, defaults: GenerationRequest) -> dict[str, Any]:
    if value == _RANDOM_SEED:
        return {"seed": None}
    return {"seed": _whole_number(flag, value, 0, MAX_SEED)}


def _steps(flag: str, value: str, defaults: GenerationRequest) -> dict[str, Any]:
    return {"steps": _whole_number(flag, value, MIN_STEPS, MAX_STEPS)}


def _cfg(flag: str, value: str, defaults: GenerationRequest) -> dict[str, Any]:
    return {"cfg_scale": _number(flag, value, MIN_CFG, MAX_CFG)}


def _sampler(flag: str, value: str, defaults: GenerationRequest) -> dict[str, Any]:
    return {"sampler": canonical_sampler(value, field_name=flag)}


def _count(flag: str, value: str, defaults: GenerationRequest) -> dict[str, Any]:
    return {"count": _whole_number(flag, value, MIN_COUNT, MAX_COUNT)}


def _model(flag: str, value: str, defaults: GenerationRequest) -> dict[str, Any]:
    return {"model": value}


def _clip_skip(flag: str, value: str, defaults: GenerationRequest) -> dict[str, Any]:
    return {"clip_skip": _whole_number(flag, value, 1, MAX_CLIP_SKIP)}


def _hires(flag: str, value: str, defaults: GenerationRequest) -> dict[str, Any]:
    scale = _number(flag, value, MIN_HIRES_SCALE, MAX_HIRES_SCALE)
    if scale <= MIN_HIRES_SCALE:
        raise InvalidRequest(
            flag, value, f"a scale above {MIN_HIRES_SCALE:g} and at most {MAX_HIRES_SCALE:g}",
            reason="does not make the image larger",
        )  # fmt: skip
    return {"hires_scale": scale}


def _hires_steps(flag: str, value: str, defaults: GenerationRequest) -> dict[str, Any]:
    return {"hires_steps": _whole_number(flag, value, 0, MAX_STEPS)}


def _denoise(flag: str, value: str, defaults: GenerationRequest) -> dict[str, Any]:
    strength = _number(flag, value, 0.0, 1.0)
    if strength <= 0:
        raise InvalidRequest(flag, value, "a number above 0 and at most 1", reason="changes nothing")
    return {"hires_denoise": strength}


def _upscaler(flag: str, value: str, defaults: GenerationRequest) -> dict[str, Any]:
    name = hires_upscaler_named(value)
    if name is None:
        raise InvalidRequest(flag, value, ", ".join(HIRES_UPSCALERS), reason="is not an upscaler nanke has")
    return {"hires_upscaler": name}


def _vae(flag: str, value: str, defaults: GenerationRequest) -> dict[str, Any]:
    return {"vae": value}


def _image_weight(flag: str, value: str) -> float:
    return _number(flag, value, MIN_IMAGE_WEIGHT, MAX_IMAGE_WEIGHT)


_SPECS: tuple[tuple[tuple[str, ...], _FlagSpec], ...] = (
    (("--ar", "--aspect"), _FlagSpec("--ar", "word", _aspect)),
    (("--size",), _FlagSpec("--size", "word", _size)),
    (("--no",), _FlagSpec("--no", "words")),
    (("--seed",), _FlagSpec("--seed", "word", _seed)),
    (("--steps",), _FlagSpec("--steps", "word", _steps)),
    (("--cfg", "--guidance"), _FlagSpec("--cfg", "word", _cfg)),
    (("--sampler",), _FlagSpec("--sampler", "words", _sampler)),
    (("--n", "--count"), _FlagSpec("--n", "word", _count)),
    (("--model",), _FlagSpec("--model", "words", _model)),
    (("--clip-skip", "--clipskip"), _FlagSpec("--clip-skip", "word", _clip_skip)),
    (("--hires", "--hr"), _FlagSpec("--hires", "word", _hires)),
    (("--hires-steps", "--hr-steps"), _FlagSpec("--hires-steps", "word", _hires_steps)),
    (("--denoise", "--denoising"), _FlagSpec("--denoise", "word", _denoise)),
    (("--upscaler", "--hires-upscaler"), _FlagSpec("--upscaler", "words", _upscaler)),
    (("--vae",), _FlagSpec("--vae", "words", _vae)),
    (("--tile", "--tiling"), _FlagSpec("--tile", "none")),
    (("--style",), _FlagSpec("--style", "words")),
    (("--iw",), _FlagSpec("--iw", "word")),
    (("--private",), _FlagSpec("--private", "none")),
)
_BY_NAME: dict[str, _FlagSpec] = {name: spec for names, spec in _SPECS for name in names}

KNOWN_FLAGS: tuple[str, ...] = tuple(_BY_NAME)
"""Every flag spelling :func:`parse_prompt` accepts, aliases included, in help order."""

_REPEATABLE = frozenset({"--no", "--style"})
_EXCLUSIVE = (("--ar", "--size"),)
_NEED_HIRES = ("--hires-steps", "--denoise", "--upscaler")


# -- parsing --------------------------------------------------------------------------------------


def _flag_name(word: str) -> str | None:
    """``--name`` (lower case) if ``word`` is a flag, else ``None``."""
    match = _FLAG_RE.fullmatch(word)
    return None if match is None else f"--{match[1].casefold()}"


def _take_value(flag: str, arity: Arity, words: list[str]) -> tuple[str | None, list[str]]:
    """Split the words after a flag (up to the next flag) into its value and the prompt words left."""
    if arity == "none":
        return None, words
    if not words:
        form = "a value" if arity == "word" else "some words"
        raise InvalidRequest(flag, "", f"{flag} followed by {form}", reason="has no value")
    closing = _QUOTES.get(words[0][0])
    if closing is not None:
        for end, word in enumerate(words):
            if word.endswith(closing) and (end > 0 or len(word) > 1):
                quoted = " ".join(words[: end + 1])[1:-1].strip()
                if not quoted:
                    raise InvalidRequest(flag, '""', f"{flag} followed by a value", reason="is empty")
                return quoted, words[end + 1 :]
        log.debug("%s: unclosed quote, taking the rest as the value", flag)
        return " ".join(words)[1:].strip() or words[0], []
    if arity == "word":
        return words[0], words[1:]
    return " ".join(words), []


def parse_prompt(
    text: str, *, defaults: GenerationRequest | None = None, styles: StyleBook | None = None
) -> ParsedPrompt:
    """Read the flags in ``text`` and return the request they describe, plus ``--private``.

    ``defaults`` supplies every field no flag sets (``GenerationRequest`` defaults when omitted;
    its ``prompt`` is replaced by the text left after the flags). Raises :class:`InvalidRequest`
    naming the flag for unknown flags (listing :data:`KNOWN_FLAGS`), missing or malformed values,
    values out of range, a flag given twice, ``--ar`` with ``--size``, a hires-fix setting without
    ``--hires``, and a ``--style`` that ``styles`` (the admin's styles file) does not have.
    """
    base = defaults if defaults is not None else GenerationRequest(prompt="")
    words = text.split()
    prompt_words: list[str] = []
    changes: dict[str, Any] = {}
    negatives: list[str] = []
    style_names: list[str] = []
    image_weight: float | None = None
    seen: dict[str, str] = {}
    index = 0
    while index < len(words):
        flag = _flag_name(words[index])
        if flag is None:
            prompt_words.append(words[index])
            index += 1
            continue
        spec = _BY_NAME.get(flag)
        if spec is None:
            raise InvalidRequest(
                shorten(flag),
                words[index],
                ", ".join(KNOWN_FLAGS),
                reason="is not a flag nanke knows",
                key="unknown_flag",
                params={"flags": ", ".join(KNOWN_FLAGS)},
            )
        end = index + 1
        while end < len(words) and _flag_name(words[end]) is None:
            end += 1
        value, rest = _take_value(flag, spec.arity, words[index + 1 : end])
        prompt_words.extend(rest)
        index = end

        if spec.name in seen and spec.name not in _REPEATABLE:
            raise InvalidRequest(
                flag,
                value or flag,
                f"{spec.name} once",
                reason="is given twice",
                key="given_twice",
                params={"flag": spec.name},
            )
        seen[spec.name] = flag
        if spec.name == "--no":
            negatives.append(value or "")
        elif spec.name == "--style":
            style_names.append(value or "")
        elif spec.name == "--tile":
            changes["tile"] = True
        elif spec.name == "--iw":
            image_weight = _image_weight(flag, value or "")
        elif spec.apply is not None:
            changes.update(spec.apply(flag, value or "", base))

    for first, second in _EXCLUSIVE:
        if first in seen and second in seen:
            raise InvalidRequest(
                seen[second],
                seen[second],
                f"either {first} or {second}, not both",
                reason=f"conflicts with {first}",
            )
    for flag in _NEED_HIRES:
        if flag in seen and "--hires" not in seen and base.hires_scale is None:
            raise InvalidRequest(seen[flag], seen[flag], f"{flag} with --hires", reason="needs --hires")
    if negatives:
        changes["negative_prompt"] = ", ".join(negatives)
    prompt = " ".join(prompt_words)
    if style_names:
        book = styles if styles is not None else StyleBook.empty()
        negative = changes.get("negative_prompt", base.negative_prompt)
        prompt, changes["negative_prompt"], applied = book.apply(prompt, negative, style_names)
        changes["styles"] = applied
    request = replace(base, prompt=prompt, **changes)
    log.debug("parsed prompt flags %s -> %s", sorted(seen), request)
    return ParsedPrompt(
        request=request,
        private="--private" in seen,
        image_weight=image_weight,
        sized="--ar" in seen or "--size" in seen,
    )


def format_prompt(request: GenerationRequest, *, seed: bool = False) -> str:
    """``request`` written back as prompt text with flags, so :func:`parse_prompt` reads it again.

    Only what differs from the defaults is written; the seed only with ``seed=True`` (a remix
    starts from new seeds). img2img sources and strengths have no flag and are left out.
    """
    defaults = GenerationRequest(prompt="")
    parts = [request.prompt]
    if request.negative_prompt:
        parts.append(f"--no {request.negative_prompt}")
    if (request.width, request.height) != (defaults.width, defaults.height):
        parts.append(f"--size {request.width}x{request.height}")
    if seed and request.seed is not None:
        parts.append(f"--seed {request.seed}")
    if request.steps != defaults.steps:
        parts.append(f"--steps {request.steps}")
    if request.cfg_scale != defaults.cfg_scale:
        parts.append(f"--cfg {request.cfg_scale:g}")
    if request.count != defaults.count:
        parts.append(f"--n {request.count}")
    if request.clip_skip != defaults.clip_skip:
        parts.append(f"--clip-skip {request.clip_skip}")
    if request.sampler != defaults.sampler:
        parts.append(f'--sampler "{request.sampler}"')
    if request.model:
        parts.append(f'--model "{request.model}"')
    if request.hires_scale is not None:
        parts.append(f"--hires {request.hires_scale:g}")
        if request.hires_steps != defaults.hires_steps:
            parts.append(f"--hires-steps {request.hires_steps}")
        if request.hires_denoise != defaults.hires_denoise:
            parts.append(f"--denoise {request.hires_denoise:g}")
        if request.hires_upscaler != defaults.hires_upscaler:
            parts.append(f'--upscaler "{request.hires_upscaler}"')
    if request.vae:
        parts.append(f'--vae "{request.vae}"')
    if request.tile:
        parts.append("--tile")
    return " ".join(parts)
