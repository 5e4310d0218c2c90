"""Hostile input on the paths the bot and the command line take, generated with hypothesis.

The paths, as ``/imagine``, ``/reproduce``, ``nanke imagine`` and ``nanke import`` take them:

- prompt text with flags: ``parse_prompt(text).request.validate()``, the model looked up in a
  catalog, then what a validated request meets later: the emphasis parser, its infotext;
- A1111 infotexts: ``parse_infotext(text).request.validate()`` and ``import_request`` on a catalog;
- image files: ``read_parameters(data)`` on arbitrary bytes and on real PNG, WebP and JPEG files
  written by :mod:`pipeline.domain.metadata` and then damaged, and any text found imported as above.

Each either succeeds or raises a :class:`~pipeline.errors.PipelineError`, never another exception;
every message is at most 500 characters without traceback text, and an ``InvalidRequest`` starts
with the field it names. A validated request's text has no surrogates and no control characters
but tab and line feed, is in NFC, validates to itself, and its canonical JSON encodes as UTF-8 and
reads back equal. Long adversarial texts are read in well under a second.

The default example counts keep this file well under 20 seconds and the runs deterministic
(``derandomize``, no example database). For a bigger, random search set ``NANKE_FUZZ_EXAMPLES``::

    NANKE_FUZZ_EXAMPLES=10000 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_fuzz_input.py
"""

from __future__ import annotations

import io
import os
import time
import unicodedata
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.domain.metadata import format_infotext, parse_infotext, read_parameters, write_png
from pipeline.domain.metadata.imagefile import write_lossy
from pipeline.domain.metadata.imported import import_request
from pipeline.domain.models import ModelCatalog
from pipeline.domain.prompt.emphasis import WEIGHT_RANGE, is_break, parse_emphasis
from pipeline.domain.prompt.flags import KNOWN_FLAGS, parse_prompt
from pipeline.domain.request import GenerationRequest
from pipeline.errors import InvalidRequest, PipelineError

T = TypeVar("T")
pytestmark = pytest.mark.filterwarnings("ignore:.*:UserWarning:PIL.TiffImagePlugin")  # damaged EXIF

MAX_MESSAGE = 500
MAX_NOTE = 600
_EXAMPLES = int(os.environ.get("NANKE_FUZZ_EXAMPLES", "0") or 0)


