"""The bot's side of sharing: who may see a job, listings, likes, the showcase and member settings.

Blocking database work; the bot calls these methods with ``asyncio.to_thread``. Every listing is
scoped to the guild the interaction came from; a job of another guild, or someone else's
private job, is "not found" (:class:`JobGone`), never "not allowed": its existence stays hidden.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bot.errors import JobGone
from pipeline.jobs import JobService, JobSnapshot
from storage import (
    JobNotFound,
    ListedJob,
    claim_showcase_post,
    get_job,
    get_or_create_user,
    is_visible,
    jobs_by_member,
    like_count,
    member_history,
    private_by_default,
    recent_jobs,
    record_showcase_post,
    release_showcase_post,
    search_jobs,
    set_private_by_default,
    set_showcase_channel,
    showcase_channel,
    toggle_like,
    top_jobs,
)

log = logging.getLogger(__name__)

LISTINGS: dict[str, Callable[..., list[ListedJob]]] = {
    "search": search_jobs,
    "top": top_jobs,
    "recent": recent_jobs,
    "by": jobs_by_member,
    "history": member_history,
}


class Community:
    """Reads and writes the community tables for the bot (thread-safe: a session per call)."""

    def __init__(self, service: JobService) -> None:
        self.service = service
        self.database = service.database

    def visible_job(self, job_id: int, *, guild_id: int | None, viewer_id: int) -> JobSnapshot:
        """The job, if a member of ``guild_id`` may see it; else :class:`JobGone`."""
        with self.database.session() as session:
            try:
                job = get_job(session, job_id=job_id)
            except JobNotFound:
                raise JobGone(f"Job #{job_id} was not found.") from None
            if not is_visible(job, guild_id=guild_id, viewer_discord_id=viewer_id):
                raise JobGone(f"Job #{job_id} was not found.")
        return self.service.get(job_id)

    def listing(self, kind: str, *, limit: int, offset: int, **options: Any) -> list[ListedJob]:
        with self.database.session() as session:
            return LISTINGS[kind](session, limit=limit, offset=offset, **options)

    def children(self, job_id: int, *, guild_id: int | None, viewer_id: int) -> list[int]:
        """The ids of the jobs made from ``job_id`` that the viewer may see."""
        with self.database.session() as session:
            job = get_job(session, job_id=job_id)
            return [
                child.id
                for child in job.children
                if is_visible(child, guild_id=guild_id, viewer_discord_id=viewer_id)
            ]

    def toggle_like(self, job_id: int, *, discord_id: int, name: str) -> tuple[bool, int]:
        with self.database.session() as session:
            user = get_or_create_user(session, discord_id=discord_id, name=name)
            return toggle_like(session, job_id=job_id, user_id=user.id)

    def like_count(self, job_id: int) -> int:
        with self.database.session() as session:
            return like_count(session, job_id=job_id)

    # -- showcase -------------------------------------------------------------------------------

    def set_showcase(self, *, guild_id: int, channel_id: int | None) -> None:
        with self.database.session() as session:
            set_showcase_channel(session, guild_id=guild_id, channel_id=channel_id)

    def showcase_channel(self, *, guild_id: int) -> int | None:
        with self.database.session() as session:
            return showcase_channel(session, guild_id=guild_id)

    def claim_showcase(self, job_id: int, *, channel_id: int) -> bool:
        with self.database.session() as session:
            return claim_showcase_post(session, job_id=job_id, channel_id=channel_id)

    def showcased(self, job_id: int, *, message_id: int) -> None:
        with self.database.session() as session:
            record_showcase_post(session, job_id=job_id, message_id=message_id)

    def release_showcase(self, job_id: int) -> None:
        with self.database.session() as session:
            release_showcase_post(session, job_id=job_id)

    # -- member settings ------------------------------------------------------------------------

    def private_by_default(self, *, discord_id: int, name: str) -> bool:
        with self.database.session() as session:
            user = get_or_create_user(session, discord_id=discord_id, name=name)
            return private_by_default(session, user_id=user.id)

    def set_private_by_default(self, *, discord_id: int, name: str, private: bool) -> None:
        with self.database.session() as session:
            user = get_or_create_user(session, discord_id=discord_id, name=name)
            set_private_by_default(session, user_id=user.id, private=private)
