"""Community: what a guild's members see of each other's jobs, likes, the showcase and settings.

Every listing shows finished (``done``) jobs of one guild that are not private, newest or best
first, as :class:`ListedJob` rows; a member's own history includes their private jobs. Search
ranks with SQLite FTS5's ``bm25`` over the ``job_search`` index that migration 0003 keeps in
sync with triggers (PostgreSQL: ``ts_rank`` over the same words, using its GIN index).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Select, and_, delete, func, literal_column, select, table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from storage.models import GuildSettings, Image, Job, Like, ShowcasePost, User, UserSettings
from storage.rows import get_or_add
from storage.timestamps import utcnow

log = logging.getLogger(__name__)

Period = Literal["day", "week", "month", "all"]
PERIODS: dict[str, timedelta | None] = {
    "day": timedelta(days=1),
    "week": timedelta(days=7),
    "month": timedelta(days=30),
    "all": None,
}
_WORD = re.compile(r"\w+")
_SEARCH = table("job_search")
"""The FTS5 table (no model: see ``storage.migrate.include_object``)."""
_SEARCH_CONFIG = literal_column("'simple'")
"""PostgreSQL's text search configuration, written into the SQL: the GIN index of migration 0003
is on ``to_tsvector('simple', prompt)``, and only that same expression can use it. As a bound
parameter it could not in a generic plan (psycopg prepares a query run five times on a
connection, and PostgreSQL may then plan it once for any value): every search would read every
job."""


@dataclass(frozen=True)
class ListedJob:
    """One entry of a listing: enough to show it (prompt, author, counts, a thumbnail's path)."""

    job_id: int
    prompt: str
    owner_name: str
    owner_discord_id: int | None
    status: str
    private: bool
    likes: int
    remixes: int
    created_at: datetime
    image_path: str | None
    """The first image's path in the image store (``None`` for an unfinished job)."""


# -- listings -------------------------------------------------------------------------------------


def search_jobs(
    session: Session, *, guild_id: int, text: str, limit: int = 10, offset: int = 0
) -> list[ListedJob]:
    """Public finished jobs of ``guild_id`` whose prompt has every word of ``text``, best match first."""
    words = _WORD.findall(text)
    if not words:
        return []
    dialect = session.get_bind().dialect.name
    query = _listing(visible_in=guild_id)
    if dialect == "sqlite":
        # Each word quoted: FTS5 operators and punctuation in the text are taken literally.
        match = " ".join('"' + word.replace('"', '""') + '"' for word in words)
        query = (
            query.join(_SEARCH, literal_column("job_search.rowid") == Job.id)
            .where(literal_column("job_search").op("MATCH")(match))
            .order_by(func.bm25(literal_column("job_search")), Job.id.desc())
        )
    else:
        vector = func.to_tsvector(_SEARCH_CONFIG, Job.prompt)
        terms = func.plainto_tsquery(_SEARCH_CONFIG, " ".join(words))
        query = query.where(vector.op("@@")(terms)).order_by(
            func.ts_rank(vector, terms).desc(), Job.id.desc()
        )
    return _run(session, query, limit=limit, offset=offset)


def top_jobs(
    session: Session,
    *,
    guild_id: int,
    period: Period = "week",
    now: datetime | None = None,
    limit: int = 10,
    offset: int = 0,
) -> list[ListedJob]:
    """Public finished jobs of ``guild_id`` made within ``period``, most liked and remixed first."""
    if period not in PERIODS:
        raise ValueError(f"period: {period!r} (allowed: {', '.join(PERIODS)})")
    query = _listing(visible_in=guild_id)
    span = PERIODS[period]
    if span is not None:
        query = query.where(Job.created_at >= (now or utcnow()) - span)
    score = _likes_column() + _remixes_column()
    return _run(session, query.order_by(score.desc(), Job.id.desc()), limit=limit, offset=offset)


def recent_jobs(session: Session, *, guild_id: int, limit: int = 10, offset: int = 0) -> list[ListedJob]:
    """Public finished jobs of ``guild_id``, newest first."""
    query = _listing(visible_in=guild_id).order_by(Job.id.desc())
    return _run(session, query, limit=limit, offset=offset)


def jobs_by_member(
    session: Session, *, guild_id: int, discord_id: int, limit: int = 10, offset: int = 0
) -> list[ListedJob]:
    """Public finished jobs of one member in ``guild_id``, newest first."""
    query = _listing(visible_in=guild_id).where(User.discord_id == discord_id).order_by(Job.id.desc())
    return _run(session, query, limit=limit, offset=offset)


def member_history(
    session: Session, *, discord_id: int, guild_id: int | None, limit: int = 10, offset: int = 0
) -> list[ListedJob]:
    """A member's own jobs in ``guild_id`` (private ones and unfinished ones too), newest first."""
    query = _columns().where(User.discord_id == discord_id, _same_guild(guild_id)).order_by(Job.id.desc())
    return _run(session, query, limit=limit, offset=offset)


def owner_history(session: Session, *, user_id: int, limit: int = 10, offset: int = 0) -> list[ListedJob]:
    """Every job of one user (an API key's), wherever it was made, newest first."""
    query = _columns().where(Job.owner_id == user_id).order_by(Job.id.desc())
    return _run(session, query, limit=limit, offset=offset)


def is_visible(
    job: Job, *, guild_id: int | None, viewer_discord_id: int | None, viewer_user_id: int | None = None
) -> bool:
    """Whether a member of ``guild_id`` may see ``job`` (its owner always may, in its guild).

    A viewer outside Discord (``viewer_user_id``: an API key's user) sees its own jobs anywhere,
    and the public jobs of ``guild_id`` (none, without a guild).
    """
    own = (viewer_discord_id is not None and job.owner.discord_id == viewer_discord_id) or (
        viewer_user_id is not None and job.owner_id == viewer_user_id
    )
    if viewer_user_id is not None:
        return own or (guild_id is not None and job.guild_id == guild_id and not job.private)
    if job.guild_id != guild_id:
        return False
    return not job.private or own


# -- likes ----------------------------------------------------------------------------------------


def toggle_like(session: Session, *, job_id: int, user_id: int) -> tuple[bool, int]:
    """Like ``job_id``, or take the like back; returns (liked now, the job's like count)."""
    if session.get(Like, (job_id, user_id)) is None:
        # A double click may have liked it meanwhile: then it is liked all the same.
        get_or_add(session, Like(job_id=job_id, user_id=user_id, created_at=utcnow()))
        liked = True
    else:
        # A statement, not ``session.delete``: a double click may have taken it back meanwhile.
        session.execute(delete(Like).where(Like.job_id == job_id, Like.user_id == user_id))
        liked = False
    return liked, like_count(session, job_id=job_id)


def like_count(session: Session, *, job_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Like).where(Like.job_id == job_id)) or 0


