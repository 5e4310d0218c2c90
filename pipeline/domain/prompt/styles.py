"""Prompt styles: the AUTOMATIC1111 WebUI's ``styles.csv``, read and applied the WebUI way.

A style is a named piece of prompt (and negative prompt) that a member adds to theirs by name
(``--style cinematic``). An admin who already has a WebUI ``styles.csv`` points nanke at it as it is.

The file (:meth:`StyleBook.read`):

- CSV with a header row, UTF-8 with or without a byte-order mark (the WebUI writes one on
  Windows), standard quoting (``"a, b"``; ``""`` inside quotes is one ``"``; a quoted field may span
  lines). Quoting is read strictly: a stray quote is a malformed file, reported with its line,
  rather than an unterminated field that silently swallows every row after it.
- Columns are found by their header (``name``, ``prompt``, ``negative_prompt``; case and
  surrounding spaces in the header do not matter). ``name`` and ``prompt`` are required (a file
  without them is not a styles file); ``negative_prompt`` may be missing (every negative is then
  empty); other columns (newer WebUI versions add ``description``) are ignored. A row shorter than
  the header has empty values for the missing columns.
- Every value goes through :func:`~pipeline.domain.text.clean_text` like a typed prompt (Unix line
  breaks, NFC) and is stripped; a display name also has its runs of whitespace made one space, so
  ``--style "Film  Noir"`` and a name written across lines still mean one style. A row with a
  refused character (a NUL, say) is skipped and logged: one bad row does not cost the others.
- Rows without a name are skipped. The row named ``None`` is skipped whatever it holds: the WebUI
  writes it as its "no style" placeholder, and ``--style none`` applying something would surprise.
- Names match without regard to case (casefold, then NFC). The first row with a name wins; later
  rows with the same name are skipped and logged together in one line.
- Caps, so that a large or hostile file cannot eat memory: at most :data:`MAX_FILE_BYTES` bytes are
  read (the rest is ignored, cut back to the last whole record so no half row is read) and at most
  :data:`MAX_STYLES` styles are kept; both cuts are logged. A single value longer than the ``csv``
  module's field limit (128 KiB) makes the file malformed.

Applying (:meth:`StyleBook.apply`), for the prompt and the negative prompt alike: a style text
containing ``{prompt}`` becomes that text with every ``{prompt}`` replaced by the member's text;
otherwise the member's text and the style text are joined with ``", "``, leaving out an empty side
(both stripped first). Several styles apply in the order given, each to the previous result; a
style named twice applies once, at its first place. The length of the result is the request's
business (:meth:`GenerationRequest.validate`), except that a result over :data:`MAX_APPLIED_CHARS`
is refused before it is built: templates that each repeat ``{prompt}`` would otherwise multiply it.

:class:`StyleFile` is what the bot holds: a path whose book is re-read when the file's mtime or size
changes, and which never raises when used (a missing file is an empty book; a broken one keeps the
last good book). The WebUI code was not consulted for any of this; it follows the behaviour its
users know.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.domain.text import clean_text, listing, quoted
from pipeline.errors import InvalidRequest, PipelineError

log = logging.getLogger(__name__)

FLAG = "--style"
"""The flag (and the field named in errors) by which a member picks styles."""

PROMPT_PLACEHOLDER = "{prompt}"
"""Where a style's text puts the member's text; without it the style text is appended."""

MAX_FILE_BYTES = 5 * 1024 * 1024
"""At most this many bytes of a styles file are read; the rest is ignored (and logged)."""

MAX_STYLES = 10_000
"""At most this many styles are kept from one file; later rows are ignored (and logged)."""

MAX_APPLIED_CHARS = 100_000
"""A prompt that styles would make longer than this is refused before it is built. Far above any
prompt a request accepts (``MAX_PROMPT_CHARS``), so it only stops runaway templates."""

_NONE_ROW = "none"
_NAME, _PROMPT, _NEGATIVE = "name", "prompt", "negative_prompt"


class StyleFileError(PipelineError):
    """A styles file cannot be read as one: not UTF-8, broken quoting, no ``name``/``prompt`` header."""


@dataclass(frozen=True)
class Style:
    """One style: its display name and the texts it adds to a prompt and a negative prompt."""

    name: str
    prompt: str = ""
    negative_prompt: str = ""

    def apply(self, prompt: str, negative_prompt: str) -> tuple[str, str]:
        """``(prompt, negative_prompt)`` with this style applied (see the module docstring).

        Raises :class:`InvalidRequest` naming ``--style`` when either would be over
        :data:`MAX_APPLIED_CHARS`.
        """
        return _merge(prompt, self.prompt, self.name), _merge(
            negative_prompt, self.negative_prompt, self.name
        )


def _merge(text: str, style_text: str, name: str) -> str:
    """The WebUI rule: ``{prompt}`` in ``style_text`` takes ``text``, else the two join with ``", "``.

    The size is worked out before the text is built, so a runaway template is refused cheaply.
    """
    text = text.strip()
    holes = style_text.count(PROMPT_PLACEHOLDER)
    if holes:
        size = len(style_text) + holes * (len(text) - len(PROMPT_PLACEHOLDER))
    else:
        size = len(text) + len(style_text) + 2
    if size > MAX_APPLIED_CHARS:
        raise InvalidRequest(
            FLAG,
            name,
            f"styles that keep the prompt under {MAX_APPLIED_CHARS:,} characters",
            reason=f"makes the prompt too long ({size:,} characters)",
            key="style_too_long",
            params={"limit": MAX_APPLIED_CHARS},
        )
    if holes:
        return style_text.replace(PROMPT_PLACEHOLDER, text)
    return ", ".join(part for part in (text, style_text) if part)


def _display(name: str) -> str:
    return " ".join(name.split())


def _key(name: str) -> str:
    """How names are compared: whitespace runs as one space, casefolded, NFC (before and after, as
    casefolding can undo a composition)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", _display(name)).casefold())


