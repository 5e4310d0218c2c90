"""AUTOMATIC1111's ``parameters`` text ("infotext"): writing it for our images, reading it back.

The format, as A1111's PNG Info and civitai show it::

    <prompt, possibly over several lines>
    Negative prompt: <negative prompt, possibly over several lines>
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 7, Size: 512x768, Model hash: 0123456789, Model: x

The last line holds ``key: value`` pairs separated by ``, ``; a value that contains a comma, a
colon or a line break is written as a JSON string. nanke writes the sampler in the folded style
(``Sampler: DPM++ 2M Karras``): civitai and older tools read only that, and A1111 1.6+ still splits
it into sampler and schedule type when it pastes the text. The reader accepts both styles.

Reading follows what A1111 does so both tools see the same prompt: line breaks are normalised to
``\\n``, every line is stripped, the negative prompt starts at the first line that *begins* with
``Negative prompt:`` and the settings line is the last line when it has a ``Steps:`` pair. A prompt
line that itself starts with ``Negative prompt:`` cannot be told apart from the real one; the
format has no escape for it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.domain.metadata.importing import request_from_settings
from pipeline.domain.request import GenerationRequest
from pipeline.domain.samplers import canonical_sampler
from pipeline.errors import InvalidRequest

log = logging.getLogger(__name__)

NEGATIVE_PREFIX = "Negative prompt:"
_SETTINGS_LINE = re.compile(r"(?:^|,)\s*Steps:\s")
_KEY_END = re.compile(r'[:,"\n]')
_AFTER_QUOTED = re.compile(r"\s*(?:,|$)")
_NEEDS_QUOTES = re.compile(r'[,:\n\r]|^["{\[]|^\s|\s$')
_BAD_KEY = re.compile(r'[,:"\n\r]')
_JSON = json.JSONDecoder()


@dataclass(frozen=True)
class ParsedInfotext:
    """An infotext read back.

    ``prompt`` and ``negative_prompt`` are the text as written (LoRA-style tags included);
    ``request`` is what nanke will run: tags removed, values brought into nanke's ranges, always
    text-to-image. ``settings`` holds every pair of the settings line, JSON strings unquoted.
    ``denoising_strength`` is set when the source was an img2img image (not for hires fix).
    ``unsupported`` explains, one note per topic, everything nanke could not honour.
    """

    prompt: str
    negative_prompt: str
    settings: dict[str, str]
    request: GenerationRequest
    unsupported: list[str] = field(default_factory=list)
    model_hash: str | None = None
    denoising_strength: float | None = None


# -- writing ------------------------------------------------------------------------------------


def format_infotext(
    request: GenerationRequest,
    *,
    seed: int,
    model_name: str | None,
    model_hash: str | None,
    extra: Mapping[str, object] | None = None,
) -> str:
    """The A1111 ``parameters`` text of one image of ``request``, generated with ``seed``.

    Image ``i`` of a job passes ``seed=request.seeds[i]``. ``extra`` adds pairs after the standard
    ones (``{"Version": "nanke 0.1.0"}``); a key that is already there replaces that value in
    place, and a ``None`` or empty value removes the pair.
    """
    settings: dict[str, object] = {
        "Steps": request.steps,
        "Sampler": _sampler_name(request.sampler),
        "CFG scale": request.cfg_scale,
        "Seed": seed,
        "Size": f"{request.width}x{request.height}",
        "Model hash": model_hash,
        "Model": model_name,
        "Denoising strength": None if request.mode == "txt2img" else request.strength,
        "Clip skip": request.clip_skip if request.clip_skip > 1 else None,
    }
    for key, value in (extra or {}).items():
        if not key.strip() or _BAD_KEY.search(key):
            raise ValueError(f"infotext key {key!r} is empty or contains a comma, colon, quote or line break")
        settings[key.strip()] = value
    pairs = ", ".join(
        f"{key}: {format_value(value)}" for key, value in settings.items() if not _is_blank(value)
    )
    lines = [_unix_newlines(request.prompt)]
    negative = _unix_newlines(request.negative_prompt)
    if negative.strip():
        lines.append(f"{NEGATIVE_PREFIX} {negative}")
    lines.append(pairs)
    return "\n".join(lines)


def format_value(value: object) -> str:
    """One value as A1111 prints it: ``7`` not ``7.0``, text JSON-quoted when it must be."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if _NEEDS_QUOTES.search(text) else text