def remix_count(session: Session, *, job_id: int) -> int:
    query = select(func.count()).select_from(Job).where(Job.parent_id == job_id, Job.kind == "remix")
    return session.scalar(query) or 0


# -- showcase -------------------------------------------------------------------------------------


def set_showcase_channel(session: Session, *, guild_id: int, channel_id: int | None) -> None:
    """Set (or with ``None`` clear) the channel ``guild_id`` showcases shared jobs in."""
    guild_settings(session, guild_id=guild_id).showcase_channel_id = channel_id
    session.flush()


def guild_settings(session: Session, *, guild_id: int) -> GuildSettings:
    """The settings row of ``guild_id``, added (with the defaults) if it has none yet."""
    return get_or_add(session, GuildSettings(guild_id=guild_id, paused=False))[0]


def showcase_channel(session: Session, *, guild_id: int) -> int | None:
    settings = session.get(GuildSettings, guild_id)
    return settings.showcase_channel_id if settings else None


def claim_showcase_post(session: Session, *, job_id: int, channel_id: int) -> bool:
    """Reserve the job's one showcase post; ``False`` when it was shared (or is being shared) already.

    The caller posts, then calls :func:`record_showcase_post` (or :func:`release_showcase_post`
    if posting failed).
    """
    try:
        with session.begin_nested():
            session.add(ShowcasePost(job_id=job_id, channel_id=channel_id, created_at=utcnow()))
    except IntegrityError:
        return False
    return True


