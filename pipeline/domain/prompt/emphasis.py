"""AUTOMATIC1111 emphasis syntax, parsed into runs of text with a weight each.

The syntax, as the WebUI documents it (this is an independent implementation of it):

- ``(text)`` multiplies the weight of ``text`` by 1.1, ``[text]`` divides it by 1.1; brackets
  nest and multiply: ``((text))`` is 1.21, ``[[text]]`` about 0.826.
- ``(text:1.3)`` gives that bracket the factor 1.3 instead of 1.1 (it still multiplies with the
  brackets around it). Only round brackets take a factor; ``[text:1.3]`` is ``:1.3`` as text.
- ``\\(``, ``\\)``, ``\\[``, ``\\]`` and ``\\\\`` are the literal characters.
- An opening bracket that is never closed closes at the end of the text: its factor applies to
  everything after it (``(unbalanced`` is 1.1).
- A closing bracket with no matching opening bracket of the same shape (a stray ``)``, or the
  ``]`` in ``(a]``) is literal text: closing the wrong bracket would silently re-weight text
  the person did not mark. A factor too large to be a finite
  number is literal text too (the bracket then counts as a plain ``( )``).
- ``BREAK``, in capitals and as a word of its own (letters, digits or ``_`` on neither side),
  ends the current 75-token chunk; it becomes the marker :data:`BREAK` and the whitespace
  around it is dropped. Brackets around it do not weight it.

Neighbouring runs of equal weight merge, and empty runs are dropped, so empty text (or ``()``)
gives ``[]``. Weights are only multiplied here; the meaning of a weight (scaling a token's text
encoder output) belongs to :mod:`pipeline.domain.prompt.embeddings`.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Final

log = logging.getLogger(__name__)

ROUND_FACTOR: Final = 1.1
"""The factor of ``( )`` without an explicit weight; ``[ ]`` uses its inverse."""

BREAK: Final[tuple[str, float]] = ("BREAK", -1.0)
"""The run that stands for the ``BREAK`` keyword: no text, a forced chunk boundary.

Its weight -1.0 cannot come from text: a run whose text is exactly ``BREAK`` is always the
keyword, since any run boundary is a bracket or escape, which are not word characters.
"""

_TOKEN_RE = re.compile(
    r"""
    \\(?P<escaped>[\\()\[\]])                                      # \( \) \[ \] \\
    | (?P<weighted>:\s*(?P<weight>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*\))  # :1.3)
    | (?P<open>[(\[])
    | (?P<close>[)\]])
    | (?P<text>[^\\()\[\]:]+|[\\:])                                # anything else
    """,
    re.VERBOSE,
)
_BREAK_RE = re.compile(r"\s*\bBREAK\b\s*")
_CLOSING = {"(": ")", "[": "]"}


@dataclass
class _Run:
    text: str
    weight: float = 1.0
    is_break: bool = False


@dataclass
class _Parser:
    runs: list[_Run]
    open_brackets: list[tuple[str, int]]
    """Each unclosed bracket and the index of the first run it covers."""

    def add_text(self, text: str) -> None:
        pieces = _BREAK_RE.split(text)
        for position, piece in enumerate(pieces):
            if position:
                self.runs.append(_Run(BREAK[0], BREAK[1], is_break=True))
            if piece:
                self.runs.append(_Run(piece))

    def close(self, bracket: str, factor: float | None = None) -> bool:
        """Close the innermost bracket if it is ``bracket``'s partner; False when it is not."""
        if not self.open_brackets or _CLOSING[self.open_brackets[-1][0]] != bracket:
            return False
        opening, start = self.open_brackets.pop()
        if factor is None:
            factor = ROUND_FACTOR if opening == "(" else 1 / ROUND_FACTOR
        for run in self.runs[start:]:
            if not run.is_break:
                run.weight *= factor
        return True

    def feed(self, match: re.Match[str]) -> None:
        if match["escaped"]:
            self.runs.append(_Run(match["escaped"]))
        elif match["weighted"]:
            factor = float(match["weight"])
            if not math.isfinite(factor) or not self.close(")", factor):
                self.add_text(match["weighted"][:-1])
                self.feed_close(")")
        elif match["open"]:
            self.open_brackets.append((match["open"], len(self.runs)))
        elif match["close"]:
            self.feed_close(match["close"])
        else:
            self.add_text(match["text"])

    def feed_close(self, bracket: str) -> None:
        if not self.close(bracket):
            self.runs.append(_Run(bracket))


def _merge(runs: list[_Run]) -> list[tuple[str, float]]:
    merged: list[tuple[str, float]] = []
    for run in runs:
        if run.is_break:
            merged.append(BREAK)
        elif merged and merged[-1] != BREAK and math.isclose(merged[-1][1], run.weight, rel_tol=1e-9):
            merged[-1] = (merged[-1][0] + run.text, merged[-1][1])
        else:
            merged.append((run.text, run.weight))
    return merged


def parse_emphasis(text: str) -> list[tuple[str, float]]:
    """Split ``text`` into ``(text, weight)`` runs following A1111's emphasis syntax.

    ``BREAK`` keywords appear as the :data:`BREAK` run. For example
    ``parse_emphasis("a (house:1.3) [on] a hill")`` is
    ``[("a ", 1.0), ("house", 1.3), (" ", 1.0), ("on", 0.909...), (" a hill", 1.0)]``.
    Never raises for any string.
    """
    parser = _Parser(runs=[], open_brackets=[])
    for match in _TOKEN_RE.finditer(text):
        parser.feed(match)
    while parser.open_brackets:
        parser.close(_CLOSING[parser.open_brackets[-1][0]])
    runs = _merge([run for run in parser.runs if run.text])
    log.debug("emphasis runs of %r: %s", text, runs)
    return runs


def is_break(run: tuple[str, float]) -> bool:
    """True for the :data:`BREAK` marker run."""
    return run == BREAK