class StyleBook:
    """The styles of one file, in file order, looked up by case-insensitive name. Immutable."""

    def __init__(self, styles: Iterable[Style] = ()) -> None:
        """Keep ``styles`` in order; a name seen before (case-insensitively) is skipped and logged."""
        by_key: dict[str, Style] = {}
        duplicates: list[str] = []
        for style in styles:
            key = _key(style.name)
            if key in by_key:
                duplicates.append(style.name)
            else:
                by_key[key] = style
        if duplicates:
            log.warning(
                "styles: %d duplicate name(s) skipped, the first row wins: %s",
                len(duplicates),
                listing(duplicates),
            )
        self._by_key = by_key
        self._styles = tuple(by_key.values())

    @classmethod
    def empty(cls) -> StyleBook:
        """A book without styles (no file configured, or the file is missing)."""
        return cls()

    @classmethod
    def read(
        cls, path: str | Path, *, max_bytes: int = MAX_FILE_BYTES, max_styles: int = MAX_STYLES
    ) -> StyleBook:
        """The styles in the WebUI ``styles.csv`` at ``path``, capped (see the module docstring).

        Raises :class:`OSError` when the file cannot be opened (:class:`FileNotFoundError` when it
        does not exist) and :class:`StyleFileError` when it is not a styles file.
        """
        source = str(path)
        with open(path, "rb") as file:
            data = file.read(max_bytes + 1)
        if len(data) > max_bytes:
            data = _whole_records(data[:max_bytes])
            log.warning(
                "styles: %s is larger than %s bytes; only its first %s bytes (whole rows) are read",
                source,
                f"{max_bytes:,}",
                f"{len(data):,}",
            )
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise StyleFileError(
                f"{source} is not UTF-8 text (byte {error.start + 1:,}: {error.reason})"
            ) from None
        return cls.from_csv(text, source=source, max_styles=max_styles)

    @classmethod
    def from_csv(cls, text: str, *, source: str = "styles.csv", max_styles: int = MAX_STYLES) -> StyleBook:
        """The styles in ``text``, the contents of a ``styles.csv`` (``source`` names it in logs and
        errors). Raises :class:`StyleFileError` when it is not a styles file; an empty text is an
        empty book."""
        text = text.removeprefix("\ufeff")
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            styles, skipped = _rows(reader, source, max_styles)
        except csv.Error as error:
            raise StyleFileError(f"{source} line {reader.line_num:,}: {error}") from None
        if skipped:
            log.warning("styles: %s: %d row(s) skipped: %s", source, len(skipped), listing(skipped, each=200))
        book = cls(styles)
        log.info("styles: %d style(s) read from %s", len(book), source)
        return book

    def names(self) -> tuple[str, ...]:
        """The display names, in file order (for ``/styles`` and autocomplete)."""
        return tuple(style.name for style in self._styles)

    def find(self, name: str) -> Style | None:
        """The style called ``name`` (any case), or ``None``."""
        return self._by_key.get(_key(name))

    def get(self, name: str) -> Style:
        """The style called ``name`` (any case); :class:`InvalidRequest` naming ``--style``, the name
        given and the styles there are (at most a few, for a Discord message) when there is none."""
        style = self.find(name)
        if style is not None:
            return style
        if not self._styles:
            raise InvalidRequest(
                FLAG, name, "none", reason="is not available: no styles are configured", key="no_styles"
            )
        available = listing(self.names())
        raise InvalidRequest(
            FLAG,
            name,
            available,
            reason="is not a style on this server",
            key="unknown_style",
            params={"styles": available},
        )

    def suggest(self, typed: str, *, limit: int = 25) -> tuple[str, ...]:
        """Up to ``limit`` names for autocomplete (Discord shows 25): those starting with ``typed``
        (any case) first, then those containing it, each group in file order."""
        typed_key = _key(typed)
        starts = [style.name for key, style in self._by_key.items() if key.startswith(typed_key)]
        contains = [
            style.name
            for key, style in self._by_key.items()
            if typed_key in key and not key.startswith(typed_key)
        ]
        return tuple((starts + contains)[: max(limit, 0)])

    def apply(
        self, prompt: str, negative_prompt: str, names: Sequence[str]
    ) -> tuple[str, str, tuple[str, ...]]:
        """``prompt`` and ``negative_prompt`` with the styles ``names`` applied in order, and the
        display names applied (a name given twice applies once).

        Raises :class:`InvalidRequest` naming ``--style`` for a name there is no style for (before
        anything is applied) and when the result would be over :data:`MAX_APPLIED_CHARS`.
        """
        styles: dict[str, Style] = {}
        for name in names:
            style = self.get(name)
            styles.setdefault(_key(style.name), style)
        for style in styles.values():
            prompt, negative_prompt = style.apply(prompt, negative_prompt)
        applied = tuple(style.name for style in styles.values())
        if applied:
            log.debug("applied styles %s", applied)
        return prompt, negative_prompt, applied

    def __len__(self) -> int:
        return len(self._styles)

    def __iter__(self) -> Iterator[Style]:
        return iter(self._styles)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _key(name) in self._by_key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StyleBook) and self._styles == other._styles

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StyleBook({len(self._styles)} style(s))"


