"""Messages and attachments the double stores, and how request bodies create and edit them."""

from __future__ import annotations

import mimetypes
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .clock import FakeClock, Snowflakes
from .models import User
from .recording import UploadedFile

EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_EMBEDS = 1 << 2
SUPPRESS_NOTIFICATIONS = 1 << 12
IS_COMPONENTS_V2 = 1 << 15
# Flags a client may set when it sends or edits a message; the rest are Discord's to set.
CLIENT_FLAGS = EPHEMERAL | SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2
EDITABLE_FLAGS = SUPPRESS_EMBEDS | IS_COMPONENTS_V2

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class StoredAttachment:
    id: int
    filename: str
    content_type: str | None
    data: bytes
    description: str | None = None
    ephemeral: bool = False

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def dimensions(self) -> tuple[int, int] | None:
        """(width, height) for a PNG, read from its IHDR chunk, as Discord reports them."""
        if self.data[:8] != PNG_SIGNATURE or len(self.data) < 24:
            return None
        width, height = struct.unpack(">II", self.data[16:24])
        return width, height

    @classmethod
    def from_upload(
        cls, id: int, upload: UploadedFile, meta: Mapping[str, Any] | None = None
    ) -> StoredAttachment:
        meta = meta or {}
        filename = str(meta.get("filename") or upload.filename)
        content_type = upload.content_type
        if content_type in (None, "", "application/octet-stream"):
            content_type = mimetypes.guess_type(filename)[0] or content_type
        return cls(
            id=id,
            filename=filename,
            content_type=content_type,
            data=upload.data,
            description=meta.get("description"),
        )


@dataclass
class StoredMessage:
    id: int
    channel_id: int
    guild_id: int | None
    author: User
    timestamp: float
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[StoredAttachment] = field(default_factory=list)
    flags: int = 0
    allowed_mentions: dict[str, Any] | None = None
    tts: bool = False
    type: int = 0
    nonce: str | int | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    message_reference: dict[str, Any] | None = None
    edited_at: float | None = None
    edit_times: list[float] = field(default_factory=list)
    deleted: bool = False

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & LOADING)

    def walk_components(self) -> Iterator[dict[str, Any]]:
        """Every component, depth first, through action rows, sections, containers and labels."""
        yield from walk_components(self.components)

    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in self.walk_components() if "custom_id" in c]

    def component(self, custom_id: str) -> dict[str, Any]:
        for component in self.walk_components():
            if component.get("custom_id") == custom_id:
                return component
        raise KeyError(f"message {self.id} has no component {custom_id!r}; it has {self.custom_ids()}")


