"""Member settings for the Midjourney-style features: live previews and remix mode.

- ``user_settings.previews``: whether a running job's progress message shows a preview image
  (on unless the member turns it off).
- ``user_settings.remix``: whether V, 🔄 and the other child buttons first open a form with the
  prompt to edit (off unless the member turns it on).

Plain-value server defaults, so SQLite adds the columns without copying the table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("previews", sa.Boolean(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("remix", sa.Boolean(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("user_settings", schema=None) as batch_op:
        batch_op.drop_column("remix")
        batch_op.drop_column("previews")
