"""Moderation state of each guild: members barred from the bot, a paused queue, the content rules,
members' daily use, and the audit log of decisions and admin actions."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from storage.community import guild_settings
from storage.models import AuditEvent, Ban, GuildSettings, Job, MemberLimit, User
from storage.rows import get_or_add
from storage.timestamps import utcnow

POLICY_FIELDS = ("banned_terms", "nsfw_terms", "nsfw_action", "flagged_images", "daily_limit")
"""The columns of a guild's content rules (the term lists are JSON; ``nsfw_terms`` None: the default)."""

log = logging.getLogger(__name__)


def ban_member(
    session: Session, *, guild_id: int, discord_id: int, reason: str, banned_by: int | None
) -> bool:
    """Bar the member from asking for images in ``guild_id``; ``False`` if already barred (reason kept)."""
    ban = Ban(
        guild_id=guild_id, discord_id=discord_id, reason=reason, banned_by=banned_by, created_at=utcnow()
    )
    return get_or_add(session, ban)[1]


def unban_member(session: Session, *, guild_id: int, discord_id: int) -> bool:
    """Lift the member's ban in ``guild_id``; ``False`` if there was none."""
    # A statement, not ``session.delete``: another admin may have lifted it meanwhile.
    lifted = session.execute(delete(Ban).where(Ban.guild_id == guild_id, Ban.discord_id == discord_id))
    return bool(lifted.rowcount)


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


def guild_policy(session: Session, *, guild_id: int) -> dict[str, Any]:
    """The content rules of ``guild_id`` (the defaults for a guild that set none): term lists decoded."""
    settings = session.get(GuildSettings, guild_id) or GuildSettings(
        guild_id=guild_id, banned_terms="[]", nsfw_terms=None, nsfw_action="age_restricted",
        flagged_images="withhold", daily_limit=0,
    )  # fmt: skip
    return {
        "banned_terms": json.loads(settings.banned_terms or "[]"),
        "nsfw_terms": None if settings.nsfw_terms is None else json.loads(settings.nsfw_terms),
        "nsfw_action": settings.nsfw_action,
        "flagged_images": settings.flagged_images,
        "daily_limit": settings.daily_limit,
    }


def set_guild_policy(session: Session, *, guild_id: int, **fields: Any) -> None:
    """Change some of the content rules of ``guild_id`` (term lists as Python lists, or None)."""
    unknown = set(fields) - set(POLICY_FIELDS)
    if unknown:
        raise ValueError(f"fields: {sorted(unknown)} (allowed: {', '.join(POLICY_FIELDS)})")
    settings = guild_settings(session, guild_id=guild_id)
    for name, value in fields.items():
        if name in ("banned_terms", "nsfw_terms"):
            value = None if value is None else json.dumps(list(value), ensure_ascii=False)
        setattr(settings, name, value)
    session.flush()


def member_limit(session: Session, *, guild_id: int, discord_id: int) -> int | None:
    """The member's own daily image limit in ``guild_id`` (0: none), ``None`` when the guild's applies."""
    limit = session.get(MemberLimit, (guild_id, discord_id))
    return limit.daily_limit if limit is not None else None


def set_member_limit(
    session: Session, *, guild_id: int, discord_id: int, daily_limit: int | None, set_by: int | None
) -> None:
    """Give the member their own daily limit (0: none) or, with ``None``, the guild's again."""
    if daily_limit is None:
        session.execute(
            delete(MemberLimit).where(MemberLimit.guild_id == guild_id, MemberLimit.discord_id == discord_id)
        )
        return
    limit, _ = get_or_add(
        session,
        MemberLimit(
            guild_id=guild_id,
            discord_id=discord_id,
            daily_limit=daily_limit,
            set_by=set_by,
            created_at=utcnow(),
        ),
    )
    limit.daily_limit, limit.set_by = daily_limit, set_by
    session.flush()


def images_asked_since(session: Session, *, discord_id: int, guild_id: int, since: datetime) -> int:
    """How many images the member asked for in ``guild_id`` since ``since`` (failed and cancelled too)."""
    query = (
        select(Job.request_json)
        .join(User, Job.owner_id == User.id)
        .where(User.discord_id == discord_id, Job.guild_id == guild_id, Job.created_at >= since)
    )
    return sum(int(json.loads(text).get("count", 1)) for text in session.scalars(query))


def record_audit(
    session: Session,
    *,
    guild_id: int | None,
    action: str,
    actor_discord_id: int | None = None,
    target_discord_id: int | None = None,
    job_id: int | None = None,
    detail: str = "",
) -> AuditEvent:
    """Write one entry of the audit log."""
    event = AuditEvent(
        guild_id=guild_id,
        actor_discord_id=actor_discord_id,
        action=action,
        target_discord_id=target_discord_id,
        job_id=job_id,
        detail=detail[:1000],
        created_at=utcnow(),
    )
    session.add(event)
    session.flush()
    return event


def audit_events(
    session: Session, *, guild_id: int, discord_id: int | None = None, limit: int = 20, offset: int = 0
) -> list[AuditEvent]:
    """The guild's audit log, newest first; with ``discord_id``, the entries about that member."""
    query = select(AuditEvent).where(AuditEvent.guild_id == guild_id)
    if discord_id is not None:
        query = query.where(
            (AuditEvent.actor_discord_id == discord_id) | (AuditEvent.target_discord_id == discord_id)
        )
    return list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit).offset(offset)))
