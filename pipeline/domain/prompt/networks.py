"""LoRA tags inside a prompt, the WebUI way: ``<lora:NAME:WEIGHT>`` and ``<lora:NAME>`` (weight 1).

The tags stay in the stored prompt (so the prompt reads as the WebUI and civitai show it) and
are taken out of the text that reaches the text encoder. How they are read:

- A tag is ``<lora:`` (or ``<lyco:``, the LyCORIS extension's spelling, read the same way), a
  name, an optional ``:weight``, and ``>``; the tag name is case-insensitive, the LoRA's name is
  matched against the loras folder without regard to case. A weight is a plain number from
  :data:`MIN_WEIGHT` to :data:`MAX_WEIGHT` (negative weights are how "slider" LoRAs are used).
  The WebUI's extra arguments (``<lora:name:0.8:0.5>``, ``lbw=``) are refused with a message,
  not ignored: they change the image.
- Tags may appear in the prompt and in the negative prompt; they are one set for the request.
  The same LoRA twice is refused, at most :data:`MAX_LORAS` LoRAs per request.
- A LoRA with weight 0 is no LoRA: it is left out of :func:`lora_set`, so such a request shares a
  batch with requests without it and makes the identical image.
- Hypernetwork tags (``<hypernet:...>``) are not supported and are refused with a message.

Removing tags tidies the text the way a person would expect: an item of a comma-separated list
that held only a tag disappears with its comma, and doubled spaces collapse.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from pipeline.domain.text import MAX_NUMBER_CHARS, shorten
from pipeline.errors import InvalidRequest

MIN_WEIGHT, MAX_WEIGHT = -4.0, 4.0
MAX_LORAS = 8
MAX_NAME_CHARS = 200

_TAG = re.compile(r"<(lora|lyco|hypernet):([^<>]*)>", re.IGNORECASE)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
# Commas with only whitespace between them, and the whitespace before them (see strip_tags). The
# look-behind makes a match start only where a run of whitespace starts, so a long run of spaces
# without a comma after it costs linear time, not quadratic.
_EMPTY_ITEMS = re.compile(r"(?<!\s)\s*,(?:\s*,)+")
_SPACES = re.compile(r"[ \t]{2,}")


@dataclass(frozen=True)
class LoraTag:
    """One ``<lora:name:weight>`` tag: the name as written and its weight."""

    name: str
    weight: float

    @property
    def key(self) -> str:
        """The name as it is matched (case folded)."""
        return self.name.casefold()

    def tag(self) -> str:
        """The tag written back (``<lora:name:0.8>``)."""
        return f"<lora:{self.name}:{self.weight:g}>"


def find_tags(text: str) -> list[str]:
    """Every network tag in ``text`` as written (LoRA, LyCORIS and hypernetwork)."""
    return [match[0] for match in _TAG.finditer(text)]


def strip_tags(text: str, only: Collection[str] | None = None) -> str:
    """``text`` without its network tags (or only those written as in ``only``), tidied: what the
    text encoder reads."""
    if "<" not in text:
        return text

    def removed(match: re.Match[str]) -> str:
        return "" if only is None or match[0] in only else match[0]

    lines = []
    for line in text.split("\n"):
        if _TAG.search(line):
            line = _TAG.sub(removed, line)
            line = _EMPTY_ITEMS.sub(",", line)
            line = _SPACES.sub(" ", line).strip(" \t,")
        lines.append(line)
    return "\n".join(lines).strip()


def runnable_tags(text: str) -> tuple[list[LoraTag], list[str]]:
    """The tags of ``text`` that :func:`read_tags` accepts (the first of a repeated LoRA, at most
    :data:`MAX_LORAS`), and the others as written (for an importer to remove and report)."""
    kept: list[LoraTag] = []
    refused: list[str] = []
    for match in _TAG.finditer(text):
        try:
            tag = _read_tag(match[0], match[1].casefold(), match[2])
        except InvalidRequest:
            refused.append(match[0])
            continue
        if tag.key in {other.key for other in kept} or len(kept) >= MAX_LORAS:
            refused.append(match[0])
        else:
            kept.append(tag)
    return kept, refused


def read_tags(*texts: str) -> list[LoraTag]:
    """The LoRA tags of ``texts`` (a prompt and its negative prompt), checked.

    Raises :class:`InvalidRequest` naming ``lora`` for a malformed tag, a weight out of range,
    extra arguments, a hypernetwork tag, the same LoRA twice, or more than :data:`MAX_LORAS`.
    """
    tags: list[LoraTag] = []
    seen: set[str] = set()
    for text in texts:
        for match in _TAG.finditer(text):
            tag = _read_tag(match[0], match[1].casefold(), match[2])
            if tag.key in seen:
                raise InvalidRequest(
                    "lora", tag.name, "each LoRA once per prompt", reason="is given twice", key="lora_twice"
                )
            seen.add(tag.key)
            tags.append(tag)
    if len(tags) > MAX_LORAS:
        raise InvalidRequest(
            "lora",
            f"{len(tags)} LoRAs",
            f"at most {MAX_LORAS}",
            reason="are too many",
            key="too_many_loras",
            params={"max": MAX_LORAS},
        )
    return tags


def lora_set(*texts: str) -> tuple[tuple[str, float], ...]:
    """The LoRAs that change the image: ``(case-folded name, weight)`` sorted, weight 0 left out.

    Requests with different sets never share a diffusers call (the weights are set on the model).
    """
    return tuple(sorted((tag.key, tag.weight) for tag in read_tags(*texts) if tag.weight != 0))


def _read_tag(written: str, kind: str, body: str) -> LoraTag:
    shown = shorten(written)
    if kind == "hypernet":
        raise InvalidRequest(
            "lora", shown, "<lora:NAME:WEIGHT>", reason="is a hypernetwork, which nanke cannot load",
            key="hypernet_tag",
        )  # fmt: skip
    name, _, rest = body.partition(":")
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise InvalidRequest(
            "lora", shown, "<lora:NAME> or <lora:NAME:WEIGHT>", reason="has no LoRA name", key="lora_syntax"
        )
    if not rest.strip():
        return LoraTag(name, 1.0)
    if ":" in rest:
        raise InvalidRequest(
            "lora",
            shown,
            "<lora:NAME:WEIGHT> with one weight",
            reason="has extra arguments nanke does not support",
            key="lora_syntax",
        )
    value = rest.strip()
    allowed = f"a weight from {MIN_WEIGHT:g} to {MAX_WEIGHT:g}"
    bounds = {"low": f"{MIN_WEIGHT:g}", "high": f"{MAX_WEIGHT:g}"}
    if len(value) > MAX_NUMBER_CHARS or not _NUMBER.fullmatch(value):
        raise InvalidRequest(
            "lora",
            shown,
            allowed,
            reason="has a weight that is not a number",
            key="not_a_number",
            params=bounds,
        )
    weight = float(value)
    if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
        raise InvalidRequest(
            "lora",
            shown,
            allowed,
            reason="has a weight out of range",
            key="number_out_of_range",
            params=bounds,
        )
    return LoraTag(name, weight + 0.0)  # -0.0 is 0