def fuzz(examples: int) -> settings:
    """``examples`` deterministic examples, or ``NANKE_FUZZ_EXAMPLES`` random ones when it is set."""
    return settings(
        max_examples=_EXAMPLES or examples,
        deadline=None,
        derandomize=not _EXAMPLES,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- the checks ---------------------------------------------------------------------------------


def outcome(call: Callable[[], T]) -> T | None:
    """``call()``, or ``None`` when it raised a PipelineError with a short, clean message."""
    try:
        return call()
    except PipelineError as error:
        message = str(error)
        assert message, type(error)
        assert len(message) <= MAX_MESSAGE, message[:300]
        assert "Traceback (most recent call last)" not in message
        if isinstance(error, InvalidRequest):
            assert message.startswith(f"{error.field}: "), message[:200]
        message.encode("utf-8")  # it can be sent as it is
        return None


def _refused_characters(text: str) -> list[str]:
    """Characters no validated text may hold (an oracle independent of the code under test)."""
    return [c for c in text if unicodedata.category(c) in ("Cc", "Cs") and c not in "\t\n"]


def check_validated(request: GenerationRequest) -> None:
    for name in ("prompt", "negative_prompt", "model", "sampler"):
        value = getattr(request, name)
        if value is None:
            continue
        assert not _refused_characters(value), (name, value[:100])
        assert unicodedata.is_normalized("NFC", value), (name, value[:100])
        assert "\r" not in value
    assert request.validate() == request
    text = request.to_json()
    text.encode("utf-8")
    assert GenerationRequest.from_json(text) == request
    for run in parse_emphasis(request.prompt) + parse_emphasis(request.negative_prompt):
        assert is_break(run) or WEIGHT_RANGE[0] <= run[1] <= WEIGHT_RANGE[1], run
    infotext = format_infotext(request, seed=request.seed or 0, model_name=request.model, model_hash=None)
    infotext.encode("utf-8")  # what goes into the image file beside the result


CATALOG = ModelCatalog(default="", models_dir=None)


def resolve_model(name: str | None) -> None:
    """Look ``name`` up as the bot does (catalog names only) and as the pool and CLI do (paths too)."""
    if name is not None:
        outcome(lambda: CATALOG.resolve(name, allow_paths=False))
        outcome(lambda: CATALOG.resolve(name))


def run_prompt(text: str) -> None:
    parsed = outcome(lambda: parse_prompt(text))
    if parsed is None:
        return
    resolve_model(parsed.request.model)
    validated = outcome(parsed.request.validate)
    if validated is not None:
        check_validated(validated)


def run_infotext(text: str) -> None:
    parsed = outcome(lambda: parse_infotext(text))
    if parsed is None:
        return
    for note in parsed.unsupported:
        assert len(note) <= MAX_NOTE, note[:300]
    validated = outcome(parsed.request.validate)
    if validated is not None:
        check_validated(validated)
    imported = outcome(lambda: import_request(text, catalog=CATALOG))
    if imported is not None:
        assert all(len(note) <= MAX_NOTE for note in imported.notes)
        validated = outcome(imported.request.validate)
        if validated is not None:
            check_validated(validated)
    resolve_model(parsed.request.model)


# -- strategies ---------------------------------------------------------------------------------

HUGE_NUMBERS = [
    "1" * 5000,
    "9" * 4301,
    "1:1" + "0" * 400,
    "1" * 320 + ":1",
    "512x" + "8" * 5000,
    "0." + "1" * 5000,
]
NASTY = [
    "\ud800",
    "\udcff",  # what argv makes of the byte 0xff
    "\x00",
    "\r",
    "\r\n",
    "\n",
    "\t",
    "\x1b[31m",
    "\x85",
    "\x7f",
    "\u2028",
    "\ufeff",
    "\u0301",
    "e\u0301",
    "\u202e",
    '"',
    "“",
    "”",
    "(",
    ")",
    "[",
    "]",
    ":",
    "\\",
    "BREAK",
    "<lora:x:1>",
    "Negative prompt:",
    "Steps:",
    ",",
    "((((((((((",
    "(x:1e39)",
    "(x:" + "9" * 45 + ")",
]
ANY_CHARACTER = st.characters(exclude_categories=())  # surrogates and control characters included
NUMBERS = st.one_of(
    st.integers(-(10**50), 10**50).map(str),
    st.floats().map(repr),
    st.sampled_from(HUGE_NUMBERS),
    st.sampled_from(["+7", "-1", "-0", "nan", "inf", "1e39", "٣", "１２", "0x0", "7.", ".5", "1_000"]),
    st.tuples(st.integers(0, 10**45), st.sampled_from(":xX×"), st.integers(0, 10**45)).map(
        lambda parts: f"{parts[0]}{parts[1]}{parts[2]}"
    ),
)
WORDS = st.one_of(
    st.sampled_from([*KNOWN_FLAGS, "—ar", "--AR", "--", "—", "--stylize", "--no-such"]),
    NUMBERS,
    st.sampled_from(NASTY),
    st.text(ANY_CHARACTER, max_size=12),
)
SEPARATORS = st.sampled_from([" ", " ", " ", "  ", "\n", "\t", "\r\n", "\x1f", "\u3000", ""])
PROMPTS = st.lists(st.tuples(WORDS, SEPARATORS), max_size=30).map(
    lambda parts: "".join(word + separator for word, separator in parts)
)

SETTING_KEYS = st.one_of(
    st.sampled_from(
        [
            "Steps",
            "Sampler",
            "Schedule type",
            "CFG scale",
            "Seed",
            "Size",
            "Model",
            "Model hash",
            "Clip skip",
            "Denoising strength",
            "Hires upscale",
            "Hashes",
            "Lora hashes",
            "ENSD",
            "Version",
            "ControlNet 0",
        ]
    ),
    st.text(ANY_CHARACTER, min_size=1, max_size=20),
)
SETTING_VALUES = st.one_of(
    NUMBERS,
    st.sampled_from(NASTY),
    st.sampled_from(["Euler a", "DPM++ 2M Karras", "Karras", "m" * 300, "a\x00b", "~nobody/x", "owner/name"]),
    st.sampled_from(
        ['{"a": ' + "1" * 5000 + "}", "[" * 2000, '"' + "\\" * 101, '"unterminated', "{}", '"a, b"']
    ),
    st.text(ANY_CHARACTER, max_size=30),
)


@st.composite
def infotexts(draw: st.DrawFn) -> str:
    lines = [draw(PROMPTS)]
    if draw(st.booleans()):
        lines.append("Negative prompt: " + draw(PROMPTS))
    pairs = draw(st.lists(st.tuples(SETTING_KEYS, SETTING_VALUES), max_size=12))
    settings_line = ", ".join(f"{key}: {value}" for key, value in pairs)
    lines.append(f"Steps: {draw(NUMBERS)}, {settings_line}" if draw(st.booleans()) else settings_line)
    return draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines)


