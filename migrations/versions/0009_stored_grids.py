"""A job's grid is stored with its images: built once, where the images were made.

- ``jobs.grid_path``: the image-store path of the PNG grid (with the first image's parameters)
  that a delivery of all the job's images posts as it is. Jobs made before have none; their grid
  is built at delivery, as before.

Nullable with no server default, so SQLite adds it without copying the table.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 17:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("grid_path", sa.String(length=255), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and newer), not a batch table copy: see 0008
    op.drop_column("jobs", "grid_path")
