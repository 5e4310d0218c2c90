"""The tables: users, jobs, the images of a job, the delivery of a job to Discord, and the
community tables (likes, showcase posts, guild and user settings).

The full-text index of prompts (``job_search``: SQLite FTS5 with triggers, or a GIN index on
PostgreSQL) is created by migration 0003 only; it is not a model (see ``storage.migrate.include_object``).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.base import Base
from storage.timestamps import UTCDateTime, utcnow

log = logging.getLogger(__name__)

JOB_KINDS = ("imagine", "reroll", "upscale", "variation", "remix")
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED_STATUSES = ("done", "failed", "cancelled")
UNFINISHED_STATUSES = ("queued", "running")
DELIVERY_STATUSES = ("pending", "delivered", "failed")
USER_NAME_LENGTH = 100


def _one_of(column: str, values: tuple[str, ...], *, name: str) -> CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name)


def _created_at() -> Mapped[datetime]:
    return mapped_column(UTCDateTime, default=utcnow, server_default=func.current_timestamp())


class User(Base):
    """Someone who asks for images: a Discord member, or a local command-line user (no Discord id)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    discord_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    name: Mapped[str] = mapped_column(String(USER_NAME_LENGTH))
    created_at: Mapped[datetime] = _created_at()

    jobs: Mapped[list[Job]] = relationship(back_populates="owner", passive_deletes=True)

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, discord_id={self.discord_id!r}, name={self.name!r})"


class Job(Base):
    """One request and its life: queued, running, then done, failed or cancelled."""

    __tablename__ = "jobs"
    __table_args__ = (
        _one_of("kind", JOB_KINDS, name="kind"),
        _one_of("status", JOB_STATUSES, name="status"),
        Index(None, "status", "priority", "created_at"),
        Index(None, "guild_id", "created_at"),
        # Ids are never reused (buttons on old messages carry them): SQLite's AUTOINCREMENT.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    parent_image_index: Mapped[int | None] = mapped_column(Integer)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    request_json: Mapped[str] = mapped_column(Text)
    """The canonical JSON of the request: it reproduces the job exactly."""
    prompt: Mapped[str] = mapped_column(Text)
    """A copy of the request's prompt, for listing and searching."""
    status: Mapped[str] = mapped_column(String(16), default="queued", server_default=text("'queued'"))
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    model_name: Mapped[str | None] = mapped_column(String(255))
    model_hash: Mapped[str | None] = mapped_column(String(10))
    """A1111's short hash of the weights (10 hex digits), when known."""
    environment_json: Mapped[str | None] = mapped_column(Text)
    """Library versions, device and dtype, written when the job finishes."""
    created_at: Mapped[datetime] = _created_at()
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    dispatch_id: Mapped[str | None] = mapped_column(String(64), index=True)
    """While it runs on a remote GPU worker: the id of the batch it was sent in (the Celery task
    id). A result is stored only when it comes from the job's current dispatch."""
    worker: Mapped[str | None] = mapped_column(String(255))
    """The remote GPU worker running it (``NANKE_WORKER_NAME``), while it runs there."""
    grid_path: Mapped[str | None] = mapped_column(String(255))
    """A job of several images: their grid as the PNG that is posted, in the image store (built
    once, where the images were made, so a delivery neither decodes nor encodes it again)."""
    private: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Kept out of every listing, search and showcase (only its owner finds it, in /history)."""
    flagged: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Adult content (an NSFW prompt allowed in an age-restricted channel, or an image the safety
    check flagged): never in public listings or the showcase, never shown outside such channels."""

    owner: Mapped[User] = relationship(back_populates="jobs")
    parent: Mapped[Job | None] = relationship(back_populates="children", remote_side=[id])
    children: Mapped[list[Job]] = relationship(
        back_populates="parent", passive_deletes=True, order_by="Job.id"
    )
    images: Mapped[list[Image]] = relationship(
        back_populates="job", order_by="Image.index", cascade="all, delete-orphan", passive_deletes=True
    )
    delivery: Mapped[Delivery | None] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )
    likes: Mapped[list[Like]] = relationship(cascade="all, delete-orphan", passive_deletes=True)
    showcase_post: Mapped[ShowcasePost | None] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, kind={self.kind!r}, status={self.status!r})"


