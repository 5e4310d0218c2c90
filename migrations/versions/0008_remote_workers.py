"""Remote GPU workers: which batch a running job was sent in, and to which worker.

- ``jobs.dispatch_id`` (indexed): the id of the batch (the Celery task) a running job was sent
  in. A result is stored only when it comes from the job's current dispatch, so a result that
  arrives late, after the batch was given to another worker, is discarded.
- ``jobs.worker``: the name of the worker the batch went to.

Both are nullable with no server default, so SQLite adds them without copying the table (its
AUTOINCREMENT and the prompt search triggers stay as they are).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 17:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dispatch_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("worker", sa.String(length=255), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_dispatch_id"), ["dispatch_id"], unique=False)


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and newer) instead of a batch table copy, which
    # would lose the jobs table's AUTOINCREMENT and the prompt search triggers.
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_dispatch_id"))
    op.drop_column("jobs", "worker")
    op.drop_column("jobs", "dispatch_id")
