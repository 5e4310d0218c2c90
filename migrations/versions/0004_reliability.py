"""Reliability: job ids never reused, delivery intents, paused guild queues, banned members.

- ``jobs`` gets SQLite's ``AUTOINCREMENT``: without it a deleted newest job's id is given to
  the next job, and buttons on the deleted job's messages would act on the new one. SQLite can
  only set it by recreating the table (a batch "move and copy"), which drops the prompt search
  triggers of migration 0003: they are created again here. PostgreSQL's sequences never reuse
  an id, so nothing changes there.
- ``deliveries.posting_since``: when the first attempt to post a result began, so that after a
  crash the bot looks for the result in Discord before posting it again.
- ``guild_settings.paused``: an admin paused the guild's queue.
- ``bans``: members an admin barred from asking for images in a guild.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:21:56
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_SEARCH_TRIGGERS = (
    "CREATE TRIGGER job_search_insert AFTER INSERT ON jobs BEGIN "
    "INSERT INTO job_search(rowid, prompt) VALUES (new.id, new.prompt); END",
    "CREATE TRIGGER job_search_delete AFTER DELETE ON jobs BEGIN "
    "INSERT INTO job_search(job_search, rowid, prompt) VALUES ('delete', old.id, old.prompt); END",
    "CREATE TRIGGER job_search_update AFTER UPDATE OF prompt ON jobs BEGIN "
    "INSERT INTO job_search(job_search, rowid, prompt) VALUES ('delete', old.id, old.prompt); "
    "INSERT INTO job_search(rowid, prompt) VALUES (new.id, new.prompt); END",
    "INSERT INTO job_search(job_search) VALUES ('rebuild')",
)
"""Migration 0003's triggers, as they were (the recreated ``jobs`` table lost them)."""


def _recreate_jobs(*, autoincrement: bool) -> None:
    """SQLite only: ``jobs`` again, with or without AUTOINCREMENT, and its search triggers."""
    with op.batch_alter_table(
        "jobs", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ) as batch_op:
        batch_op.alter_column("id", existing_type=sa.Integer(), autoincrement=True)
    for statement in _SQLITE_SEARCH_TRIGGERS:
        op.execute(statement)


def upgrade() -> None:
    op.create_table(
        "bans",
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("discord_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("banned_by", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("guild_id", "discord_id", name=op.f("pk_bans")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("posting_since", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False))
    if op.get_bind().dialect.name == "sqlite":
        _recreate_jobs(autoincrement=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _recreate_jobs(autoincrement=False)
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.drop_column("paused")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("posting_since")
    op.drop_table("bans")
