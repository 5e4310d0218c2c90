"""A server's content rules for prompts: which words it refuses, and which it allows only where
Discord marks a channel as age-restricted.

Matching looks at what the words say, not how they are written: the prompt and every term are
put in Unicode NFKC (full-width letters become ordinary ones), case-folded, stripped of accents,
of AUTOMATIC1111 emphasis (``(((word)))``, ``[word]``, ``(word:1.3)``) and of punctuation inside
a word (``n.s.f.w`` is ``nsfw``); letters spelled out one by one (``n s f w``) are joined. A term
matches whole words (``sex`` does not match ``Essex``); a term in Chinese, Japanese or Korean
script, which has no spaces between words, matches anywhere.

The rules, in order:

1. a **banned term** refuses the prompt everywhere;
2. a term about **minors** together with an NSFW term refuses it everywhere, whatever the server
   chose (this one cannot be turned off);
3. an **NSFW term** refuses it, or (the default) allows it only in an age-restricted channel, and
   marks the job so it never enters public listings or the showcase.

Only the prompt is judged: negative prompts name what should *not* be drawn ("nsfw" is common
there). The default lists are short and deliberately plain; each server adds its own.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

NsfwAction = Literal["age_restricted", "refuse"]
FlaggedAction = Literal["withhold", "spoiler"]
NSFW_ACTIONS: tuple[str, ...] = ("age_restricted", "refuse")
FLAGGED_ACTIONS: tuple[str, ...] = ("withhold", "spoiler")

DEFAULT_NSFW_TERMS: tuple[str, ...] = (
    "nsfw",
    "nude",
    "nudes",
    "nudity",
    "naked",
    "topless",
    "bottomless",
    "porn",
    "porno",
    "pornographic",
    "hentai",
    "sex",
    "sexual",
    "explicit",
    "erotic",
    "xxx",
    "lewd",
    "nipples",
    "genitals",
    "penis",
    "vagina",
    "裸体",
    "色情",
)
"""Allowed only in age-restricted channels on a fresh server."""
MINOR_TERMS: tuple[str, ...] = (
    "child",
    "children",
    "kid",
    "kids",
    "minor",
    "underage",
    "teen",
    "teenage",
    "young girl",
    "young boy",
    "schoolgirl",
    "schoolboy",
    "loli",
    "shota",
    "儿童",
    "未成年",
)
"""With an NSFW term, refused everywhere."""
MAX_TERMS = 200
MAX_TERM_CHARS = 60

_EMPHASIS_WEIGHT = re.compile(r":\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)\s*(?=[)\]])")
_SPELLED_OUT = re.compile(r"\b(?:\w )+\w\b")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


@dataclass(frozen=True)
class Policy:
    """One server's rules (its admins change them with ``/settings moderation``)."""

    banned_terms: tuple[str, ...] = ()
    nsfw_terms: tuple[str, ...] = DEFAULT_NSFW_TERMS
    nsfw_action: NsfwAction = "age_restricted"
    flagged_images: FlaggedAction = "withhold"
    """What delivery does with an image the safety check flagged, outside age-restricted channels."""
    daily_limit: int = 0
    """Images one member may ask for per day in the server (0: no limit)."""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    nsfw: bool = False
    """The prompt holds an NSFW term: allowed (if at all) only in age-restricted channels."""
    rule: str | None = None
    """``banned``, ``minors`` or ``nsfw``: the rule that refused it (``None`` when allowed)."""
    term: str | None = None
    """The term that decided it, as the server wrote it."""


def judge(prompt: str, policy: Policy, *, age_restricted: bool) -> Verdict:
    """What ``policy`` says about ``prompt`` in a channel that is (or is not) age-restricted."""
    banned = first_match(prompt, policy.banned_terms)
    if banned is not None:
        return Verdict(False, rule="banned", term=banned)
    nsfw = first_match(prompt, policy.nsfw_terms)
    if nsfw is None:
        return Verdict(True)
    minor = first_match(prompt, MINOR_TERMS)
    if minor is not None:
        return Verdict(False, nsfw=True, rule="minors", term=minor)
    if policy.nsfw_action == "refuse" or not age_restricted:
        return Verdict(False, nsfw=True, rule="nsfw", term=nsfw)
    return Verdict(True, nsfw=True, term=nsfw)