def _sampler_name(name: str) -> str:
    try:
        return canonical_sampler(name)
    except InvalidRequest:
        log.warning("writing unknown sampler %r as it is", name)
        return name


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _unix_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# -- reading ------------------------------------------------------------------------------------


def parse_infotext(text: str) -> ParsedInfotext:
    """Read an A1111/civitai ``parameters`` text (or a bare prompt) into a nanke request."""
    lines = [line.strip() for line in _unix_newlines(text).strip().split("\n")]
    settings: dict[str, str] = {}
    if lines and _SETTINGS_LINE.search(lines[-1]):
        settings = parse_settings_line(lines.pop())
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    for line in lines:
        if not negative_lines and line.startswith(NEGATIVE_PREFIX):
            negative_lines.append(line[len(NEGATIVE_PREFIX) :].strip())
        elif negative_lines:
            negative_lines.append(line)
        else:
            prompt_lines.append(line)
    prompt = "\n".join(prompt_lines).strip()
    negative = "\n".join(negative_lines).strip()
    imported = request_from_settings(prompt, negative, settings)
    return ParsedInfotext(
        prompt=prompt,
        negative_prompt=negative,
        settings=settings,
        request=imported.request,
        unsupported=imported.unsupported,
        model_hash=imported.model_hash,
        denoising_strength=imported.denoising_strength,
    )


def parse_settings_line(line: str) -> dict[str, str]:
    """The ``key: value`` pairs of a settings line, in order; a repeated key keeps its last value.

    Fragments without a ``key:`` are skipped. Reading takes time linear in the line's length.
    """
    settings: dict[str, str] = {}
    pos = 0
    while pos < len(line):
        key = _read_key(line, pos)
        if key is None:
            comma = line.find(",", pos)
            log.debug("skipping infotext fragment %r", line[pos : None if comma < 0 else comma][:60])
            if comma < 0:
                break
            pos = comma + 1
            continue
        name, pos = key
        value, pos = _read_value(line, pos)
        settings[name] = value
    return settings


def _read_key(line: str, pos: int) -> tuple[str, int] | None:
    """The key starting at ``pos`` (surrounding whitespace removed) and where its value starts.

    A key is some text without ``:``, ``,``, ``"`` or a line break, then ``:``; ``None`` when no
    key starts at ``pos``. (A regular expression with optional whitespace on both sides of the
    key backtracks quadratically over a long run of spaces.)
    """
    end = _KEY_END.search(line, pos)
    key = line[pos : end.start() if end else len(line)].strip()
    if end is None or end[0] != ":" or not key:
        return None
    start = end.end()
    while start < len(line) and line[start].isspace():
        start += 1
    return key, start


def _read_value(line: str, pos: int) -> tuple[str, int]:
    """The value starting at ``pos`` and the position after its separating comma.

    A JSON string is unquoted; a JSON object or array (civitai's ``Hashes: {...}``) is kept as
    its JSON text; anything else runs to the next comma.
    """
    if line.startswith(('"', "{", "["), pos):
        try:
            value, end = _JSON.raw_decode(line, pos)
        except (ValueError, RecursionError):  # bad JSON, too deeply nested, an integer of 4 300+ digits
            value, end = None, pos
        after = _AFTER_QUOTED.match(line, end)
        if value is not None and after is not None:
            return (value if isinstance(value, str) else line[pos:end]), after.end()
    comma = line.find(",", pos)
    if comma < 0:
        return line[pos:].strip(), len(line)
    return line[pos:comma].strip(), comma + 1
