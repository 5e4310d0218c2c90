"""A loopback double of Discord's REST API v10 and gateway, for end-to-end tests that run the
real discord.py client. See :class:`DiscordDouble` and :mod:`.fixtures`; faults are in
:mod:`.faults`, hooks at points of a REST call in :mod:`.moments`."""

from __future__ import annotations

from .clock import FakeClock
from .command_options import OptionFile
from .faults import DROP_AFTER, DROP_BEFORE, FAULT_KINDS, MESSAGE_WRITE_ROUTES, Chaos, InjectedFault
from .interactions import InteractionRecord, InteractionResponse
from .messages import StoredAttachment, StoredMessage
from .models import Channel, Guild, Overwrite, Role, User, World
from .moments import (
    APPLIED,
    RECEIVED,
    RESPONDED,
    Hold,
    is_file_post,
    is_file_upload,
    is_interaction_callback,
)
from .recording import RecordedRequest, UploadedFile
from .server import DiscordDouble, EditViolation

__all__ = [
    "APPLIED",
    "DROP_AFTER",
    "DROP_BEFORE",
    "FAULT_KINDS",
    "MESSAGE_WRITE_ROUTES",
    "RECEIVED",
    "RESPONDED",
    "Channel",
    "Chaos",
    "DiscordDouble",
    "EditViolation",
    "FakeClock",
    "Guild",
    "Hold",
    "InjectedFault",
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
    "is_file_post",
    "is_file_upload",
    "is_interaction_callback",
]