def normalise(text: str, *, join_inner_punctuation: bool = False) -> str:
    """``text`` as the rules read it (see the module docstring): lower-case words separated by one
    space. Punctuation separates words, or with ``join_inner_punctuation`` joins the letters on
    both sides of it (``n.s.f.w`` is ``nsfw``); the rules read a prompt both ways."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    text = _EMPHASIS_WEIGHT.sub(" ", text)
    if join_inner_punctuation:
        text = re.sub(r"(?<=\w)[^\w\s]+(?=\w)", "", text)
    text = re.sub(r"[^\w]+", " ", text).strip()
    return _SPELLED_OUT.sub(lambda match: match.group(0).replace(" ", ""), text)


def first_match(prompt: str, terms: Iterable[str]) -> str | None:
    """The first of ``terms`` the prompt holds (read both ways, see :func:`normalise`), or ``None``."""
    readings = [f" {normalise(prompt)} ", f" {normalise(prompt, join_inner_punctuation=True)} "]
    squeezed = [reading.replace(" ", "") for reading in readings]
    for term in terms:
        wanted = normalise(term)
        if not wanted:
            continue
        if _CJK.search(wanted):
            if any(wanted.replace(" ", "") in text for text in squeezed):
                return term
        elif any(f" {wanted} " in text for text in readings):
            return term
        elif " " in wanted and f" {wanted.replace(' ', '')} " in readings[1]:
            return term  # "blood bath" written as one word
    return None


def clean_terms(terms: Sequence[str]) -> tuple[str, ...]:
    """Terms as an admin typed them (comma-separated), trimmed, deduplicated, bounded in size."""
    seen: dict[str, str] = {}
    for term in terms:
        term = " ".join(term.split())[:MAX_TERM_CHARS]
        if term and normalise(term) and normalise(term) not in seen:
            seen[normalise(term)] = term
    return tuple(seen.values())[:MAX_TERMS]


def term_list(text: str) -> list[str]:
    """Terms as an admin types them: separated by commas (or ``，``, ``、``, ``;`` and new lines)."""
    for separator in ("，", "、", "；", ";", "\n"):
        text = text.replace(separator, ",")
    return [term.strip() for term in text.split(",") if term.strip()]


def with_terms(
    terms: Iterable[str], *, added: Iterable[str] = (), removed: Iterable[str] = ()
) -> tuple[str, ...]:
    """``terms`` with ``added`` appended and ``removed`` taken out (compared as the rules read them)."""
    gone = {normalise(term) for term in removed}
    return clean_terms([*(term for term in terms if normalise(term) not in gone), *added])


@dataclass(frozen=True)
class Showing:
    """Which of a job's images one channel shows, and how."""

    shown: tuple[int, ...]
    """The indexes of the images to post."""
    withheld: tuple[int, ...] = ()
    """The indexes of flagged images held back."""
    spoiler: bool = False
    """Post behind Discord's spoiler cover."""


def showing(flags: Sequence[bool], *, age_restricted: bool, action: FlaggedAction) -> Showing:
    """How a channel shows images of which ``flags`` tells the flagged ones: all of them in an
    age-restricted channel; elsewhere flagged ones withheld, or all behind a spoiler, per ``action``."""
    every = tuple(range(len(flags)))
    if age_restricted or not any(flags):
        return Showing(every)
    if action == "spoiler":
        return Showing(every, spoiler=True)
    return Showing(
        tuple(i for i, flagged in enumerate(flags) if not flagged),
        withheld=tuple(i for i, flagged in enumerate(flags) if flagged),
    )
