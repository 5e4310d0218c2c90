"""An imported image's parameters as a request nanke can run here, and what differs from the original."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.domain.metadata.infotext import ParsedInfotext, parse_infotext
from pipeline.domain.models import ModelCatalog
from pipeline.domain.models.resources import Resource, ResourceFolder, Resources
from pipeline.domain.prompt.networks import LoraTag, find_tags, runnable_tags, strip_tags
from pipeline.domain.request import GenerationRequest
from pipeline.domain.text import quoted
from pipeline.errors import ModelNotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportedRequest:
    request: GenerationRequest
    """Not validated yet: the caller validates against its own limits."""
    notes: tuple[str, ...]
    """What nanke cannot honour (a LoRA or model it does not have, ...), one line each."""


def import_request(
    text: str,
    *,
    catalog: ModelCatalog,
    model: str | None = None,
    resources: Resources | None = None,
) -> ImportedRequest:
    """The request of an A1111 ``parameters`` text, on a model of ``catalog`` (or on ``model``,
    when the caller chose one), with its LoRAs, embeddings and VAE found in ``resources``.

    The text's model is kept when the catalog has one by that name, else the default model is
    used and a note says so. Only the catalog's names are looked up: a path or Hub id in a file
    from elsewhere never loads anything. LoRAs, embeddings and the VAE are found by the hash the
    text gives first (a file renamed here is still found) and by name second; a tag is renamed to
    the local file's name. A file that is not here is named with its hash (to find it on civitai)
    and left out, so the rest of the image still runs.
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
    if resources is not None:
        request = _with_loras(request, parsed, resources, notes)
        request = _with_embeddings(request, parsed, resources, notes)
        request = _with_vae(request, parsed, resources, notes)
    return ImportedRequest(request, tuple(notes))


def _found(folder: ResourceFolder, name: str, digest: str | None, cache_dir: Path | None) -> Resource | None:
    return (folder.find_hash(digest, cache_dir) if digest else None) or folder.find(name)


def _missing(kind: str, name: str, digest: str | None, folder: str, consequence: str) -> str:
    hashed = f" (hash {digest})" if digest else ""
    return f"{kind} {quoted(name)}{hashed} is not in the {folder} folder: {consequence}"


def _with_loras(
    request: GenerationRequest, parsed: ParsedInfotext, resources: Resources, notes: list[str]
) -> GenerationRequest:
    texts = {"prompt": request.prompt, "negative_prompt": request.negative_prompt}
    for field_name, text in texts.items():
        tags, _ = runnable_tags(text)
        renamed = {}
        gone = []
        for tag in tags:
            digest = parsed.lora_hashes.get(tag.key)
            found = _found(resources.loras, tag.name, digest, resources.cache_dir)
            if found is None:
                notes.append(_missing("LoRA", tag.name, digest, "loras", "the image is made without it"))
                gone.append(tag)
            elif found.name != tag.name:
                renamed[tag] = found.name
        if gone:
            text = strip_tags(text, only={written for written in find_tags(text) if _names(written, gone)})
        for tag, name in renamed.items():
            text = text.replace(f"<lora:{tag.name}", f"<lora:{name}").replace(
                f"<lyco:{tag.name}", f"<lora:{name}"
            )
        texts[field_name] = text
    return replace(request, **texts)


def _names(written: str, tags: list[LoraTag]) -> bool:
    found, _ = runnable_tags(written)
    return bool(found) and found[0].key in {tag.key for tag in tags}


def _with_embeddings(
    request: GenerationRequest, parsed: ParsedInfotext, resources: Resources, notes: list[str]
) -> GenerationRequest:
    prompt, negative = request.prompt, request.negative_prompt
    for name, digest in parsed.ti_hashes.items():
        found = _found(resources.embeddings, name, digest, resources.cache_dir)
        if found is None:
            notes.append(
                _missing("embedding", name, digest, "embeddings", "its name stays a plain word of the prompt")
            )
            continue
        local = found.path.stem.casefold()
        if local != name:
            word = re.compile(re.escape(name), re.IGNORECASE)
            prompt, negative = word.sub(local, prompt), word.sub(local, negative)
    return replace(request, prompt=prompt, negative_prompt=negative)


def _with_vae(
    request: GenerationRequest, parsed: ParsedInfotext, resources: Resources, notes: list[str]
) -> GenerationRequest:
    if request.vae is None and parsed.vae_hash is None:
        return request
    name = request.vae or ""
    found = _found(resources.vaes, name, parsed.vae_hash, resources.cache_dir)
    if found is None:
        notes.append(
            _missing("VAE", name or "(unnamed)", parsed.vae_hash, "VAE", "the model's own VAE is used")
        )
        return replace(request, vae=None)
    return replace(request, vae=found.name)
