"""Reading request bodies: JSON, or multipart with ``payload_json`` and ``files[n]``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, hdrs, web

from .recording import UploadedFile


@dataclass
class ParsedBody:
    json: Any = None
    files: list[UploadedFile] = field(default_factory=list)


async def parse_body(request: web.Request) -> ParsedBody:
    if request.content_type == "multipart/form-data":
        return await _parse_multipart(request)
    raw = await request.read()
    if not raw:
        return ParsedBody()
    try:
        return ParsedBody(json=json.loads(raw))
    except ValueError:
        return ParsedBody(json=raw.decode("utf-8", errors="replace"))


async def _parse_multipart(request: web.Request) -> ParsedBody:
    body = ParsedBody()
    form: dict[str, str] = {}
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            continue
        data = bytes(await part.read())
        if part.filename is not None:
            content_type = part.headers.get(hdrs.CONTENT_TYPE)
            body.files.append(UploadedFile(str(part.name), part.filename, content_type, data))
        elif part.name == "payload_json":
            body.json = json.loads(data)
        else:
            form[str(part.name)] = data.decode("utf-8", errors="replace")
    if body.json is None and form:
        body.json = form
    return body
