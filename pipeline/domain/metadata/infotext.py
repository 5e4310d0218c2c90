"""AUTOMATIC1111's ``parameters`` text ("infotext"): writing it for our images, reading it back.

The format, as A1111's PNG Info and civitai show it::

    <prompt, possibly over several lines>
    Negative prompt: <negative prompt, possibly over several lines>
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 7, Size: 512x768, Model hash: 0123456789, Model: x

The last line holds ``key: value`` pairs separated by ``, ``; a value that contains a comma, a
colon or a line break is written as a JSON string. nanke writes the sampler as the WebUI 1.9+
does, the schedule type apart and always present (``Sampler: DPM++ 2M, Schedule type: Karras``;
``Schedule type: Uniform`` for a plain sampler): a WebUI 1.9+ reads a missing schedule type as
"Automatic", which would re-run a plain DPM++ 2M with Karras sigmas. The reader accepts both the
split and the folded (``Sampler: DPM++ 2M Karras``, civitai and older WebUIs) style.

Reading follows what A1111 does so both tools see the same prompt: line breaks are normalised to
``\\n``, every line is stripped, the negative prompt starts at the first line that *begins* with
``Negative prompt:`` and the settings line is the last line when it holds at least
:data:`MIN_SETTINGS_PAIRS` ``key: value`` pairs (``Steps`` need not be one of them); a last line
with fewer is prompt text. A prompt line that itself starts with ``Negative prompt:``, or a last
prompt line of three ``key: value`` pairs, cannot be told apart from the real one; the format has
no escape for it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from pipeline.domain.metadata.importing import request_from_settings
from pipeline.domain.request import GenerationRequest
from pipeline.domain.samplers import split_sampler
from pipeline.errors import InvalidRequest

log = logging.getLogger(__name__)

NEGATIVE_PREFIX = "Negative prompt:"
MIN_SETTINGS_PAIRS = 3
"""How many ``key: value`` pairs make the last line the settings line (the WebUI's rule)."""
MAX_JSON_FAILURES = 64
"""JSON-looking values of one line that may fail to read as JSON before the rest are read as
plain text. A failed reading costs time in proportion to the value's offset in the line (Python's
decoder works out the error's line and column), so without a bound a long line of ``k: [0, ``
would take quadratic time; real lines hold a handful of JSON values and no broken ones."""
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
    lora_hashes: dict[str, str] = field(default_factory=dict)
    ti_hashes: dict[str, str] = field(default_factory=dict)
    vae_hash: str | None = None


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
    ones (``{"Version": "nanke 0.1.0"}``, the engine's ``Lora hashes``/``TI hashes``/``VAE hash``);
    a key that is already there replaces that value in place, and a ``None`` or empty value
    removes the pair. The hires fix is written as the WebUI writes it (``Size`` is the first
    pass's, ``Denoising strength`` the second pass's, then ``Hires upscale``, ``Hires steps``,
    ``Hires upscaler``); styles as ``Styles array: ["name"]``, which the WebUI reads back.
    """
    sampler, schedule_type = _split_sampler(request.sampler)
    hires = request.hires_scale is not None
    settings: dict[str, object] = {
        "Steps": request.steps,
        "Sampler": sampler,
        "Schedule type": schedule_type,
        "CFG scale": request.cfg_scale,
        "Seed": seed,
        "Size": f"{request.width}x{request.height}",
        "Model hash": model_hash,
        "Model": model_name,
        "Denoising strength": request.hires_denoise if hires else request.strength,
        "Clip skip": request.clip_skip if request.clip_skip > 1 else None,
        "Hires upscale": request.hires_scale if hires else None,
        "Hires steps": request.hires_steps if hires and request.hires_steps else None,
        "Hires upscaler": request.hires_upscaler if hires else None,
        "Tiling": True if request.tile else None,
        "Styles array": list(request.styles) if request.styles else None,
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
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), ensure_ascii=False)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if _NEEDS_QUOTES.search(text) else text


def _split_sampler(name: str) -> tuple[str, str | None]:
    """The WebUI's sampler and schedule type for ``name``; an unknown name as it is, no schedule."""
    try:
        return split_sampler(name)
    except InvalidRequest:
        log.warning("writing unknown sampler %r as it is", name)
        return name, None


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _unix_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# -- reading ------------------------------------------------------------------------------------


def parse_infotext(text: str) -> ParsedInfotext:
    """Read an A1111/civitai ``parameters`` text (or a bare prompt) into a nanke request."""
    lines = [line.strip() for line in _unix_newlines(text).strip().split("\n")]
    settings: dict[str, str] = {}
    pairs = list(_settings_pairs(lines[-1])) if lines else []
    if len(pairs) >= MIN_SETTINGS_PAIRS:
        settings = dict(pairs)
        lines.pop()
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
        lora_hashes=imported.lora_hashes,
        ti_hashes=imported.ti_hashes,
        vae_hash=imported.vae_hash,
    )


def parse_settings_line(line: str) -> dict[str, str]:
    """The ``key: value`` pairs of a settings line, in order; a repeated key keeps its last value.

    Fragments without a ``key:`` are skipped. Reading takes time linear in the line's length.
    """
    return dict(_settings_pairs(line))


def _settings_pairs(line: str) -> Iterator[tuple[str, str]]:
    """The ``key: value`` pairs of a settings line, in order, repeats included (see above).

    :func:`parse_infotext` counts them to tell a settings line from prompt text and keeps them,
    so that the line is read once.
    """
    pos = 0
    json_failures = 0
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
        read = None
        if json_failures < MAX_JSON_FAILURES and line.startswith(('"', "{", "["), pos):
            read = _read_json(line, pos)
            json_failures += read is None
        value, pos = read or _read_plain(line, pos)
        yield name, value


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


def _read_json(line: str, pos: int) -> tuple[str, int] | None:
    """The JSON value starting at ``pos`` and the position after its separating comma, if any.

    A JSON string is unquoted; a JSON object or array (civitai's ``Hashes: {...}``) is kept as
    its JSON text. ``None`` when no JSON value that a comma or the line's end follows starts there.
    """
    try:
        value, end = _JSON.raw_decode(line, pos)
    except (ValueError, RecursionError):  # bad JSON, too deeply nested, an integer of 4 300+ digits
        return None
    after = _AFTER_QUOTED.match(line, end)
    if after is None:
        return None
    return (value if isinstance(value, str) else line[pos:end]), after.end()


def _read_plain(line: str, pos: int) -> tuple[str, int]:
    """The value starting at ``pos``, up to the next comma, and the position after that comma."""
    comma = line.find(",", pos)
    if comma < 0:
        return line[pos:].strip(), len(line)
    return line[pos:comma].strip(), comma + 1
