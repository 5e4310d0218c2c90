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
- A weight is kept within :data:`WEIGHT_RANGE`, -10 to 10: a product of brackets beyond it (a
  factor of forty digits, or 900 nested ``(``) is that end of the range. Real prompts stay far
  inside it. (A factor is written in digits: ``(x:1e3)`` is the text ``x:1e3`` at 1.1.)

Neighbouring runs of equal weight merge, and empty runs are dropped, so empty text (or ``()``)
gives ``[]``. Parsing takes time linear in the length of the text, however the brackets nest or
stay unclosed. Weights are only multiplied here; the meaning of a weight (scaling a token's text
encoder output) belongs to :mod:`pipeline.domain.prompt.embeddings`.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Final

log = logging.getLogger(__name__)

ROUND_FACTOR: Final = 1.1
"""The factor of ``( )`` without an explicit weight; ``[ ]`` uses its inverse."""

WEIGHT_RANGE: Final = (-10.0, 10.0)
"""The lowest and the highest weight of a run; weights outside are brought to the nearer end.

People write weights from about 0.5 to 2 (``((word))`` is 1.21), sometimes 3 or a negative one;
well before 10 the weighted words turn into noise. The bounds keep every weight finite, in the
float16 the text encoder may run in too, whatever is typed: a factor of forty digits or 900
nested brackets would otherwise give an infinite weight and a NaN image.
"""

BREAK: Final[tuple[str, float]] = ("BREAK", -1000.0)
"""The run that stands for the ``BREAK`` keyword: no text, a forced chunk boundary.

Its weight is outside :data:`WEIGHT_RANGE`, so no run of text equals it (not even ``BREAK``
made of two merged runs, as in ``(BRE:-1)(AK:-1)``).
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
_BREAK_RE = re.compile(r"\bBREAK\b")
"""The keyword; the whitespace around it is stripped from the text beside it (a pattern with
optional whitespace on either side would backtrack quadratically over a long run of spaces)."""
_CLOSING = {"(": ")", "[": "]"}


@dataclass
class _Run:
    text: str
    group: int
    """The innermost bracket around the run (an index into ``_Parser.factors``; 0: none)."""
    is_break: bool = False


@dataclass
class _Parser:
    """One pass over the tokens; a run's weight is worked out once, when all brackets are known.

    Every bracket gets an index when it opens, with the index of the bracket around it and its
    factor (the default factor until a ``:weight)`` says otherwise). A run's weight is the product
    of the factors from the outermost bracket in: each bracket's product is its parent's times its
    own, and parents open before their children, so one pass over the brackets gives them all.
    Nothing is visited twice, so the time is linear in the length of the text however the
    brackets nest or stay unclosed.
    """

    runs: list[_Run] = field(default_factory=list)
    factors: list[float] = field(default_factory=lambda: [1.0])
    parents: list[int] = field(default_factory=lambda: [0])
    open_brackets: list[tuple[str, int]] = field(default_factory=list)
    """Each unclosed bracket and its index."""

    @property
    def group(self) -> int:
        return self.open_brackets[-1][1] if self.open_brackets else 0

    def add_text(self, text: str) -> None:
        pieces = _BREAK_RE.split(text)
        for position, piece in enumerate(pieces):
            if position:
                self.runs.append(_Run(BREAK[0], 0, is_break=True))
                piece = piece.lstrip()
            if position < len(pieces) - 1:
                piece = piece.rstrip()
            if piece:
                self.runs.append(_Run(piece, self.group))

    def open(self, bracket: str) -> None:
        self.factors.append(ROUND_FACTOR if bracket == "(" else 1 / ROUND_FACTOR)
        self.parents.append(self.group)
        self.open_brackets.append((bracket, len(self.factors) - 1))

    def close(self, bracket: str, factor: float | None = None) -> bool:
        """Close the innermost bracket if it is ``bracket``'s partner; False when it is not."""
        if not self.open_brackets or _CLOSING[self.open_brackets[-1][0]] != bracket:
            return False
        _, index = self.open_brackets.pop()
        if factor is not None:
            self.factors[index] = factor
        return True

    def feed(self, match: re.Match[str]) -> None:
        if match["escaped"]:
            self.runs.append(_Run(match["escaped"], self.group))
        elif match["weighted"]:
            factor = float(match["weight"])
            if not math.isfinite(factor) or not self.close(")", factor):
                self.add_text(match["weighted"][:-1])
                self.feed_close(")")
        elif match["open"]:
            self.open(match["open"])
        elif match["close"]:
            self.feed_close(match["close"])
        else:
            self.add_text(match["text"])

    def feed_close(self, bracket: str) -> None:
        if not self.close(bracket):
            self.runs.append(_Run(bracket, self.group))

    def weighted_runs(self) -> list[tuple[str, float]]:
        """Every run with its weight, in the :data:`WEIGHT_RANGE`; brackets still open close here."""
        products = [1.0] * len(self.factors)
        for index in range(1, len(self.factors)):
            products[index] = products[self.parents[index]] * self.factors[index]
        return [BREAK if run.is_break else (run.text, _clamp(products[run.group])) for run in self.runs]


def _clamp(weight: float) -> float:
    """``weight`` brought into :data:`WEIGHT_RANGE`.

    A product is NaN only when it overflowed to infinity and then met a zero factor: zero it is.
    """
    if math.isnan(weight):
        return 0.0
    low, high = WEIGHT_RANGE
    return min(max(weight, low), high)


def _merge(runs: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Join neighbouring runs of equal weight (collecting the pieces keeps this linear too)."""
    groups: list[tuple[list[str], float]] = []
    for text, weight in runs:
        if (text, weight) == BREAK:
            groups.append(([text], weight))
        elif groups and groups[-1][1] != BREAK[1] and math.isclose(groups[-1][1], weight, rel_tol=1e-9):
            groups[-1][0].append(text)
        else:
            groups.append(([text], weight))
    return [("".join(pieces), weight) for pieces, weight in groups]


def parse_emphasis(text: str) -> list[tuple[str, float]]:
    """Split ``text`` into ``(text, weight)`` runs following A1111's emphasis syntax.

    ``BREAK`` keywords appear as the :data:`BREAK` run. For example
    ``parse_emphasis("a (house:1.3) [on] a hill")`` is
    ``[("a ", 1.0), ("house", 1.3), (" ", 1.0), ("on", 0.909...), (" a hill", 1.0)]``.
    Weights are kept within :data:`WEIGHT_RANGE`. Never raises for any string, and takes time
    linear in its length.
    """
    parser = _Parser()
    for match in _TOKEN_RE.finditer(text):
        parser.feed(match)
    runs = _merge(parser.weighted_runs())
    log.debug("emphasis runs of %r: %s", text[:200], runs[:20])
    return runs


def is_break(run: tuple[str, float]) -> bool:
    """True for the :data:`BREAK` marker run."""
    return run == BREAK