class Image(Base):
    """One generated image of a job; the file lives in the image store under ``path``."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("job_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(String(255))
    """Relative to the image store's root."""
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The image safety check flagged this image."""
    created_at: Mapped[datetime] = _created_at()

    job: Mapped[Job] = relationship(back_populates="images")

    def __repr__(self) -> str:
        return f"Image(job_id={self.job_id!r}, index={self.index!r}, seed={self.seed!r})"


class Delivery(Base):
    """How a job's result reaches Discord: where, through which interaction, and how far it got."""

    __tablename__ = "deliveries"
    __table_args__ = (
        _one_of("status", DELIVERY_STATUSES, name="status"),
        Index(None, "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    application_id: Mapped[int | None] = mapped_column(BigInteger)
    interaction_token: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    upload_limit: Mapped[int | None] = mapped_column(BigInteger)
    """The largest attachment Discord accepts there (the interaction's attachment_size_limit)."""
    age_restricted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The channel is age-restricted (Discord's NSFW flag): flagged images may be shown there."""
    progress_message_id: Mapped[int | None] = mapped_column(BigInteger)
    """The "queued / step n of m" message, replaced by the result."""
    posting_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When the first attempt to post the result began; ``None`` before and once delivered. While
    set, an earlier attempt may have reached Discord: look there before posting again."""
    result_message_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = _created_at()
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    job: Mapped[Job] = relationship(back_populates="delivery")

    def __repr__(self) -> str:
        return f"Delivery(job_id={self.job_id!r}, status={self.status!r}, attempts={self.attempts!r})"


class Like(Base):
    """A member likes a job (once: liking again takes it back)."""

    __tablename__ = "likes"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = _created_at()

    def __repr__(self) -> str:
        return f"Like(job_id={self.job_id!r}, user_id={self.user_id!r})"


class ShowcasePost(Base):
    """A job shared to its guild's showcase channel (at most once)."""

    __tablename__ = "showcase_posts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    """``None`` while the post is being sent."""
    created_at: Mapped[datetime] = _created_at()

    def __repr__(self) -> str:
        return f"ShowcasePost(job_id={self.job_id!r}, message_id={self.message_id!r})"


class GuildSettings(Base):
    """Per-guild settings: where shared jobs are showcased, and whether the guild's queue is paused."""

    __tablename__ = "guild_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    showcase_channel_id: Mapped[int | None] = mapped_column(BigInteger)
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The guild's queued jobs wait (an admin paused them) until resumed."""
    banned_terms: Mapped[str] = mapped_column(Text, default="[]", server_default=text("'[]'"))
    """JSON list: prompts holding one are refused everywhere."""
    nsfw_terms: Mapped[str | None] = mapped_column(Text)
    """JSON list of terms allowed only in age-restricted channels; ``None``: nanke's default list."""
    nsfw_action: Mapped[str] = mapped_column(
        String(16), default="age_restricted", server_default=text("'age_restricted'")
    )
    """``age_restricted`` (such prompts only there) or ``refuse`` (nowhere)."""
    flagged_images: Mapped[str] = mapped_column(
        String(16), default="withhold", server_default=text("'withhold'")
    )
    """What to do with an image the safety check flagged, outside age-restricted channels."""
    daily_limit: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    """Images one member may ask for per day (0: no limit)."""


class Ban(Base):
    """A member an admin barred from asking the bot for images in one guild."""

    __tablename__ = "bans"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    discord_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    reason: Mapped[str] = mapped_column(Text)
    banned_by: Mapped[int | None] = mapped_column(BigInteger)
    """The Discord id of the admin who banned the member."""
    created_at: Mapped[datetime] = _created_at()

    def __repr__(self) -> str:
        return f"Ban(guild_id={self.guild_id!r}, discord_id={self.discord_id!r})"


class MemberLimit(Base):
    """One member's own daily image limit in one guild, in place of the guild's."""

    __tablename__ = "member_limits"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    discord_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    daily_limit: Mapped[int] = mapped_column(Integer)
    """Images per day (0: no limit for this member)."""
    set_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created_at()


class UserSettings(Base):
    """Per-member settings: whether new jobs are private unless asked otherwise, whether running
    jobs show a preview, and whether child buttons open the prompt to edit first (remix mode)."""

    __tablename__ = "user_settings"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    private_by_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    previews: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    remix: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class AuditEvent(Base):
    """One moderation decision or admin action: who did what, when, to which member or job."""

    __tablename__ = "audit_events"
    __table_args__ = (Index(None, "guild_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    actor_discord_id: Mapped[int | None] = mapped_column(BigInteger)
    """Who acted: the member whose prompt was judged, or the admin (``None``: nanke itself)."""
    action: Mapped[str] = mapped_column(String(32))
    """``prompt_refused``, ``prompt_adult``, ``image_flagged``, ``ban``, ``unban``, ``pause``, ..."""
    target_discord_id: Mapped[int | None] = mapped_column(BigInteger)
    job_id: Mapped[int | None] = mapped_column(Integer)
    """The job concerned (kept as a number: the job may be deleted later)."""
    detail: Mapped[str] = mapped_column(Text, default="", server_default=text("''"))
    created_at: Mapped[datetime] = _created_at()

    def __repr__(self) -> str:
        return f"AuditEvent(action={self.action!r}, guild_id={self.guild_id!r}, job_id={self.job_id!r})"


class ApiKey(Base):
    """A key of the HTTP API: a user of the fair queue, stored as the SHA-256 of its secret."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    """The secret itself is shown once, when the key is created, and never stored."""
    prefix: Mapped[str] = mapped_column(String(16))
    """The secret's first characters, to tell keys apart in a listing."""
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    """The Discord server whose content rules the key's jobs follow and whose prompts it may list."""
    adult: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Its requests are judged as in an age-restricted channel."""
    model: Mapped[str | None] = mapped_column(String(255))
    """The model its requests use when they name none (the WebUI's ``sd_model_checkpoint``)."""
    created_at: Mapped[datetime] = _created_at()
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return f"ApiKey(name={self.name!r}, prefix={self.prefix!r})"


class Upload(Base):
    """An image someone sent as the source of an img2img job (kept: the job reproduces from it)."""

    __tablename__ = "uploads"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(255))
    """Relative to the image store's root."""
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created_at()

    def __repr__(self) -> str:
        return f"Upload(sha256={self.sha256[:12]!r})"