def walk_components(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for component in components:
        yield component
        yield from walk_components(component.get("components", []))
        for key in ("accessory", "component"):
            if key in component:
                yield from walk_components([component[key]])


class MessageStore:
    """Messages by id and by channel, plus every attachment by id (the double's CDN)."""

    def __init__(self, clock: FakeClock, snowflakes: Snowflakes) -> None:
        self._clock = clock
        self._snowflakes = snowflakes
        self._messages: dict[int, StoredMessage] = {}
        self.attachments: dict[int, StoredAttachment] = {}

    def create(
        self,
        *,
        channel_id: int,
        guild_id: int | None,
        author: User,
        body: Mapping[str, Any],
        files: list[UploadedFile],
        **extra: Any,
    ) -> StoredMessage:
        message = StoredMessage(
            id=self._snowflakes.next(),
            channel_id=channel_id,
            guild_id=guild_id,
            author=author,
            timestamp=self._clock.now(),
            **extra,
        )
        message.flags |= int(body.get("flags") or 0) & CLIENT_FLAGS
        message.tts = bool(body.get("tts", False))
        message.nonce = body.get("nonce")
        message.message_reference = body.get("message_reference")
        if message.message_reference is not None and message.type == 0:
            message.type = 19  # REPLY
        self.apply(message, body, files, creating=True)
        self._messages[message.id] = message
        return message

    def edit(self, message: StoredMessage, body: Mapping[str, Any], files: list[UploadedFile]) -> None:
        now = self._clock.now()
        if body.get("flags") is not None:
            message.flags = (message.flags & ~EDITABLE_FLAGS) | (int(body["flags"]) & EDITABLE_FLAGS)
        message.flags &= ~LOADING
        self.apply(message, body, files, creating=False)
        message.edited_at = now
        message.edit_times.append(now)

    def apply(
        self, message: StoredMessage, body: Mapping[str, Any], files: list[UploadedFile], *, creating: bool
    ) -> None:
        """Copy the message fields of a create/edit body; ``attachments`` lists what to keep."""
        if "content" in body:
            message.content = body["content"] or ""
        if "embeds" in body:
            message.embeds = list(body["embeds"] or [])
        if "components" in body:
            message.components = list(body["components"] or [])
        if "allowed_mentions" in body:
            message.allowed_mentions = body["allowed_mentions"]
        message.attachments = self._attachments(message, body.get("attachments"), files, creating=creating)
        for attachment in message.attachments:
            attachment.ephemeral = message.ephemeral
            self.attachments[attachment.id] = attachment

    def _attachments(
        self,
        message: StoredMessage,
        listed: list[dict[str, Any]] | None,
        files: list[UploadedFile],
        *,
        creating: bool,
    ) -> list[StoredAttachment]:
        by_index = {upload.index: upload for upload in files if upload.index is not None}
        unlisted = [upload for upload in files if upload.index is None]
        if listed is None:
            kept = [] if creating else list(message.attachments)
            return kept + [self._store(upload) for upload in [*by_index.values(), *unlisted]]
        existing = {a.id: a for a in message.attachments}
        result: list[StoredAttachment] = []
        used: set[int] = set()
        for meta in listed:
            ref = int(meta["id"])
            if not creating and ref in existing:
                kept_attachment = existing[ref]
                if "description" in meta:
                    kept_attachment.description = meta["description"]
                result.append(kept_attachment)
            elif ref in by_index:
                used.add(ref)
                result.append(self._store(by_index[ref], meta))
        result.extend(self._store(upload) for index, upload in by_index.items() if index not in used)
        result.extend(self._store(upload) for upload in unlisted)
        return result

    def _store(self, upload: UploadedFile, meta: Mapping[str, Any] | None = None) -> StoredAttachment:
        return StoredAttachment.from_upload(self._snowflakes.next(), upload, meta)

    def store_upload(self, upload: UploadedFile) -> StoredAttachment:
        """An attachment outside any message (a slash command's attachment option)."""
        attachment = self._store(upload)
        self.attachments[attachment.id] = attachment
        return attachment

    def get(self, message_id: int) -> StoredMessage | None:
        return self._messages.get(message_id)

    def delete(self, message: StoredMessage) -> None:
        message.deleted = True

    def in_channel(self, channel_id: int, *, include_deleted: bool = False) -> list[StoredMessage]:
        return [
            m
            for m in self._messages.values()
            if m.channel_id == channel_id and (include_deleted or not m.deleted)
        ]

    def all(self) -> list[StoredMessage]:
        return list(self._messages.values())

    def history(
        self,
        channel_id: int,
        *,
        limit: int = 50,
        before: int | None = None,
        after: int | None = None,
        around: int | None = None,
    ) -> list[StoredMessage]:
        """``GET /channels/{id}/messages``: what other users can see (no ephemeral or deleted
        messages), newest first whatever the anchor. ``after`` gives the ``limit`` messages just
        after it (still newest first: discord.py reverses them and pages on from the first);
        ``around`` gives up to ``limit // 2`` newer ones and the rest from it backwards. Discord
        takes one anchor per call; given several, the double uses around, then before, then after."""
        visible = sorted(
            (m for m in self.in_channel(channel_id) if not m.ephemeral), key=lambda m: m.id, reverse=True
        )
        if around is not None:
            newer = [m for m in visible if m.id > around][-(limit // 2) :] if limit > 1 else []
            older = [m for m in visible if m.id <= around][: limit - len(newer)]
            return newer + older
        if before is not None:
            return [m for m in visible if m.id < before][:limit]
        if after is not None:
            return [m for m in visible if m.id > after][-limit:]
        return visible[:limit]
