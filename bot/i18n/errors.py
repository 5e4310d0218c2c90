"""How an error of ``pipeline`` reads in a member's language, from its key and values.

``pipeline`` speaks English and knows nothing of Discord; an error a member can meet carries a
``key`` and the ``params`` its message is made of (see :class:`~pipeline.errors.PipelineError`).
English members read the error's own message. Other languages say it from the catalog
(``pipeline.<key>``); an :class:`~pipeline.errors.InvalidRequest` is said as "field: value
detail", the field by its name in the language (``pipeline.field.<field>``) and the detail from
its key (``pipeline.invalid.<key>``). An error without a key, or with one the catalog does not
know, keeps its English words, inside a localised frame where it has one.
"""

from __future__ import annotations

import logging

from bot.i18n.catalog import Texts
from pipeline.errors import InvalidRequest, PipelineError

log = logging.getLogger(__name__)


def pipeline_text(error: PipelineError, texts: Texts) -> str:
    """What ``error`` says, in the language of ``texts``."""
    if texts.is_fallback:
        return str(error)
    if isinstance(error, InvalidRequest):
        return invalid_text(error, texts)
    if error.key is not None:
        said = texts.optional(f"pipeline.{error.key}", **error.params)
        if said is not None:
            return said
    return str(error)


def invalid_text(error: InvalidRequest, texts: Texts) -> str:
    """``error`` as "field: value detail" in the language of ``texts`` (in English: its message)."""
    detail = texts.optional(f"pipeline.invalid.{error.key}", **error.params) if error.key else None
    if detail is None and error.reason:
        detail = texts("pipeline.invalid.reason", reason=error.reason, allowed=error.allowed)
    elif detail is None:
        detail = texts("pipeline.invalid.plain", allowed=error.allowed)
    field = texts.optional(f"pipeline.field.{error.field}") or error.field
    return texts("pipeline.invalid", field=field, value=error.shown, detail=detail)