def record_showcase_post(session: Session, *, job_id: int, message_id: int) -> None:
    post = session.scalars(select(ShowcasePost).where(ShowcasePost.job_id == job_id)).one()
    post.message_id = message_id


def release_showcase_post(session: Session, *, job_id: int) -> None:
    post = session.scalars(select(ShowcasePost).where(ShowcasePost.job_id == job_id)).first()
    if post is not None:
        session.delete(post)


def get_showcase_post(session: Session, *, job_id: int) -> ShowcasePost | None:
    return session.scalars(select(ShowcasePost).where(ShowcasePost.job_id == job_id)).first()


# -- user settings --------------------------------------------------------------------------------


def private_by_default(session: Session, *, user_id: int) -> bool:
    settings = session.get(UserSettings, user_id)
    return bool(settings and settings.private_by_default)


def set_private_by_default(session: Session, *, user_id: int, private: bool) -> None:
    set_member_settings(session, user_id=user_id, private_by_default=private)


def member_settings(session: Session, *, user_id: int) -> UserSettings:
    """The member's settings (the defaults, not stored, when they never changed one)."""
    return session.get(UserSettings, user_id) or UserSettings(
        user_id=user_id, private_by_default=False, previews=True, remix=False
    )


def set_member_settings(session: Session, *, user_id: int, **values: bool) -> None:
    """Change some of the member's settings (``private_by_default``, ``previews``, ``remix``)."""
    unknown = set(values) - {"private_by_default", "previews", "remix"}
    if unknown:
        raise ValueError(f"unknown member settings: {sorted(unknown)}")
    defaults = UserSettings(user_id=user_id, private_by_default=False, previews=True, remix=False)
    settings, _ = get_or_add(session, defaults)
    for name, value in values.items():
        setattr(settings, name, value)
    session.flush()


# -- helpers --------------------------------------------------------------------------------------


def _likes_column() -> ColumnElement[int]:
    return (
        select(func.count()).select_from(Like).where(Like.job_id == Job.id).correlate(Job).scalar_subquery()
    )


def _remixes_column() -> ColumnElement[int]:
    child = aliased(Job)
    return (
        select(func.count())
        .select_from(child)
        .where(child.parent_id == Job.id, child.kind == "remix")
        .correlate(Job)
        .scalar_subquery()
    )


def _first_image_column() -> ColumnElement[str]:
    return (
        select(Image.path)
        .where(Image.job_id == Job.id)
        .order_by(Image.index)
        .limit(1)
        .correlate(Job)
        .scalar_subquery()
    )


def _same_guild(guild_id: int | None) -> ColumnElement[bool]:
    return Job.guild_id.is_(None) if guild_id is None else Job.guild_id == guild_id


def _columns() -> Select:
    """The columns of :class:`ListedJob`, unfiltered (a member's own history)."""
    return select(
        Job.id,
        Job.prompt,
        User.name,
        User.discord_id,
        Job.status,
        Job.private,
        _likes_column().label("likes"),
        _remixes_column().label("remixes"),
        Job.created_at,
        _first_image_column().label("image_path"),
    ).join(User, Job.owner_id == User.id)


def _listing(*, visible_in: int) -> Select:
    """Only ``visible_in``'s public finished jobs. A listing is always of one guild: ``None``
    (a command run outside a guild) is refused rather than read as "no filter"."""
    if visible_in is None:
        raise ValueError("guild_id: None (public listings are of one guild)")
    return _columns().where(
        and_(Job.guild_id == visible_in, Job.private.is_(False), Job.flagged.is_(False), Job.status == "done")
    )


def _run(session: Session, query: Select, *, limit: int, offset: int) -> list[ListedJob]:
    rows = session.execute(query.limit(limit).offset(offset)).all()
    return [ListedJob(*row) for row in rows]
