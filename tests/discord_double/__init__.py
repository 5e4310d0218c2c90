"""A loopback double of Discord's REST API v10 and gateway, for end-to-end tests that run the
real discord.py client. See :class:`DiscordDouble` and :mod:`.fixtures`."""

from __future__ import annotations

from .clock import FakeClock
from .command_options import OptionFile
from .interactions import InteractionRecord, InteractionResponse
from .messages import StoredAttachment, StoredMessage
from .models import Channel, Guild, Overwrite, Role, User, World
from .recording import RecordedRequest, UploadedFile
from .server import DiscordDouble, EditViolation

__all__ = [
    "Channel",
    "DiscordDouble",
    "EditViolation",
    "FakeClock",
    "Guild",
    "InteractionRecord",
    "InteractionResponse",
    "OptionFile",
    "Overwrite",
    "RecordedRequest",
    "Role",
    "StoredAttachment",
    "StoredMessage",
    "UploadedFile",
    "User",
    "World",
]
