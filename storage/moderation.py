"""Moderation state of each guild: members barred from the bot, and a paused queue."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.community import guild_settings
from storage.models import Ban, GuildSettings
from storage.timestamps import utcnow

log = logging.getLogger(__name__)


def ban_member(
    session: Session, *, guild_id: int, discord_id: int, reason: str, banned_by: int | None
) -> bool:
    """Bar the member from asking for images in ``guild_id``; ``False`` if already barred (reason kept)."""
    if session.get(Ban, (guild_id, discord_id)) is not None:
        return False
    session.add(
        Ban(guild_id=guild_id, discord_id=discord_id, reason=reason, banned_by=banned_by, created_at=utcnow())
    )
    session.flush()
    return True


def unban_member(session: Session, *, guild_id: int, discord_id: int) -> bool:
    """Lift the member's ban in ``guild_id``; ``False`` if there was none."""
    ban = session.get(Ban, (guild_id, discord_id))
    if ban is None:
        return False
    session.delete(ban)
    session.flush()
    return True


def ban_reason(session: Session, *, guild_id: int, discord_id: int) -> str | None:
    """Why the member is barred in ``guild_id``, ``None`` when they are not."""
    ban = session.get(Ban, (guild_id, discord_id))
    return ban.reason if ban is not None else None


def set_paused(session: Session, *, guild_id: int, paused: bool) -> None:
    """Pause (or resume) the queue of ``guild_id``: its queued jobs wait while paused."""
    guild_settings(session, guild_id=guild_id).paused = paused
    session.flush()


def paused_guilds(session: Session) -> set[int]:
    """The guilds whose queue is paused."""
    return set(session.scalars(select(GuildSettings.guild_id).where(GuildSettings.paused.is_(True))))
