"""What a guild's members see of each other's jobs: visibility, listings, likes, the showcase and
member settings.

Every listing is of one guild; which single job a member may see is ``JobService.visible``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pipeline.errors import ContentRefused
from pipeline.queue.jobs.snapshots import ListedJob, MemberSettings
from pipeline.queue.jobs.store import JobStore
from storage import (
    claim_showcase_post,
    find_user,
    get_job,
    get_or_create_user,
    get_showcase_post,
    is_visible,
    jobs_by_member,
    like_count,
    member_history,
    member_settings,
    owner_history,
    private_by_default,
    recent_jobs,
    record_showcase_post,
    release_showcase_post,
    search_jobs,
    set_member_settings,
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
    "owned": owner_history,
}
"""The listings by name: ``search`` (``text=``), ``top`` (``period=``), ``recent``, ``by``
(``discord_id=``) and ``history`` (a member's own, ``discord_id=``) take ``guild_id=``; ``owned``
(every job of one user, an API key's: ``user_id=``) does not."""


class Community:
    """The community tables, for the front doors."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    # -- listings -------------------------------------------------------------------------------

    def listing(self, kind: str, *, limit: int, offset: int, **options: Any) -> list[ListedJob]:
        """One page of the listing ``kind`` (see :data:`LISTINGS`)."""
        if kind not in LISTINGS:
            raise ValueError(f"kind: {kind!r} (allowed: {', '.join(LISTINGS)})")
        with self._store.session() as session:
            return LISTINGS[kind](session, limit=limit, offset=offset, **options)

    def children(self, job_id: int, *, guild_id: int | None, viewer_id: int) -> list[int]:
        """The ids of the jobs made from ``job_id`` that the viewer may see."""
        with self._store.session() as session:
            job = get_job(session, job_id=job_id)
            return [
                child.id
                for child in job.children
                if is_visible(child, guild_id=guild_id, viewer_discord_id=viewer_id)
            ]

    # -- likes ----------------------------------------------------------------------------------

    def toggle_like(self, job_id: int, *, discord_id: int, name: str) -> tuple[bool, int]:
        """Like the job, or take the like back; returns (liked now, the job's like count)."""
        with self._store.session() as session:
            user = get_or_create_user(session, discord_id=discord_id, name=name)
            return toggle_like(session, job_id=job_id, user_id=user.id)

    def like_count(self, job_id: int) -> int:
        with self._store.session() as session:
            return like_count(session, job_id=job_id)

    # -- the showcase ---------------------------------------------------------------------------

    def set_showcase(self, *, guild_id: int, channel_id: int | None) -> None:
        """Set (or with ``None`` clear) the channel ``guild_id`` showcases shared jobs in."""
        with self._store.session() as session:
            set_showcase_channel(session, guild_id=guild_id, channel_id=channel_id)

    def showcase_channel(self, *, guild_id: int) -> int | None:
        with self._store.session() as session:
            return showcase_channel(session, guild_id=guild_id)

    def claim_showcase(self, job_id: int, *, channel_id: int) -> bool:
        """Reserve the job's one showcase post; ``False`` when it was (or is being) shared already.
        Adult jobs never are (:class:`~pipeline.errors.ContentRefused`).

        Post, then call :meth:`showcased` (or :meth:`release_showcase` if posting failed).
        """
        with self._store.session() as session:
            if get_job(session, job_id=job_id).flagged:
                raise ContentRefused(
                    f"Job {job_id} is adult content: it cannot be shared to the showcase.",
                    key="showcase_adult",
                    params={"job_id": job_id},
                )
            return claim_showcase_post(session, job_id=job_id, channel_id=channel_id)

    def showcased(self, job_id: int, *, message_id: int) -> None:
        with self._store.session() as session:
            record_showcase_post(session, job_id=job_id, message_id=message_id)

    def release_showcase(self, job_id: int) -> None:
        with self._store.session() as session:
            release_showcase_post(session, job_id=job_id)

    def showcase_message(self, job_id: int) -> tuple[int, int] | None:
        """(channel id, message id) of the job's showcase post, if it was shared."""
        with self._store.session() as session:
            post = get_showcase_post(session, job_id=job_id)
            return (post.channel_id, post.message_id) if post is not None and post.message_id else None

    # -- member settings ------------------------------------------------------------------------

    def private_by_default(self, *, discord_id: int, name: str) -> bool:
        with self._store.session() as session:
            user = get_or_create_user(session, discord_id=discord_id, name=name)
            return private_by_default(session, user_id=user.id)

    def member_settings(self, *, discord_id: int) -> MemberSettings:
        """A member's own settings (the defaults for someone nanke has not met)."""
        with self._store.session() as session:
            user = find_user(session, discord_id=discord_id)
            if user is None:
                return MemberSettings()
            stored = member_settings(session, user_id=user.id)
            return MemberSettings(
                private=stored.private_by_default, previews=stored.previews, remix=stored.remix
            )

    def set_member_settings(
        self,
        *,
        discord_id: int,
        name: str,
        private: bool | None = None,
        previews: bool | None = None,
        remix: bool | None = None,
    ) -> None:
        """Turn a member's private default, previews or remix mode on or off (``None``: unchanged)."""
        given = (("private_by_default", private), ("previews", previews), ("remix", remix))
        values = {key: value for key, value in given if value is not None}
        with self._store.session() as session:
            user = get_or_create_user(session, discord_id=discord_id, name=name)
            set_member_settings(session, user_id=user.id, **values)
