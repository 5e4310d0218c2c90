"""The message catalogs and :class:`Texts`, the member-facing texts of one language.

A catalog is one JSON file per language beside this module, ``messages.<language>.json``: one
object of keys (``"queue.nothing"``) to templates with named placeholders (``"Job #{job_id} is
cancelled."``), meant for translators to edit. ``<language>`` is a Discord locale (``zh-CN``) or
a language every locale of which it serves (``en``). English is the fallback: it has every key,
and a text another catalog lacks, or gets wrong, is said in English.
"""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

CATALOG_DIR = Path(__file__).parent
FALLBACK = "en"
"""The language of the catalog that has every key."""
FORMAT_ERRORS = (KeyError, IndexError, ValueError, AttributeError)
"""What a template that does not fit its values raises when it is filled in."""


def load_catalog(path: Path) -> dict[str, str]:
    """The keys and templates of one catalog file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in data.items()
    ):
        raise ValueError(f"{path.name}: a catalog is one JSON object of text keys to text templates")
    return data


def placeholders(template: str) -> set[str]:
    """The names of the placeholders in ``template`` (``{job_id}`` → ``job_id``)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


class Texts:
    """The member-facing texts of one language, by key: ``texts("cancel.done", job_id=7)``.

    A key this language lacks, or a template of it that does not fit the values (a mistyped
    placeholder), is said in English and logged once; a key English lacks is a bug (``KeyError``).
    """

    def __init__(self, language: str, messages: Mapping[str, str], fallback: Mapping[str, str]) -> None:
        self.language = language
        self._messages = messages
        self._fallback = fallback
        self._reported: set[str] = set()

    @property
    def is_fallback(self) -> bool:
        """Whether these are the English texts."""
        return self._messages is self._fallback

    def __call__(self, key: str, /, **params: object) -> str:
        if not self.is_fallback:
            template = self._messages.get(key)
            if template is None:
                self._report(key, "it has no text for it")
            else:
                try:
                    return template.format(**params)
                except FORMAT_ERRORS as error:
                    self._report(key, f"its text does not fit the values {sorted(params)} ({error!r})")
        return self._fallback[key].format(**params)

    def optional(self, key: str, /, **params: object) -> str | None:
        """The text of ``key``, or ``None`` when no catalog has it or English does not fit ``params``
        (a key from another part of nanke that this catalog does not know, or knows differently)."""
        if key not in self._fallback:
            return None
        try:
            return self(key, **params)
        except FORMAT_ERRORS:
            return None

    def _report(self, key: str, problem: str) -> None:
        if key in self._reported:
            return
        self._reported.add(key)
        log.warning("the %s catalog cannot say %r: %s; saying it in English", self.language, key, problem)

    def __repr__(self) -> str:
        return f"Texts({self.language!r})"


def load_texts(directory: Path = CATALOG_DIR) -> dict[str, Texts]:
    """Every language with a catalog in ``directory``, English first."""
    catalogs = {
        path.name.removeprefix("messages.").removesuffix(".json"): load_catalog(path)
        for path in sorted(directory.glob("messages.*.json"))
    }
    if FALLBACK not in catalogs:
        raise FileNotFoundError(f"messages.{FALLBACK}.json: the fallback catalog is missing from {directory}")
    fallback = catalogs[FALLBACK]
    languages = [FALLBACK, *sorted(set(catalogs) - {FALLBACK})]
    return {language: Texts(language, catalogs[language], fallback) for language in languages}