def _whole_records(data: bytes) -> bytes:
    """``data`` up to its last line break outside quotes: the complete CSV records in it.

    A line break ends a record when the quotes before it are even in number (quoted fields open and
    close in pairs, and an escaped quote is two), so a cut inside a quoted field is cut back further.
    """
    end = offset = 0
    inside = False
    for line in data.split(b"\n")[:-1]:
        offset += len(line) + 1
        inside ^= line.count(b'"') % 2 == 1
        if not inside:
            end = offset
    return data[:end]


def _rows(reader: Any, source: str, max_styles: int) -> tuple[list[Style], list[str]]:
    """The styles of the rows after the header, and why rows were skipped."""
    header = next(reader, None)
    if header is None:
        return [], []
    columns = {cell.strip().casefold(): index for index, cell in reversed(list(enumerate(header)))}
    missing = [name for name in (_NAME, _PROMPT) if name not in columns]
    if missing:
        raise StyleFileError(
            f"{source} has no {' or '.join(missing)} column in its header "
            f"(a styles file starts with name,prompt,negative_prompt; found {quoted(','.join(header))})"
        )
    styles: list[Style] = []
    keys: set[str] = set()
    skipped: list[str] = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        values: dict[str, str] = {}
        try:
            for column in (_NAME, _PROMPT, _NEGATIVE):
                index = columns.get(column)
                raw = row[index] if index is not None and index < len(row) else ""
                values[column] = clean_text(column, raw).strip()
        except InvalidRequest as error:
            skipped.append(f"line {reader.line_num:,}: {error}")
            continue
        name = _display(values[_NAME])
        if not name:
            continue
        key = _key(name)
        if key == _NONE_ROW:
            continue
        if key not in keys:
            if len(keys) >= max_styles:
                log.warning("styles: %s has more than %s styles; only the first are kept", source, max_styles)
                break
            keys.add(key)
        styles.append(Style(name, values[_PROMPT], values[_NEGATIVE]))
    return styles, skipped


