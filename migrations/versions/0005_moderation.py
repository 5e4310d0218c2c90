"""Moderation: each guild's content rules, adult jobs and images flagged, the audit log.

- ``guild_settings``: ``banned_terms`` and ``nsfw_terms`` (JSON lists; ``nsfw_terms`` ``NULL``
  means nanke's default list), ``nsfw_action``, ``flagged_images`` and ``daily_limit``.
- ``jobs.flagged`` and ``images.flagged``: adult content, kept out of public listings and the
  showcase; ``deliveries.age_restricted``: whether the result's channel is age-restricted.
- ``member_limits``: a member's own daily image limit in a guild.
- ``audit_events``: every moderation decision and admin action.

Adding columns needs no table copy on SQLite as long as their defaults are plain values (a SQL
expression as a default makes Alembic's batch mode copy the table, which would lose ``jobs``'
AUTOINCREMENT and search triggers); removing ``jobs.flagged`` does need the copy, so the downgrade
recreates ``jobs`` with its AUTOINCREMENT and the prompt search triggers (as revision 0004 did).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
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


def _flag() -> sa.Column:
    return sa.Column("flagged", sa.Boolean(), server_default="0", nullable=False)


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=True),
        sa.Column("actor_discord_id", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target_discord_id", sa.BigInteger(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_guild_id_created_at"), ["guild_id", "created_at"])
    op.create_table(
        "member_limits",
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("discord_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("daily_limit", sa.Integer(), nullable=False),
        sa.Column("set_by", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("guild_id", "discord_id", name=op.f("pk_member_limits")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("age_restricted", sa.Boolean(), server_default="0", nullable=False))
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("banned_terms", sa.Text(), server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("nsfw_terms", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "nsfw_action",
                sa.String(length=16),
                server_default="age_restricted",
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column("flagged_images", sa.String(length=16), server_default="withhold", nullable=False)
        )
        batch_op.add_column(sa.Column("daily_limit", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(_flag())
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(_flag())


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("jobs", schema=None, table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_column("flagged")
    if sqlite:
        for statement in _SQLITE_SEARCH_TRIGGERS:
            op.execute(statement)
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("flagged")
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        for column in ("daily_limit", "flagged_images", "nsfw_action", "nsfw_terms", "banned_terms"):
            batch_op.drop_column(column)
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("age_restricted")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_guild_id_created_at"))
    op.drop_table("audit_events")
    op.drop_table("member_limits")
