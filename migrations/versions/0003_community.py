"""Community: private jobs, likes, showcase posts, guild and user settings, and prompt search.

The prompt search index has no model and is kept out of Alembic's comparisons by name (every
part is named ``job_search*``, see ``storage.migrate.include_object``):

- SQLite: an FTS5 virtual table ``job_search`` over ``jobs.prompt`` (external content,
  ``content_rowid = jobs.id``) with triggers ``job_search_insert/_update/_delete`` that keep it
  in sync, filled from the existing jobs here. A later migration that makes Alembic *recreate*
  the ``jobs`` table (a batch "move and copy") drops these triggers with it and must create them
  again (copy :func:`_create_sqlite_search`).
- PostgreSQL: a GIN index ``job_search_prompt`` on ``to_tsvector('simple', prompt)``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 16:01:23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE job_search USING fts5(prompt, content='jobs', content_rowid='id')",
    "CREATE TRIGGER job_search_insert AFTER INSERT ON jobs BEGIN "
    "INSERT INTO job_search(rowid, prompt) VALUES (new.id, new.prompt); END",
    "CREATE TRIGGER job_search_delete AFTER DELETE ON jobs BEGIN "
    "INSERT INTO job_search(job_search, rowid, prompt) VALUES ('delete', old.id, old.prompt); END",
    "CREATE TRIGGER job_search_update AFTER UPDATE OF prompt ON jobs BEGIN "
    "INSERT INTO job_search(job_search, rowid, prompt) VALUES ('delete', old.id, old.prompt); "
    "INSERT INTO job_search(rowid, prompt) VALUES (new.id, new.prompt); END",
    "INSERT INTO job_search(job_search) VALUES ('rebuild')",
)
_SQLITE_SEARCH_DROP = (
    "DROP TRIGGER IF EXISTS job_search_update",
    "DROP TRIGGER IF EXISTS job_search_delete",
    "DROP TRIGGER IF EXISTS job_search_insert",
    "DROP TABLE IF EXISTS job_search",
)
_POSTGRESQL_SEARCH = "CREATE INDEX job_search_prompt ON jobs USING gin (to_tsvector('simple', prompt))"
_POSTGRESQL_SEARCH_DROP = "DROP INDEX IF EXISTS job_search_prompt"


def _created_at() -> sa.Column:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp(), nullable=False
    )


def _create_sqlite_search() -> None:
    for statement in _SQLITE_SEARCH:
        op.execute(statement)


def upgrade() -> None:
    op.create_table(
        "guild_settings",
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("showcase_channel_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("guild_id", name=op.f("pk_guild_settings")),
    )
    op.create_table(
        "user_settings",
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("private_by_default", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_settings_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_settings")),
    )
    op.create_table(
        "likes",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_likes_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_likes_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "user_id", name=op.f("pk_likes")),
    )
    op.create_table(
        "showcase_posts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_showcase_posts_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_showcase_posts")),
        sa.UniqueConstraint("job_id", name=op.f("uq_showcase_posts_job_id")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("private", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_index(batch_op.f("ix_jobs_guild_id_created_at"), ["guild_id", "created_at"])

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _create_sqlite_search()
    elif dialect == "postgresql":
        op.execute(_POSTGRESQL_SEARCH)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in _SQLITE_SEARCH_DROP:
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute(_POSTGRESQL_SEARCH_DROP)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_guild_id_created_at"))
        batch_op.drop_column("private")
    op.drop_table("showcase_posts")
    op.drop_table("likes")
    op.drop_table("user_settings")
    op.drop_table("guild_settings")