class StyleFile:
    """The styles file at ``path``, re-read when its mtime or size changes. Thread-safe.

    :meth:`book` never raises: a missing file (or ``path=None``: none configured) is an empty book,
    logged once until the file appears; a file that cannot be read or is malformed is logged with
    the reason, once per version of the file, and the last good book stays in use (empty if there
    never was one). The file is looked at (one ``stat``) on each call, so an admin's edit applies to
    the next request without a restart.
    """

    def __init__(
        self,
        path: str | Path | None,
        *,
        max_bytes: int = MAX_FILE_BYTES,
        max_styles: int = MAX_STYLES,
    ) -> None:
        self.path = Path(path).expanduser() if path is not None else None
        self.max_bytes = max_bytes
        self.max_styles = max_styles
        self._lock = threading.Lock()
        self._book = StyleBook.empty()
        self._seen: tuple[int, int, int] | None = None
        self._missing_logged = False
        self._problem: tuple[tuple[int, int, int] | None, str] | None = None

    def book(self) -> StyleBook:
        """The styles as the file holds them now (see the class docstring)."""
        if self.path is None:
            return self._book
        with self._lock:
            try:
                signature = self._signature(self.path)
            except FileNotFoundError:
                if not self._missing_logged:
                    log.info("styles: %s does not exist; no styles until it does", self.path)
                    self._missing_logged = True
                self._book, self._seen = StyleBook.empty(), None
                return self._book
            except OSError as error:
                return self._failed(None, f"cannot look at it: {error}")
            self._missing_logged = False
            if signature == self._seen:
                return self._book
            return self._load(self.path, signature)

    def reload(self) -> StyleBook:
        """Read the file again even if it looks unchanged, and return :meth:`book`."""
        with self._lock:
            self._seen = None
        return self.book()

    def _load(self, path: Path, signature: tuple[int, int, int]) -> StyleBook:
        # The signature is taken before reading: a change during the read is read again next time.
        try:
            book = StyleBook.read(path, max_bytes=self.max_bytes, max_styles=self.max_styles)
        except (OSError, StyleFileError) as error:
            return self._failed(signature, str(error))
        except Exception:  # a bug here must not take /imagine down with it
            log.exception("styles: reading %s failed; keeping the %d style(s) in use", path, len(self._book))
            self._seen = signature
            return self._book
        self._book, self._seen, self._problem = book, signature, None
        return book

    def _failed(self, signature: tuple[int, int, int] | None, reason: str) -> StyleBook:
        # Logged once per version of the file and reason, not on every request.
        if self._problem != (signature, reason):
            self._problem = (signature, reason)
            log.warning(
                "styles: %s cannot be used (%s); keeping the %d style(s) in use",
                self.path,
                reason,
                len(self._book),
            )
        self._seen = signature
        return self._book

    @staticmethod
    def _signature(path: Path) -> tuple[int, int, int]:
        stat = os.stat(path)
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def __repr__(self) -> str:
        return f"StyleFile({str(self.path)!r})"
