"""What a guild's admins control: members barred from the bot, and pausing the guild's queue."""

from __future__ import annotations

import logging

from pipeline.queue.jobs.store import JobStore
from storage import ban_member, ban_reason, paused_guilds, set_paused, unban_member

log = logging.getLogger(__name__)

MAX_REASON = 300
"""The longest ban reason kept (it is shown to the member)."""


class Moderation:
    """Bans and paused queues, per guild."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    def ban(self, *, guild_id: int, discord_id: int, reason: str, banned_by: int | None) -> bool:
        """Bar the member from asking for images in ``guild_id``; ``False`` if already barred."""
        with self._store.session() as session:
            banned = ban_member(
                session,
                guild_id=guild_id,
                discord_id=discord_id,
                reason=" ".join(reason.split())[:MAX_REASON],
                banned_by=banned_by,
            )
        if banned:
            log.info("member %d banned in guild %d by %s", discord_id, guild_id, banned_by)
        return banned

    def unban(self, *, guild_id: int, discord_id: int) -> bool:
        """Lift the member's ban; ``False`` if there was none."""
        with self._store.session() as session:
            return unban_member(session, guild_id=guild_id, discord_id=discord_id)

    def ban_reason(self, *, guild_id: int, discord_id: int) -> str | None:
        with self._store.session() as session:
            return ban_reason(session, guild_id=guild_id, discord_id=discord_id)

    def pause(self, *, guild_id: int) -> None:
        """The guild's queued jobs wait until :meth:`resume`; running ones finish."""
        with self._store.session() as session:
            set_paused(session, guild_id=guild_id, paused=True)
        log.info("queue of guild %d paused", guild_id)

    def resume(self, *, guild_id: int) -> None:
        with self._store.session() as session:
            set_paused(session, guild_id=guild_id, paused=False)
        log.info("queue of guild %d resumed", guild_id)

    def paused(self) -> set[int]:
        """The guilds whose queue is paused."""
        with self._store.session() as session:
            return paused_guilds(session)