def _files() -> list[bytes]:
    image = Image.new("RGB", (16, 16), (200, 30, 30))
    text = "a (red:1.2) fox\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Seed: 7, Size: 64x64"
    corrupt_exif = io.BytesIO()
    image.save(corrupt_exif, format="PNG", exif=b"Exif\x00\x00XXXX not a TIFF header")
    return [
        write_png(image, text),
        write_png(image, text + ", Model: " + "\u4e00" * 50),  # iTXt
        write_lossy(image, text, kind="webp", quality=80),
        write_lossy(image, text, kind="jpeg", quality=80),
        corrupt_exif.getvalue(),
    ]


FILES = _files()
HEADS = [
    b"\x89PNG\r\n\x1a\n",
    b"RIFF\x00\x01\x00\x00WEBPVP8X",
    b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM",
    b"II*\x00",
]


@st.composite
def damaged_files(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(FILES)))
    for position, value in draw(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4)):
        data[position % len(data)] = value
    if draw(st.integers(0, 2)) == 0:
        position = draw(st.integers(0, len(data)))
        data[position:position] = draw(st.binary(max_size=64))
    if draw(st.integers(0, 2)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def run_file(data: bytes) -> None:
    text = read_parameters(data)  # never raises, whatever the bytes
    assert text is None or isinstance(text, str)
    if text is not None:
        run_infotext(text)


# -- the fuzz tests -----------------------------------------------------------------------------


@fuzz(3000)
@given(PROMPTS)
def test_prompt_text_with_flags(text: str) -> None:
    run_prompt(text)


@fuzz(1500)
@given(st.text(ANY_CHARACTER, max_size=200))
def test_any_prompt_text(text: str) -> None:
    run_prompt(text)


@fuzz(2500)
@given(infotexts())
def test_infotexts(text: str) -> None:
    run_infotext(text)


@fuzz(800)
@given(st.text(ANY_CHARACTER, max_size=300))
def test_any_infotext(text: str) -> None:
    run_infotext(text)


@fuzz(1500)
@given(damaged_files())
def test_damaged_image_files(data: bytes) -> None:
    run_file(data)


@fuzz(1000)
@given(
    st.one_of(
        st.binary(max_size=2000), st.tuples(st.sampled_from(HEADS), st.binary(max_size=2000)).map(b"".join)
    )
)
def test_arbitrary_bytes(data: bytes) -> None:
    run_file(data)


FAST_CASES: dict[str, Callable[[], object]] = {
    "unclosed brackets": lambda: parse_emphasis("(a" * 20_000),
    "unclosed square brackets": lambda: parse_emphasis("[a" * 20_000),
    "spaces that no BREAK follows": lambda: parse_emphasis(" " * 50_000 + "x"),
    "prompt of brackets": lambda: run_prompt("(a " * 20_000 + "--seed 1"),
    "settings line of spaces": lambda: run_infotext("x\nSteps: 1, a" + " " * 50_000 + "b"),
    "tag line of spaces": lambda: run_infotext("<lora:x:1>" + " " * 50_000 + "x\nSteps: 1"),
    "many pairs": lambda: run_infotext("x\nSteps: 1, " + "Key: value, " * 20_000),
}


@pytest.mark.parametrize("label", FAST_CASES)
def test_long_adversarial_text_is_read_fast(label: str) -> None:
    started = time.perf_counter()
    FAST_CASES[label]()
    assert time.perf_counter() - started < 1.0, f"{label}: reading is no longer linear"
