"""Rules for text that comes from outside: what a request's text may contain, and how it is echoed.

Text fields (prompt, negative prompt, model name; a sampler name is checked the same way before
it is looked up):

- Line breaks are made Unix ones: ``\\r\\n`` and a lone ``\\r`` become ``\\n`` (text pasted from
  Windows, or read back from an infotext written there, is the same prompt as typed anywhere else).
- Then the text is put in Unicode normalisation form C (NFC): an accented letter typed as a letter
  plus a combining accent and the same letter typed precomposed are one and the same prompt, and
  so one stored request. Both steps are idempotent, so a normalised request normalises to itself
  and its canonical JSON reproduces exactly.
- Refused, with an error naming the field, the character and where it is: control characters
  (Unicode category Cc: C0, DEL and C1) other than tab and line feed, and lone surrogates
  (``U+D800``–``U+DFFF``: halves of UTF-16 pairs, which is what Python makes of bytes that are not
  valid UTF-8 in command-line arguments). Neither is text anyone means to type; a NUL or a
  surrogate also cannot be stored or encoded as UTF-8.

Numbers read from text are bounded by length (:data:`MAX_NUMBER_CHARS`) before they are converted,
so a value of thousands of digits is a clear refusal, not a slow or failing conversion (Python
refuses to convert more than 4 300 digits to an integer at all).

Messages echo what was typed shortened to :data:`SHOWN_CHARS` characters (:func:`shorten`,
:func:`quoted`), as :class:`~pipeline.errors.InvalidRequest` does, and name at most
:data:`LISTED_ITEMS` items of a list (:func:`listing`): they are shown in Discord.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence

from pipeline.errors import InvalidRequest

log = logging.getLogger(__name__)

SHOWN_CHARS = 60
"""At most this many characters of a value a person gave are echoed in a message."""

LISTED_ITEMS = 6
"""At most this many items of a list (models, ignored settings) are named in a message."""

MAX_NUMBER_CHARS = 40
"""The longest text read as a number (or as ``WxH``/``W:H``): far longer than any value nanke
accepts (a seed has at most 10 digits), and short enough that converting it is instant."""

_NEWLINES = re.compile(r"\r\n?")
# Cc without \t (09), \n (0a) and \r (0d, made \n), then the surrogates.
_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_ALLOWED_TEXT = "text without control characters; line breaks and tabs are fine"


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``…`` when it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quoted(text: str, limit: int = SHOWN_CHARS) -> str:
    """``repr(text)`` (quoted, control characters escaped) cut to at most ``limit`` characters."""
    return shorten(repr(text), limit)


def listing(items: Sequence[str], *, limit: int = LISTED_ITEMS, each: int = SHOWN_CHARS) -> str:
    """``items`` joined by ``", "`` for a message: each shortened, at most ``limit`` of them."""
    shown = ", ".join(shorten(item, each) for item in items[:limit])
    return f"{shown} and {len(items) - limit:,} more" if len(items) > limit else shown


def clean_text(field: str, text: str) -> str:
    """``text`` with Unix line breaks, in NFC; :class:`InvalidRequest` for refused characters.

    See the module docstring for the rules. ``field`` names the field in the error.
    """
    refused = _REFUSED.search(text)
    if refused is not None:
        raise _refusal(field, text, refused.start())
    return unicodedata.normalize("NFC", _NEWLINES.sub("\n", text))


def _refusal(field: str, text: str, index: int) -> InvalidRequest:
    code = f"U+{ord(text[index]):04X}"
    where = f"at character {index + 1:,}"
    log.debug("%s: refused %s %s", field, code, where)
    if "\ud800" <= text[index] <= "\udfff":
        return InvalidRequest(
            field,
            text,
            "valid Unicode text",
            reason=f"has a lone surrogate ({code}) {where}: not a character (text decoded wrongly?)",
        )
    return InvalidRequest(field, text, _ALLOWED_TEXT, reason=f"has the control character {code} {where}")


def too_long_for_a_number(text: str) -> bool:
    """True when ``text`` is longer than :data:`MAX_NUMBER_CHARS`: refuse it before converting it."""
    return len(text) > MAX_NUMBER_CHARS


def one_line(text: str) -> str:
    """``text`` with its lines joined by spaces: a message or a log entry that stays one line."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())
