"""An imported image's parameters as a request nanke can run here, and what differs from the original."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from pipeline.domain.metadata.infotext import parse_infotext
from pipeline.domain.models import ModelCatalog
from pipeline.domain.request import GenerationRequest
from pipeline.domain.text import quoted
from pipeline.errors import ModelNotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportedRequest:
    request: GenerationRequest
    """Not validated yet: the caller validates against its own limits."""
    notes: tuple[str, ...]
    """What nanke cannot honour (LoRA tags, hires fix, a model it does not have), one line each."""


def import_request(text: str, *, catalog: ModelCatalog, model: str | None = None) -> ImportedRequest:
    """The request of an A1111 ``parameters`` text, on a model of ``catalog`` (or on ``model``,
    when the caller chose one).

    The text's model is kept when the catalog has one by that name, else the default model is
    used and a note says so. Only the catalog's names are looked up: a path or Hub id in a file
    from elsewhere never loads anything.
    """
    parsed = parse_infotext(text)
    notes = list(parsed.unsupported)
    request = parsed.request
    if model is not None:
        request = replace(request, model=model)
    elif request.model is not None:
        try:
            request = replace(request, model=catalog.resolve(request.model, allow_paths=False).name)
        except ModelNotFound:
            notes.append(f"model {quoted(request.model)} is not installed here: using the default model")
            request = replace(request, model=None)
    return ImportedRequest(request, tuple(notes))
